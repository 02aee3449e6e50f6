"""The ``bytecode`` strategy: compiled Python bytecode, which Python can regenerate."""

from __future__ import annotations

from typing import Iterator

from shrinkconda.scan import DIR, FILE, Scan
from shrinkconda.strategies.base import Strategy


def select(scan: Scan) -> Iterator[int]:
    """``__pycache__`` directories and stray ``*.pyc`` / ``*.pyo`` files."""
    kinds, paths = scan.kinds, scan.paths
    index, end = 0, len(paths)
    while index < end:
        path = paths[index]
        kind = kinds[index]
        if kind == DIR and path.endswith("__pycache__") and path.rpartition("/")[2] == "__pycache__":
            yield index
            index = scan.ends[index]
            continue
        if kind == FILE and path.endswith((".pyc", ".pyo")):
            yield index
        index += 1


STRATEGY = Strategy(
    name="bytecode",
    summary="compiled bytecode (__pycache__/, *.pyc, *.pyo); costs start-up time on read-only filesystems",
    select=select,
)
