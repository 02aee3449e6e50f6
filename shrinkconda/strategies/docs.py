"""The ``docs`` strategy: documentation trees under ``share/``."""

from __future__ import annotations

from collections.abc import Iterator

from shrinkconda.scan import DIR, Scan
from shrinkconda.strategies.base import Strategy

#: Documentation only. Other share/ data (proj, terminfo, zoneinfo, fonts, jupyter)
#: is read at run time and must stay.
DOC_DIRS = ("doc", "man", "info", "gtk-doc", "help", "devhelp")


def select(scan: Scan) -> Iterator[int]:
    """``share/doc``, ``share/man``, ``share/info``, ``share/gtk-doc`` and the like."""
    share = scan.find("share")
    if share is None:
        return
    for child in scan.children(share):
        if scan.kinds[child] == DIR and scan.name(child) in DOC_DIRS:
            yield child


STRATEGY = Strategy(
    name="docs",
    summary="documentation: share/doc, share/man, share/info, share/gtk-doc, share/help",
    select=select,
)
