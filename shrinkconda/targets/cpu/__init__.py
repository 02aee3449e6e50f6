"""CPU-dispatched libraries: ``--target-cpu`` removes the kernels no target CPU loads,
caps the dispatch at run time, and checks the dispatcher with a real call.

:mod:`levels` reads the target, :mod:`families` holds the data, :mod:`select` is the
pure choice the plan honours, :mod:`cap` the files that cap the dispatch, :mod:`check`
the call that proves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from shrinkconda.scan import Scan
from shrinkconda.targets.cpu import families, levels, select
from shrinkconda.targets.cpu.levels import Target
from shrinkconda.targets.cpu.select import Dispatch

__all__ = ["Dispatch", "Target", "choose", "levels"]


def choose(scan: Scan, target: Target | None, used: bytearray | None,
           environ: Mapping[str, str]) -> Dispatch:
    """:func:`select.select` over the built-in and plugin families; plugins that failed
    to load become problem lines."""
    known, problems = families.available()
    chosen = select.select(scan, known, target, used, environ)
    return replace(chosen, problems=(*problems, *chosen.problems)) if problems else chosen
