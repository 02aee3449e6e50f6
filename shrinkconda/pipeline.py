"""The whole shrink, left to right: scan, plan, execute, report."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

from shrinkconda import execute, strategies
from shrinkconda.accounting import Ledger
from shrinkconda.plan import Plan, plan
from shrinkconda.report import Line, Report
from shrinkconda.scan import Problem, Scan, scan

StageProgress = Optional[Callable[[str, int], None]]
"""Told ``(stage, n)`` as ``n`` more items of ``stage`` (``scan``, ``remove``) are done."""


@dataclass(frozen=True)
class Options:
    """What the user chose; the defaults are a plain ``shrinkconda shrink``."""

    only: tuple[str, ...] = ()
    """Run only these strategies (default: every default strategy)."""
    skip: tuple[str, ...] = ()
    """Do not run these strategies."""
    keep: tuple[str, ...] = ()
    """Globs of paths (relative to the prefix) that nothing may remove."""


def audit(prefix: str | os.PathLike[str], options: Options = Options(),
          progress: StageProgress = None) -> Report:
    """What :func:`shrink` would do, without changing anything."""
    the_plan, problems = _plan(prefix, options, progress)
    return _report(the_plan, the_plan.removed(), problems, dry_run=True)


def shrink(prefix: str | os.PathLike[str], options: Options = Options(),
           progress: StageProgress = None) -> Report:
    """Shrink the prefix and report what it freed."""
    the_plan, problems = _plan(prefix, options, progress)
    removed, failures = execute.remove(the_plan, _stage(progress, "remove"))
    return _report(the_plan, removed, problems + failures, dry_run=False)


def _plan(prefix: str | os.PathLike[str], options: Options,
          progress: StageProgress) -> tuple[Plan, list[Problem]]:
    everything, plugin_problems = strategies.available()
    chosen = strategies.choose(everything, options.only, options.skip)
    the_scan: Scan = scan(prefix, _stage(progress, "scan"))
    return plan(the_scan, chosen, options.keep), [*plugin_problems, *the_scan.problems]


def _report(the_plan: Plan, removed: bytearray, problems: list[Problem], dry_run: bool) -> Report:
    ledger = Ledger(the_plan.scan)
    lines = tuple(
        Line(s.strategy, ledger.remove(i for i in s.indices if removed[i]))
        for s in the_plan.selections
    )
    return Report(
        prefix=str(the_plan.scan.prefix),
        dry_run=dry_run,
        size_before=ledger.size_before,
        size_after=ledger.size,
        allocated_before=ledger.allocated_before,
        allocated_after=ledger.allocated,
        lines=lines,
        errors=tuple(problems),
        kept=the_plan.kept,
    )


def _stage(progress: StageProgress, stage: str) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda n: progress(stage, n)
