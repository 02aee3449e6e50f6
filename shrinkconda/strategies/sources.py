"""The ``sources`` strategy: C, C++, Cython and Fortran sources shipped inside packages."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator

from shrinkconda import runtime_compilers
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
    same package spells out (read and compiled at run time), Cython's own, and what an
    installed runtime compiler compiles (numpy.distutils' ``checks/cpu_%s.c``).
    """
    chosen = [c for c in _select(scan) if isinstance(c, int)]
    yield from runtime_compilers.spare(scan, chosen)
    yield from _select(scan)


def _select(scan: Scan) -> Iterator[Choice]:
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
    names_in = _names_in if all(_TOKEN.fullmatch(n) for n in by_name) else _names_in_slowly
    needed: dict[int, str] = {}
    pyximport = _python.imports("pyximport")
    for runtime in _python.runtime_files(scan, top):
        source = _python.read(scan, runtime)
        if source is None:
            continue
        if b"pyximport" in source and _python.first_match_in(source, pyximport):
            why = f"compiled at run time: {scan.paths[runtime]} imports pyximport"
            return {i: why for i in found}
        for name in names_in(source, by_name):
            for index in by_name[name]:
                needed.setdefault(index, f"named by runtime code: {scan.paths[runtime]}")
    return needed


_TOKEN = re.compile(rb"[\w.-]+")
_TOKEN_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
#: A source suffix not followed by a word character: starting with a literal ``.``, the
#: regex engine finds these fast; the name is then read backwards from each.
_SUFFIX = re.compile(rb"\.(?:" + b"|".join(
    re.escape(x[1:].encode()) for x in sorted(SUFFIXES, key=len, reverse=True)) + rb")(?!\w)")


def _names_in(source: bytes, names: Collection[bytes]) -> Iterator[bytes]:
    """The ``names`` that ``source`` spells out as a whole word: not preceded by a word
    character, ``.`` or ``-``, not followed by a word character (``names`` being made of
    those characters, a name is the whole run of them before its suffix), as the
    one-regex :func:`_names_in_slowly` finds them, but without trying every name at
    every position."""
    for match in _SUFFIX.finditer(source):
        start = match.start()
        while start and source[start - 1] in _TOKEN_BYTES:
            start -= 1
        name = source[start:match.end()]
        if name in names:
            yield name


def _names_in_slowly(source: bytes, names: Collection[bytes]) -> Iterator[bytes]:
    """:func:`_names_in` for names with other characters, by one regex of them all."""
    pattern = b"|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    for match in re.finditer(rb"(?<![\w.-])(" + pattern + rb")(?!\w)", source):
        yield match.group(1)


STRATEGY = Strategy(
    name="sources",
    summary="C/C++/Cython/Fortran sources (*.c *.h *.pyx *.pxd *.f90 ...) inside packages",
    select=select,
    default=False,
)
