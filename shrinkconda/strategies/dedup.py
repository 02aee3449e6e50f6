"""The ``dedup`` strategy: identical files become hard links of one inode.

It removes no path, so it selects nothing here: the pipeline's dedup phase
(:mod:`shrinkconda.phases.dedup`) does the work after the removals and the strip phase.
"""

from __future__ import annotations

from collections.abc import Iterator

from shrinkconda.scan import Scan
from shrinkconda.strategies.base import Strategy


def select(scan: Scan) -> Iterator[int]:
    """Nothing: deduplication replaces files by links, it does not remove them."""
    return iter(())


STRATEGY = Strategy(
    name="dedup",
    summary="identical files (same bytes, mode, owner) become hard links of one inode "
            "(with --conda-pack-views)",
    select=select,
    default=False,
)
