"""The whole shrink, left to right: scan, plan, execute, report."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

from shrinkconda import execute, strategies, strip
from shrinkconda.accounting import Ledger, Saving
from shrinkconda.plan import Plan, plan
from shrinkconda.report import Line, Report
from shrinkconda.scan import Problem, Scan, scan

StageProgress = Optional[Callable[[str, int], None]]
"""Told ``(stage, n)`` as ``n`` more items of ``stage`` (``scan``, ``remove``, ``strip``)
are done."""


@dataclass(frozen=True)
class Options:
    """What the user chose; the defaults are a plain ``shrinkconda shrink``."""

    only: tuple[str, ...] = ()
    """Run only these strategies (default: every default strategy)."""
    skip: tuple[str, ...] = ()
    """Do not run these strategies."""
    keep: tuple[str, ...] = ()
    """Globs of paths (relative to the prefix) that nothing may remove."""
    strip_mode: str | None = "debug"
    """What ``strip`` removes from ELF objects (``debug``, ``unneeded``, ``all``);
    ``None`` turns the strip phase off."""
    jobs: int | None = None
    """How many files to strip at once (default: the number of CPUs)."""


def audit(prefix: str | os.PathLike[str], options: Options = Options(),
          progress: StageProgress = None) -> Report:
    """What :func:`shrink` would do, without changing anything."""
    the_plan, problems = _plan(prefix, options, progress)
    removed = the_plan.removed()
    stripped = _predict_strip(the_plan.scan, removed, options, progress)
    return _report(the_plan, removed, problems, dry_run=True, stripped=stripped)


def shrink(prefix: str | os.PathLike[str], options: Options = Options(),
           progress: StageProgress = None) -> Report:
    """Shrink the prefix and report what it freed."""
    the_plan, problems = _plan(prefix, options, progress)
    removed, failures = execute.remove(the_plan, _stage(progress, "remove"))
    stripped = _strip(the_plan.scan, removed, options, progress)
    return _report(the_plan, removed, problems + failures, dry_run=False, stripped=stripped)


def _plan(prefix: str | os.PathLike[str], options: Options,
          progress: StageProgress) -> tuple[Plan, list[Problem]]:
    everything, plugin_problems = strategies.available()
    chosen = strategies.choose(everything, options.only, options.skip)
    the_scan: Scan = scan(prefix, _stage(progress, "scan"))
    return plan(the_scan, chosen, options.keep), [*plugin_problems, *the_scan.problems]


def _report(the_plan: Plan, removed: bytearray, problems: list[Problem], dry_run: bool,
            stripped: _StripPhase | None = None) -> Report:
    ledger = Ledger(the_plan.scan)
    lines = tuple(
        Line(s.strategy, ledger.remove(i for i in s.indices if removed[i]))
        for s in the_plan.selections
    )
    notes: tuple[str, ...] = ()
    if stripped is not None:
        lines += (Line("strip", _strip_saving(ledger, stripped.replaced)),)
        problems = problems + stripped.problems
        notes = stripped.notes
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
        notes=notes,
    )


def _stage(progress: StageProgress, stage: str) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda n: progress(stage, n)


# The strip phase, after the removals. Kept apart so the transaction (staging the
# originals between making and installing the stripped copies) can take it over.

@dataclass(frozen=True)
class _StripPhase:
    replaced: Sequence[strip.Replacement]
    problems: list[Problem]
    notes: tuple[str, ...]


def _predict_strip(scan: Scan, removed: bytearray, options: Options,
                   progress: StageProgress) -> _StripPhase | None:
    mode = options.strip_mode
    if mode is None:
        return None
    chosen = strip.candidates(scan, removed)
    predicted, problems = strip.predict(scan, chosen.indices, mode, options.jobs,
                                        _stage(progress, "strip"))
    try:
        strip.find_tool()
    except strip.StripToolMissing as exc:
        problems.append(Problem("", str(exc)))
    return _StripPhase(predicted, problems, _strip_notes(scan, chosen, mode, options.jobs))


def _strip(scan: Scan, removed: bytearray, options: Options,
           progress: StageProgress) -> _StripPhase | None:
    mode = options.strip_mode
    if mode is None:
        return None
    chosen = strip.candidates(scan, removed)
    notes = _strip_notes(scan, chosen, mode, options.jobs)
    try:
        made, problems = strip.make_stripped(scan, chosen.indices, mode, options.jobs,
                                             progress=_stage(progress, "strip"))
    except strip.StripToolMissing as exc:
        return _StripPhase((), [Problem("", str(exc))], notes)
    installed, failures = strip.install(scan, made)
    return _StripPhase(installed, problems + failures, notes)


def _strip_notes(scan: Scan, chosen: strip.Candidates, mode: str,
                 jobs: int | None) -> tuple[str, ...]:
    linked = strip.strippable(scan, chosen.linked_inside, mode, jobs)
    return (strip.linked_inside_note(len(linked)),) if linked else ()


def _strip_saving(ledger: Ledger, replaced: Sequence[strip.Replacement]) -> Saving:
    total = Saving(files=len(replaced))
    for item in replaced:
        total += ledger.replace(item.index, item.size, item.allocated)
    return total
