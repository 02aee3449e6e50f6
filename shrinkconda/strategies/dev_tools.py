"""The ``dev-tools`` strategy: package installers and the stdlib's development tools."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from shrinkconda import runtime_compilers
from shrinkconda.errors import ElfError
from shrinkconda.phases import elf
from shrinkconda.scan import DIR, FILE, MAGIC_ELF, Scan
from shrinkconda.strategies import _python
from shrinkconda.strategies.base import Choice, Keep, Strategy

#: Distributions removed whole, as ``conda remove --force`` would.
DISTRIBUTIONS = frozenset({"pip", "setuptools", "wheel"})
#: The conda packages of Tcl/Tk (conda-forge ships both in ``tk``), removed whole with
#: ``tkinter`` when nothing else needs their libraries.
TCLTK = frozenset({"tk", "tcl"})


@dataclass(frozen=True)
class Component:
    """A part of the stdlib for developing, not running, programs."""

    name: str
    """What the report calls it (the package's name)."""
    modules: tuple[str, ...]
    """Top-level modules it provides: code importing one of them needs it."""
    entries: tuple[str, ...]
    """Its entries below ``lib/pythonX.Y``: packages, modules, ``lib-dynload`` files (by
    the name before the first dot)."""
    scripts: str = ""
    """Its scripts in ``bin/``: this name, alone or followed by a version
    (``idle``, ``idle3``, ``idle3.11``; ``2to3-3.11``)."""


#: ``turtle`` is Tk's turtle graphics and ``_tkinter`` Tk's binding: they go, and stay,
#: with ``tkinter``.
STDLIB = (
    Component("ensurepip", ("ensurepip",), ("ensurepip",)),
    Component("idlelib", ("idlelib",), ("idlelib",), "idle"),
    Component("turtledemo", ("turtledemo",), ("turtledemo",)),
    Component("lib2to3", ("lib2to3",), ("lib2to3",), "2to3"),
    # help()'s topic texts: pydoc imports them inside functions and says they are
    # missing when they are.
    Component("pydoc_data", ("pydoc_data",), ("pydoc_data",)),
    Component("tkinter", ("tkinter", "_tkinter", "turtle"),
              ("tkinter", "turtle.py", "lib-dynload/_tkinter")),
)
#: A cheap filter before parsing: an ``import``/``from`` statement naming a component's
#: module, anywhere in an import list (``import os, tkinter as tk``). Only files it
#: matches are parsed; the parse decides.
_IMPORT_STATEMENT = re.compile(
    rb"(?:import|from)\s+(?:[\w.]+(?:\s+as\s+\w+)?\s*,\s*(?:\\\s*)?)*("
    + "|".join(sorted({m for c in STDLIB for m in c.modules}, key=len, reverse=True)).encode()
    + rb")\b")
_WORDS = tuple(sorted({m.lstrip("_").encode() for c in STDLIB for m in c.modules}))
"""``bytes.find`` is many times faster than the regex: files naming none are skipped."""
#: Trees that are not this environment's code: the package cache and other envs.
_ELSEWHERE = ("pkgs", "envs", "conda-meta")


def select(scan: Scan) -> Iterator[Choice]:
    """Every file of the ``pip``, ``setuptools`` and ``wheel`` conda packages (their
    ``*.dist-info`` and ``bin/`` scripts too), with the directories they empty; the
    stdlib's ``ensurepip``, ``idlelib``, ``turtledemo``, ``lib2to3``, ``pydoc_data`` and
    ``tkinter``
    (with ``turtle`` and ``_tkinter``), with their ``bin/`` scripts (``idle3``,
    ``2to3``), each unless code outside them imports it; and, once ``tkinter`` goes, the
    ``tk`` package (Tcl/Tk) unless an ELF object outside it needs one of its libraries.

    An installer a runtime compiler imports when it compiles (setuptools for torch's
    ``cpp_extension``, cffi, pyximport) stays whole.

    The removed packages' ``conda-meta`` records lose every path.
    """
    needed = runtime_compilers.needed_distributions(scan)
    yield from _whole_packages(scan, DISTRIBUTIONS - needed.keys())
    for name, reason in sorted(needed.items()):
        for site in _python.site_packages(scan):
            for top in scan.children(site):
                if scan.name(top) == name and name in DISTRIBUTIONS:
                    yield Keep(top, reason)
    tkinter_goes = False
    for pylib in _python.python_libs(scan):
        entries = _component_entries(scan, pylib)
        if not entries:
            continue
        needers = _importers(scan, pylib, entries)
        for component in STDLIB:
            if component.name not in entries:
                continue
            why = needers.get(component.name)
            for index in entries[component.name]:
                yield Keep(index, f"imported by {why}") if why else index
            if component.name == "tkinter" and not why:
                tkinter_goes = True
    if tkinter_goes:
        yield from _tcltk(scan)


def _component_entries(scan: Scan, pylib: int) -> dict[str, list[int]]:
    """Component name -> its entries in ``pylib`` (those the prefix has)."""
    found: dict[str, list[int]] = {}
    base = scan.paths[pylib]
    dynload = scan.find(base + "/lib-dynload")
    for component in STDLIB:
        for entry in component.entries:
            if entry.startswith("lib-dynload/"):
                stem = entry.split("/", 1)[1] + "."
                indices = [] if dynload is None else [
                    i for i in scan.children(dynload)
                    if scan.kinds[i] == FILE and scan.name(i).startswith(stem)]
            else:
                index = scan.find(f"{base}/{entry}")
                indices = [] if index is None else [index]
            found.setdefault(component.name, []).extend(indices)
        found[component.name].extend(_scripts(scan, component.scripts))
    return {name: indices for name, indices in found.items() if indices}


def _importers(scan: Scan, pylib: int, entries: Mapping[str, Sequence[int]]) -> dict[str, str]:
    """Component name -> a file outside every removed component that imports it.

    Reads each ``*.py`` of ``pylib`` once (``site-packages`` included) and parses those
    that name a component's module. Only imports that run when the file is imported
    count: what imported before a shrink imports after it, while a function that
    imports a development tool (``distutils.util.run_2to3``, ``test.support``'s Tk
    probe) is using that tool. A component some kept code needs is kept, and its own
    imports count in turn.
    """
    owner: dict[int, str] = {}
    for name, indices in entries.items():
        for index in indices:
            for inside in range(index, scan.ends[index]):
                owner[inside] = name
    # Files that name another component's module; a component's own files are parsed
    # only once something keeps it.
    pending: dict[str, list[tuple[int, set[str]]]] = {}
    for index in range(pylib, scan.ends[pylib]):
        if scan.kinds[index] != FILE or not scan.paths[index].endswith(".py"):
            continue
        source = _python.read(scan, index)
        if source is None or not any(word in source for word in _WORDS):
            continue
        own = owner.get(index, "")
        named = {m.decode() for m in _IMPORT_STATEMENT.findall(source)}
        named = {m for m in named if _OF_MODULE[m] != own and _OF_MODULE[m] in entries}
        if named:
            pending.setdefault(own, []).append((index, named))
    needed: dict[str, str] = {}
    queue = [""]  # code outside every component, then each component kept in turn
    while queue:
        for index, named in pending.pop(queue.pop(), []):
            if all(_OF_MODULE[m] in needed for m in named):
                continue
            source = _python.read(scan, index) or b""
            for module in sorted(named):
                name = _OF_MODULE[module]
                if name not in needed and _python.matches_at_import(source, _IMPORTS[module]):
                    needed[name] = scan.paths[index]
                    queue.append(name)
    return needed


_OF_MODULE = {m: c.name for c in STDLIB for m in c.modules}
_IMPORTS = {m: _python.imports(m) for m in _OF_MODULE}


def _scripts(scan: Scan, name: str) -> list[int]:
    bin_dir = scan.find("bin")
    if not name or bin_dir is None:
        return []
    versioned = re.compile(re.escape(name) + r"(-?[0-9][0-9.]*)?")
    return [child for child in scan.children(bin_dir)
            if scan.kinds[child] != DIR and versioned.fullmatch(scan.name(child))]


def _tcltk(scan: Scan) -> Iterator[Choice]:
    """The ``tk`` package whole, or, if an ELF object outside it and ``_tkinter``
    needs one of its libraries, a reason to keep it."""
    records = {n for n, record in enumerate(scan.owner_names)
               if record.rsplit("-", 2)[0] in TCLTK}
    if not records:
        return
    owners = scan.owners
    libraries = {scan.name(i): i for i in range(len(scan))
                 if owners[i] in records and scan.paths[i].startswith("lib/")
                 and ".so" in scan.name(i)}
    user = _needing(scan, records, libraries.keys()) if libraries else None
    if user is not None:
        path, library = user
        if library in libraries:
            yield Keep(libraries[library], f"needed by {path}")
        else:
            yield Keep(min(libraries.values()),
                       f"may be needed by {path}, whose ELF headers do not parse")
        return
    yield from _whole_packages(scan, TCLTK)


def _needing(scan: Scan, records: set[int], libraries: Iterable[str]) -> tuple[str, str] | None:
    """An ELF object of the environment, not of ``records`` nor ``_tkinter``, that needs
    one of ``libraries``, with the library (or ``?`` when its headers do not parse)."""
    wanted = set(libraries)
    owners = scan.owners
    for index in range(1, len(scan)):
        path = scan.paths[index]
        if scan.magic[index] != MAGIC_ELF or owners[index] in records \
                or path.split("/", 1)[0] in _ELSEWHERE or "/_tkinter." in path:
            continue
        full = os.fspath(scan.prefix / path)
        try:
            needs = elf.needed(full, elf.read(full))
        except (ElfError, OSError):
            return path, "?"
        hit = wanted.intersection(needs)
        if hit:
            return path, min(hit)
    return None


def _whole_packages(scan: Scan, names: frozenset[str]) -> Iterator[int]:
    """Every entry of the conda packages called ``names``, with the directories they
    empty (the topmost of each such run)."""
    wanted = {n for n, record in enumerate(scan.owner_names)
              if record.rsplit("-", 2)[0] in names}
    if not wanted:
        return
    owners, kinds = scan.owners, scan.kinds
    # Walk backwards so each directory knows whether everything below it goes.
    whole = bytearray(len(scan))
    for index in range(len(scan) - 1, 0, -1):
        if kinds[index] == DIR:
            children = list(scan.children(index))
            whole[index] = bool(children) and all(whole[c] for c in children)
        else:
            whole[index] = owners[index] in wanted
    for index in range(1, len(scan)):
        if whole[index] and not whole[scan.parents[index]]:
            yield index


STRATEGY = Strategy(
    name="dev-tools",
    summary="pip, setuptools, wheel (whole, with their conda-meta records); stdlib "
            "ensurepip, idlelib, turtledemo, lib2to3, pydoc_data, tkinter with Tcl/Tk, unless "
            "imported",
    select=select,
    default=False,
    removes_distributions=True,
)
