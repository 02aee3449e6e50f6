"""The ``dev-tools`` strategy: package installers and the stdlib's development tools."""

from __future__ import annotations

from collections.abc import Iterator

from shrinkconda.scan import DIR, FILE, Scan
from shrinkconda.strategies import _python
from shrinkconda.strategies.base import Strategy

#: Distributions removed whole, as ``conda remove --force`` would.
DISTRIBUTIONS = frozenset({"pip", "setuptools", "wheel"})
#: Stdlib packages for developing, not running, programs.
STDLIB = ("ensurepip", "idlelib", "turtledemo", "lib2to3", "tkinter")


def select(scan: Scan) -> Iterator[int]:
    """Every file of the ``pip``, ``setuptools`` and ``wheel`` conda packages (their
    ``*.dist-info`` and ``bin/`` scripts too), with the directories they empty; the
    stdlib's ``ensurepip``, ``idlelib``, ``turtledemo``, ``lib2to3`` and ``tkinter`` with
    the ``_tkinter`` extension, and the ``idle`` scripts.

    The packages' ``conda-meta`` records lose every path; the Tcl/Tk libraries stay.
    """
    yield from _distributions(scan)
    for pylib in _python.python_libs(scan):
        for child in scan.children(pylib):
            name = scan.name(child)
            if scan.kinds[child] == DIR and name in STDLIB:
                yield child
            elif name == "lib-dynload" and scan.kinds[child] == DIR:
                yield from (i for i in scan.children(child)
                            if scan.name(i).startswith("_tkinter.") and scan.kinds[i] == FILE)
    bin_dir = scan.find("bin")
    if bin_dir is not None:
        for child in scan.children(bin_dir):
            name = scan.name(child)
            if name == "idle" or (name.startswith("idle3") and scan.kinds[child] != DIR):
                yield child


def _distributions(scan: Scan) -> Iterator[int]:
    wanted = {n for n, record in enumerate(scan.owner_names)
              if record.rsplit("-", 2)[0] in DISTRIBUTIONS}
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
            "ensurepip, idlelib, turtledemo, lib2to3, tkinter",
    select=select,
    default=False,
    removes_distributions=True,
)
