"""The ``headers`` strategy: C headers, needed only to compile against the environment."""

from __future__ import annotations

from collections.abc import Iterator

from shrinkconda import runtime_compilers
from shrinkconda.scan import DIR, Scan
from shrinkconda.strategies import _python
from shrinkconda.strategies.base import Choice, Keep, Strategy


def select(scan: Scan) -> Iterator[Choice]:
    """The prefix's ``include/``, and ``include`` directories inside packages.

    A package whose runtime code calls ``get_include()`` (a JIT, a build helper that
    compiles against its own headers) keeps its ``include`` directories, and what an
    installed runtime compiler (:mod:`~shrinkconda.runtime_compilers`: torch's Inductor,
    triton, cffi, ...) compiles against stays.
    """
    chosen = [c for c in _select(scan) if isinstance(c, int)]
    yield from runtime_compilers.spare(scan, chosen)
    yield from _select(scan)


def _select(scan: Scan) -> Iterator[Choice]:
    top_include = scan.find("include")
    if top_include is not None and scan.kinds[top_include] == DIR:
        yield top_include
    for site in _python.site_packages(scan):
        for top in scan.children(site):
            if scan.kinds[top] != DIR or scan.name(top).endswith((".dist-info", ".egg-info")):
                continue
            found = _include_dirs(scan, top)
            if not found:
                continue
            user = _python.first_match(scan, top, b"get_include", _python.calls("get_include"))
            for index in found:
                if user is None:
                    yield index
                else:
                    yield Keep(index, f"runtime code calls get_include(): {scan.paths[user]}")


def _include_dirs(scan: Scan, top: int) -> list[int]:
    found = []
    index, end = top + 1, scan.ends[top]
    while index < end:
        if scan.kinds[index] == DIR and scan.name(index) == "include":
            found.append(index)
            index = scan.ends[index]
            continue
        index += 1
    return found


STRATEGY = Strategy(
    name="headers",
    summary="C headers: include/ and packages' include dirs no get_include() caller needs",
    select=select,
    default=False,
)
