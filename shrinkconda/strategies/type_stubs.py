"""The ``type-stubs`` strategy: type stubs, which type checkers read and Python never does."""

from __future__ import annotations

from collections.abc import Iterator

from shrinkconda.scan import DIR, FILE, Scan
from shrinkconda.strategies import _python
from shrinkconda.strategies.base import Choice, Keep, Strategy


def select(scan: Scan) -> Iterator[Choice]:
    """``*.pyi`` next to their module, and stub-only packages (``site-packages/*-stubs``).

    A ``.pyi`` with no module beside it (no ``.py``, extension, ``.pyc`` or package of
    that name) is the only copy of what it describes, data for a tool such as a type
    checker or an IDE, and stays.
    """
    stub_dirs = set()
    for site in _python.site_packages(scan):
        for top in scan.children(site):
            if scan.kinds[top] == DIR and scan.name(top).endswith("-stubs"):
                stub_dirs.add(top)
                yield top
    kinds, paths = scan.kinds, scan.paths
    index, end = 0, len(paths)
    while index < end:
        if index in stub_dirs or paths[index] in ("conda-meta", "pkgs"):
            index = scan.ends[index]
            continue
        if kinds[index] == FILE and paths[index].endswith(".pyi"):
            if _has_module(scan, index):
                yield index
            else:
                yield Keep(index, "the only copy of its module: no .py, .so or package beside it")
        index += 1


def _has_module(scan: Scan, index: int) -> bool:
    stem = scan.name(index)[:-4]
    for sibling in scan.children(scan.parents[index]):
        name = scan.name(sibling)
        if name == stem and scan.kinds[sibling] == DIR:
            return True
        if name.startswith(stem + ".") and name != stem + ".pyi" \
                and name.endswith((".py", ".pyc", ".so", ".pyd")):
            return True
    return False


STRATEGY = Strategy(
    name="type-stubs",
    summary="type stubs: *.pyi beside their module, and stub-only *-stubs packages",
    select=select,
    default=False,
)
