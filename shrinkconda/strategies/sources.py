"""The ``sources`` strategy: C, C++, Cython and Fortran sources shipped inside packages."""

from __future__ import annotations

import re
from collections.abc import Iterator

from shrinkconda.scan import DIR, FILE, Scan
from shrinkconda.strategies import _python
from shrinkconda.strategies.base import Choice, Keep, Strategy

SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp", ".pyx", ".pxd", ".pxi",
            ".f", ".f90")
#: Compilers whose sources are their run-time data.
_COMPILERS = frozenset({"Cython", "pyximport"})


def select(scan: Scan) -> Iterator[Choice]:
    """Source files below a package in site-packages (not in ``include`` directories,
    which belong to ``headers``).

    Stay: the sources of a package whose runtime code imports ``pyximport`` (it compiles
    ``.pyx`` files when they are imported), sources whose file name runtime code of the
    same package spells out (read and compiled at run time), and Cython's own.
    """
    for site in _python.site_packages(scan):
        for top in scan.children(site):
            if scan.kinds[top] != DIR or scan.name(top).endswith((".dist-info", ".egg-info")):
                continue
            found = _sources(scan, top)
            if not found:
                continue
            if scan.name(top) in _COMPILERS:
                yield from (Keep(i, "a compiler's own sources") for i in found)
                continue
            needed = _needed_at_run_time(scan, top, found)
            for index in found:
                reason = needed.get(index)
                yield index if reason is None else Keep(index, reason)


def _sources(scan: Scan, top: int) -> list[int]:
    found = []
    index, end = top + 1, scan.ends[top]
    while index < end:
        kind = scan.kinds[index]
        if kind == DIR and scan.name(index) == "include":
            index = scan.ends[index]
            continue
        if kind == FILE and scan.paths[index].endswith(SUFFIXES):
            found.append(index)
        index += 1
    return found


def _needed_at_run_time(scan: Scan, top: int, found: list[int]) -> dict[int, str]:
    """Sources that runtime code compiles (``pyximport``) or names, with why."""
    by_name: dict[bytes, list[int]] = {}
    for index in found:
        by_name.setdefault(scan.name(index).encode(), []).append(index)
    names = b"|".join(re.escape(n) for n in sorted(by_name, key=len, reverse=True))
    named = re.compile(rb"(?<![\w.-])(" + names + rb")(?!\w)")
    needed: dict[int, str] = {}
    pyximport = _python.imports("pyximport")
    for runtime in _python.runtime_files(scan, top):
        try:
            with open(scan.prefix / scan.paths[runtime], "rb") as f:
                source = f.read()
        except OSError:
            continue
        if b"pyximport" in source and _python.first_match_in(source, pyximport):
            why = f"compiled at run time: {scan.paths[runtime]} imports pyximport"
            return {i: why for i in found}
        for match in named.finditer(source):
            for index in by_name[match.group(1)]:
                needed.setdefault(index, f"named by runtime code: {scan.paths[runtime]}")
    return needed


STRATEGY = Strategy(
    name="sources",
    summary="C/C++/Cython/Fortran sources (*.c *.h *.pyx *.pxd *.f90 ...) inside packages",
    select=select,
    default=False,
)
