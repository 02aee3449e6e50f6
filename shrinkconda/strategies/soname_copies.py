"""The ``soname-copies`` strategy: a shared library's names that pip installed as
identical copies become symlinks to one of them.

It removes no path, so it selects nothing here: the pipeline's phase
(:mod:`shrinkconda.phases.soname_copies`) does the work after the strip phase.
"""

from __future__ import annotations

from collections.abc import Iterator

from shrinkconda.scan import Scan
from shrinkconda.strategies.base import Strategy


def select(scan: Scan) -> Iterator[int]:
    """Nothing: the copies stay as symlinks, they are not removed."""
    return iter(())


STRATEGY = Strategy(
    name="soname-copies",
    summary="a shared library's names pip installed as identical copies (libcupti.so, "
            ".so.12, .so.2025.1.1) become symlinks to one, as its own packaging ships them",
    select=select,
)
