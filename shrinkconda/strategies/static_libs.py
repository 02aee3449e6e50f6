"""The ``static-libs`` strategy: static archives, which nothing loads at run time."""

from __future__ import annotations

from collections.abc import Iterator

from shrinkconda.scan import FILE, MAGIC_AR, Scan
from shrinkconda.strategies.base import Strategy


def select(scan: Scan) -> Iterator[int]:
    """Files named ``*.a`` whose content is an ``ar`` archive (not just the name)."""
    kinds, magic = scan.kinds, scan.magic
    for index, path in enumerate(scan.paths):
        if path.endswith(".a") and kinds[index] == FILE and magic[index] == MAGIC_AR:
            yield index


STRATEGY = Strategy(
    name="static-libs",
    summary="static libraries (*.a that are ar archives), used only to link new programs",
    select=select,
)
