"""What a shrink did (or an audit predicts), said twice: as the :class:`Report` with a line
per strategy and phase (and, when asked, the entry-by-entry charges behind it), and as the
small payload the commit records in ``conda-meta``."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from shrinkconda import __version__, condameta, piprecord
from shrinkconda.accounting import Charge, Ledger, Saving
from shrinkconda.appaware import used_by
from shrinkconda.phases import dedup_phase, soname_copies, strip_phase
from shrinkconda.phases.base import Outcome, subtrees
from shrinkconda.plan import Plan
from shrinkconda.render.report import Broken, Line, Report
from shrinkconda.scan import Problem, Scan
from shrinkconda.transaction import journal
from shrinkconda.units import counted, human

BYTECODE_STRATEGY = "bytecode"
"""The strategy whose removals the start-up note is about."""
METADATA = "conda-meta"
"""The report line of the commit's own changes under ``conda-meta``."""


def without_failed(scan_: Scan, removed: bytearray, phases: Sequence[Outcome],
                   failed: Sequence[tuple[journal.Step, str]]
                   ) -> tuple[bytearray, tuple[Outcome, ...]]:
    """What really left: the plan and the phases minus the steps that could not be staged."""
    if not failed:
        return removed, tuple(phases)
    failed_paths = {step.path for step, _ in failed}
    removed = bytearray(removed)
    for index, path in enumerate(scan_.paths):
        if path in failed_paths:
            removed[index:scan_.ends[index]] = bytes(scan_.ends[index] - index)
            parent = scan_.parents[index]
            while parent > 0 and removed[parent]:  # a directory emptied around it stays
                removed[parent] = 0
                parent = scan_.parents[parent]
    return removed, tuple(p.without(failed_paths, scan_) for p in phases)


def payload(the_plan: Plan, removed: bytearray, phases: Sequence[Outcome],
            strip_mode: str | None, views: bool, digest: Callable[[Path], str]
            ) -> dict[str, Any]:
    """What the commit records in ``conda-meta``: small, roots only. ``strip_mode`` is
    ``None`` when the strip phase did not run."""
    scan_ = the_plan.scan
    prefix = scan_.prefix
    by_name = {p.name: p for p in phases}
    by_strategy: dict[str, list[str]] = {}
    for selection in the_plan.selections:
        roots = [scan_.paths[i] for i in selection.indices
                 if removed[i] and not removed[scan_.parents[i]]]
        by_strategy[selection.strategy] = sorted(roots)
    for phase in phases:
        if phase.removed:
            by_strategy[phase.name] = sorted(scan_.paths[i] for i in phase.removed)
    stripped = by_name[strip_phase.NAME].replaced if strip_phase.NAME in by_name else ()
    record: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "shrinkconda": __version__,
        "removed": by_strategy,
        "strip_mode": strip_mode,
        "stripped": {scan_.paths[m.index]: [m.size, digest(prefix / scan_.paths[m.index])]
                     for m in stripped},
        "kept": [[k.path, k.reason] for k in the_plan.kept],
        "views": views,
    }
    rewritten = {scan_.paths[r.index]: [r.size, digest(prefix / scan_.paths[r.index])]
                 for p in phases if p.name != strip_phase.NAME for r in p.replaced}
    if rewritten:
        record["rewritten"] = rewritten
    added = {path: [size, digest(prefix / path), source]
             for p in phases for a in p.added for path, size, source in a.files}
    if added:
        record["added"] = added
    pip_records = piprecord.unowned(scan_)
    if pip_records:
        record[piprecord.KEY] = pip_records
    if dedup_phase.NAME in by_name:
        record["deduplicated"] = {scan_.paths[k.index]: scan_.paths[k.target]
                                  for k in by_name[dedup_phase.NAME].linked}
    if by_name.get(soname_copies.NAME) and by_name[soname_copies.NAME].linked:
        record["symlinked"] = {scan_.paths[k.index]: scan_.paths[k.target]
                               for k in by_name[soname_copies.NAME].linked}
    return record


def report(the_plan: Plan, removed: bytearray, problems: list[Problem], dry_run: bool,
           phases: Sequence[Outcome] = (), notes: tuple[str, ...] = (),
           broken: tuple[Broken, ...] = (), verified: bool | None = None,
           rolled_back: bool = False, metadata: Sequence[condameta.Change] = (),
           removed_packages: Sequence[str] = (), refused: str | None = None,
           itemise: bool = False) -> tuple[Report, Sequence[Charge]]:
    """The report: each strategy's removals, then each phase's changes and the
    ``conda-meta`` changes, counted in one :class:`Ledger` so no inode counts twice; and,
    with ``itemise``, that ledger's charges, entry by entry (else none)."""
    ledger = Ledger(the_plan.scan, itemise)
    lines: tuple[Line, ...] = ()
    per_package: dict[str, int] = {}
    for s in the_plan.selections:
        chosen = (i for i in s.indices if removed[i])
        if s.strategy == used_by.NAME:
            saving, per_package = ledger.remove_by_owner(chosen, line=s.strategy)
        else:
            saving = ledger.remove(chosen, line=s.strategy)
        lines += (Line(s.strategy, saving),)
    notes += _startup_note(the_plan, removed, lines)
    kept = the_plan.kept
    for phase in phases:
        if phase.shown_when_empty or phase.changes():
            lines += (Line(phase.name, _phase_saving(ledger, the_plan.scan, phase)),)
        problems = problems + list(phase.problems)
        notes += phase.notes
        kept += phase.kept
    if metadata:
        lines += (Line(METADATA, _metadata_saving(ledger, the_plan.scan, metadata)),)
    if removed_packages:
        records = "record" if len(removed_packages) == 1 else "records"
        notes += ((f"removed the conda-meta {records} of "
                   f"{counted(len(removed_packages), 'package')} "
                   f"left with no files, as conda remove --force would: "
                   f"{', '.join(removed_packages)}"),)
    if rolled_back:
        notes += (("rolled back: the shrink broke what worked before, so every change was "
                   "undone and the prefix is as it was; spare what the broken code needs "
                   "with --keep GLOB, or --skip the strategy that removed it"),)
        if any(s.strategy == used_by.NAME for s in the_plan.selections):
            notes += (("with --used-by, what broke needs files the traced commands did not "
                       "use: add a --used-by command that takes that path, or --keep them"),)
    return Report(
        prefix=str(the_plan.scan.prefix),
        dry_run=dry_run,
        size_before=ledger.size_before,
        size_after=ledger.size,
        allocated_before=ledger.allocated_before,
        allocated_after=ledger.allocated,
        lines=lines,
        errors=tuple(problems),
        kept=kept,
        notes=notes,
        verified=None if dry_run else verified,
        rolled_back=rolled_back,
        broken=broken,
        removed_packages=tuple(removed_packages),
        used_by=tuple(sorted(per_package.items())),
        refused=refused,
    ), ledger.charges


def _startup_note(the_plan: Plan, removed: bytearray, lines: tuple[Line, ...]
                  ) -> tuple[str, ...]:
    """What removing compiled bytecode costs at start-up here: how many modules (and
    how much source) lose every compiled file and compile again at each start that
    imports them where nothing can write bytecode back; the timings are the
    benchmark's to say, not a figure repeated for every env."""
    removed_bytes = sum(line.saving.bytes for line in lines if line.name == BYTECODE_STRATEGY)
    if removed_bytes <= 0:
        return ()
    modules = _recompiled(the_plan, removed)
    source = sum(the_plan.scan.sizes[i] for i in modules)
    return ((f"code stays as source: the compiled files of "
             f"{counted(len(modules), 'module')} ({human(source)} of source) are removed, "
             "so at every start where Python cannot write bytecode back (a read-only "
             "image, AWS Lambda) it compiles again each of them it imports "
             "(BENCHMARKS.md, 'Start-up', measures what that costs a data-science "
             f"service). --python-code both keeps start-up fast for about "
             f"{human(removed_bytes)} more, valid even after file times are reset; "
             "--python-code bytecode keeps it fast without the sources"),)


def _recompiled(the_plan: Plan, removed: bytearray) -> set[int]:
    """The ``.py`` files that stay while every compiled file of theirs the ``bytecode``
    strategy selected goes: ``d/__pycache__/m.cpython-311.pyc`` is ``d/m.py``'s, a
    legacy ``d/m.pyc`` beside it too."""
    scan_ = the_plan.scan
    found: set[int] = set()
    where: dict[str, int] = {}  # filled at the first pyc: scan.find walks siblings
    for selection in the_plan.selections:
        if selection.strategy != BYTECODE_STRATEGY:
            continue
        for root in selection.indices:
            for index in range(root, scan_.ends[root]):
                name = scan_.name(index)
                if not removed[index] or not name.endswith((".pyc", ".pyo")):
                    continue
                parent = scan_.parents[index]
                if scan_.name(parent) == "__pycache__":
                    directory, module = scan_.parents[parent], name.split(".")[0] + ".py"
                else:
                    directory, module = parent, name[:-1]
                if not where:
                    where = {path: i for i, path in enumerate(scan_.paths)}
                dirpath = scan_.paths[directory]
                source = where.get(f"{dirpath}/{module}" if dirpath else module)
                if source is not None and not removed[source]:
                    found.add(source)
    return found


def _phase_saving(ledger: Ledger, scan_: Scan, change: Outcome) -> Saving:
    """What one phase takes off the prefix: its replacements, links, removals and adds. A
    new directory is charged file by file (a fresh ``__pycache__`` holds each module's
    own), and the rest (its directories) to itself."""
    line = change.name
    total = Saving(files=len(change.replaced))
    for item in change.replaced:
        total += ledger.replace(item.index, item.size, item.allocated, line=line)
    total += ledger.remove((k.index for k in change.linked), line=line)
    for link in change.linked:
        if link.size:  # a symlink is an entry of its own
            total += ledger.add(link.size, 0, line=line, path=scan_.paths[link.index])
    total += ledger.remove(subtrees(scan_, change.removed), line=line)
    for new in change.added:
        inside = [(path, size) for path, size, _ in new.files if path != new.path]
        for path, size in inside:
            total += ledger.add(size, 0, line=line, path=path)
        rest = new.size - sum(size for _, size in inside)
        total += ledger.add(rest, new.allocated, line=line, path=new.path)
    return total


def _metadata_saving(ledger: Ledger, scan_: Scan,
                     metadata: Sequence[condameta.Change]) -> Saving:
    """Records shrink as removed paths leave them, views and the history line are new."""
    line = METADATA
    top = scan_.find("conda-meta")
    where = {} if top is None else {scan_.paths[i]: i for i in range(top, scan_.ends[top])}
    total = Saving()
    for change in metadata:
        index = where.get(change.path)
        if change.gone:
            total += ledger.remove((index,), line=line) if index is not None else Saving()
        elif index is None:
            total += ledger.add(change.size, change.allocated, line=line, path=change.path)
        else:
            total += ledger.replace(index, change.size, change.allocated, line=line)
    return total
