"""The ``bytecode`` strategy: compiled Python bytecode, which Python can regenerate."""

from __future__ import annotations

from collections.abc import Iterator

from shrinkconda.scan import DIR, FILE, Scan
from shrinkconda.strategies.base import Choice, Keep, Strategy


def select(scan: Scan) -> Iterator[Choice]:
    """``__pycache__`` directories, and ``*.pyc`` / ``*.pyo`` files next to their source.

    A ``.pyc`` outside ``__pycache__`` with no ``.py`` beside it is the module itself
    (sourceless distribution), so it stays.
    """
    kinds, paths = scan.kinds, scan.paths
    index, end = 0, len(paths)
    while index < end:
        path = paths[index]
        kind = kinds[index]
        if kind == DIR and path.endswith("__pycache__") and scan.name(index) == "__pycache__":
            yield index
            index = scan.ends[index]
            continue
        if kind == FILE and path.endswith((".pyc", ".pyo")):
            if _has_source(scan, index):
                yield index
            else:
                yield Keep(index, "sourceless bytecode: it is the module itself")
        index += 1


def _has_source(scan: Scan, index: int) -> bool:
    source = scan.name(index)[:-1]
    return any(scan.name(sibling) == source for sibling in scan.children(scan.parents[index]))


STRATEGY = Strategy(
    name="bytecode",
    summary="compiled bytecode (__pycache__/, *.pyc, *.pyo); costs start-up time on read-only filesystems",
    select=select,
)
