"""The whole shrink, left to right: scan, plan, execute (as a transaction), report."""

from __future__ import annotations

import datetime
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from shrinkconda import (
    __version__,
    breakdown,
    condameta,
    dedup_phase,
    profiles,
    strategies,
    strip,
    strip_phase,
    trace,
    transaction,
    used_by,
    verify,
)
from shrinkconda.accounting import Ledger, Saving
from shrinkconda.plan import Plan, plan
from shrinkconda.report import Broken, Line, Report
from shrinkconda.scan import Problem, Scan, check_prefix, scan
from shrinkconda.strategies import locales

StageProgress = Optional[Callable[[str, int], None]]
"""Told ``(stage, n)`` as ``n`` more items of ``stage`` (``scan``, ``strip``) are done."""

STRIP = strip_phase.NAME
"""The strip phase's name in the report; ``--only``/``--skip`` take it like a strategy."""
DEDUP = dedup_phase.NAME
"""The dedup phase's name: a strategy for ``--only``/``--skip`` and profiles, run after
the strip phase since it replaces files by links instead of removing them."""
FROM_PROFILE = "profile"
"""``Options.strip_mode`` that means: the profile's strip mode."""


@dataclass(frozen=True)
class Options:
    """What the user chose; the defaults are a plain ``shrinkconda shrink``."""

    only: tuple[str, ...] = ()
    """Run only these strategies (and ``strip``, if named); default: all defaults."""
    skip: tuple[str, ...] = ()
    """Do not run these strategies (``strip`` included)."""
    keep: tuple[str, ...] = ()
    """Globs of paths (relative to the prefix) that nothing may remove."""
    profile: str = profiles.DEFAULT
    """The profile (``safe``, ``aggressive``, a plugin's) that says what runs without
    ``only``, and the strip mode."""
    strip_mode: str | None = FROM_PROFILE
    """What ``strip`` removes from ELF objects (``debug``, ``unneeded``, ``all``, or
    ``dh``: per file, like Debian's ``dh_strip``); :data:`FROM_PROFILE` takes the
    profile's; ``None`` turns the strip phase off."""
    keep_locales: tuple[str, ...] = ()
    """Languages the ``locales`` strategy spares (``de`` spares ``de_AT`` too)."""
    jobs: int | None = None
    """How many files to strip at once (default: the number of CPUs)."""
    verify: bool = True
    """Import every distribution's top-level modules after staging; roll back on harm."""
    verify_commands: tuple[str, ...] = ()
    """The user's own smoke tests, each must exit 0 after the shrink."""
    conda_pack_views: bool = False
    """Point changed records at package-cache views (:mod:`cacheview`), so conda-pack
    packs them without its "uncached" warning. Off by default: ``zip -r`` and
    ``shutil.copytree`` follow the views' directory symlinks and copy the env again."""
    extras: breakdown.Wanted = field(default_factory=breakdown.Wanted)
    """The report's optional parts: per package, the HTML page, compressed sizes."""
    used_by: tuple[str, ...] = ()
    """Shell commands run under a trace: everything none of them uses is removed."""
    used_by_timeout: float = trace.TIMEOUT
    """Seconds each ``used_by`` command may run, before and after the shrink."""
    command_output: trace.Output = None
    """Where the ``used_by`` commands' output goes while traced (``None``: nowhere)."""

    def strips(self) -> bool:
        """Whether the strip phase runs."""
        wanted = STRIP in self.only if self.only else True
        return self.strip_mode is not None and wanted and STRIP not in self.skip


def audit(prefix: str | os.PathLike[str], options: Options = Options(),
          progress: StageProgress = None) -> Report:
    """What :func:`shrink` would do, without changing anything.

    An unfinished transaction a killed shrink left behind is finished or rolled back
    first, so the prediction is about a consistent prefix.
    """
    root = check_prefix(prefix)
    breakdown.check(options.extras, root)
    options, chosen, dedups, plugin_problems = _resolve(options)
    mode = options.strip_mode if options.strips() else None
    with transaction.locked(root):
        notes = _recover(root)
        usage = used_by.trace_workloads(root, options.used_by, options.used_by_timeout,
                                        options.command_output)
        the_plan, problems = _plan(root, chosen, plugin_problems, options, progress, usage)
        extras = breakdown.Breakdown(options.extras, the_plan)
        removed = the_plan.removed()
        stripped = strip_phase.predict(the_plan.scan, removed, mode, _stage(progress, STRIP))
        replaced = stripped.replaced if stripped else ()
        linked = dedup_phase.predict(the_plan.scan, removed, replaced,
                                     options.conda_pack_views) if dedups else None
        payload = _payload(the_plan, removed, replaced, options, digest=lambda path: "0" * 64,
                           linked=linked)
        metadata, dropped = condameta.predict(the_plan.scan, payload)
        report = _report(the_plan, removed, problems, dry_run=True, stripped=stripped,
                         notes=notes, metadata=metadata, removed_packages=dropped, linked=linked)
        return extras.finish(report, removed, replaced, metadata, lambda: breakdown.predicted_after(
            the_plan, removed, replaced, options.strip_mode, payload, metadata, options.jobs))


def shrink(prefix: str | os.PathLike[str], options: Options = Options(),
           progress: StageProgress = None) -> Report:
    """Shrink the prefix as one transaction and report what it freed.

    Removals are renamed into a staging directory and stripped copies take their
    originals' places; then the environment is verified. If something that imported
    before no longer does, everything goes back and the report says what broke.
    """
    root = check_prefix(prefix)
    breakdown.check(options.extras, root)
    options, chosen, dedups, plugin_problems = _resolve(options)
    mode = options.strip_mode if options.strips() else None
    with transaction.locked(root), ThreadPoolExecutor(max_workers=1) as background, \
            verify.ImportCheck(root, options.jobs or 2) as imports:
        notes = _recover(root)
        usage = used_by.trace_workloads(root, options.used_by, options.used_by_timeout,
                                        options.command_output)
        # What imports before the shrink is asked of the env's own python (subprocesses)
        # while this process scans, plans and strips: nothing changes until staging.
        if usage is None:
            importable = background.submit(verify.importable, imports, options.verify)
        the_plan, problems = _plan(root, chosen, plugin_problems, options, progress, usage)
        extras = breakdown.Breakdown(options.extras, the_plan)  # reads what the shrink changes
        scan_ = the_plan.scan
        if usage is not None:  # the modules to check depend on what the plan prunes
            importable = background.submit(verify.importable, imports, options.verify,
                                           used_by.modules_to_verify(the_plan, usage))
        removed = the_plan.removed()
        txn = transaction.Transaction(root)
        made, stripping = strip_phase.make(scan_, removed, mode, options.jobs,
                                           _stage(progress, STRIP), txn)
        linked = dedup_phase.make(scan_, removed, made, txn, stripping.temp_dirs,
                                  options.conda_pack_views) if dedups else None
        temp_dirs = stripping.temp_dirs + (linked.temp_dirs if linked else ())
        modules, verify_notes = importable.result()
        notes += verify_notes
        steps = [transaction.Step(scan_.paths[i], f"r{n}") for n, i in enumerate(the_plan.roots())]
        steps += [transaction.Step(scan_.paths[m.index], f"s{n}", os.path.relpath(m.temp, root))
                  for n, m in enumerate(made)]
        steps += [transaction.Step(scan_.paths[k.index], f"d{n}", os.path.relpath(k.temp, root))
                  for n, k in enumerate(linked.links if linked else ())]
        distributed = set(verify.top_level_modules(root)) if options.verify else set()
        failed = txn.stage(steps, temp_dirs)
        problems += transaction.problems_for(failed)
        removed, made = _without_failed(scan_, removed, made, failed)
        if linked is not None and failed:
            linked = linked.without({step.path for step, _ in failed}, scan_)
        if options.verify:
            verify.reuse_staged_bytecode(imports, txn.staging, steps)
        broken = verify.broken(imports, modules, distributed,
                               options.verify_commands + options.used_by,
                               options.used_by_timeout) if options.verify else ()
        if broken:
            txn.rollback()
            report = _report(the_plan, bytearray(len(scan_)), problems, dry_run=False,
                             stripped=stripping.with_replaced(()) if options.strips() else None,
                             notes=notes, broken=broken, verified=True, rolled_back=True,
                             linked=linked.undone() if linked else None)
            return extras.finish(report, bytearray(len(scan_)), (), (), after=None)
        dropped: list[str] = []
        txn.commit(_payload(the_plan, removed, made, options, digest=condameta.sha256, linked=linked),
                   lambda payload: dropped.extend(condameta.apply(root, payload)))
        if options.verify and modules:
            notes += ((f"verified: the {len(modules)} top-level modules that imported "
                       "before the shrink still import"),)
        metadata = condameta.measure(scan_)
        report = _report(the_plan, removed, problems, dry_run=False,
                         stripped=stripping.with_replaced(made) if options.strips() else None,
                         notes=notes, verified=options.verify, metadata=metadata,
                         removed_packages=dropped, linked=linked)
        return extras.finish(report, removed, made, metadata,
                             lambda: breakdown.measured_after(root))


def _recover(root: Path) -> tuple[str, ...]:
    note = transaction.Transaction(root).recover(
        lambda payload: condameta.apply(root, payload))
    return (note,) if note else ()


def _resolve(options: Options
             ) -> tuple[Options, tuple[strategies.Strategy, ...], bool, list[Problem]]:
    """The options with the profile's strip mode filled in, the strategies that remove,
    whether the dedup phase runs, and the plugins that failed to load. Bad names fail
    here, before anything is touched."""
    profile, problems = profiles.find(options.profile)
    if options.strip_mode == FROM_PROFILE:
        options = replace(options, strip_mode=profile.strip_mode)
    everything, plugin_problems = strategies.available()
    only = tuple(n for n in options.only if n != STRIP)
    skip = tuple(n for n in options.skip if n != STRIP)
    if options.only and not only:
        chosen: tuple[strategies.Strategy, ...] = ()  # --only strip
    else:
        chosen = strategies.choose(everything, only, skip, profile)
    chosen = tuple(locales.keeping(s, options.keep_locales) for s in chosen
                   if not (s.name == DEDUP and s.origin == "built-in"))
    dedups = any(s.name == DEDUP for s in strategies.choose(everything, only, skip, profile)) \
        if not (options.only and not only) else False
    return options, chosen, dedups, [*problems, *plugin_problems]


def _plan(root: Path, chosen: Sequence[strategies.Strategy], plugin_problems: list[Problem],
          options: Options, progress: StageProgress,
          usage: trace.Usage | None = None) -> tuple[Plan, list[Problem]]:
    the_scan: Scan = scan(root, _stage(progress, "scan"))
    problems = [*plugin_problems, *the_scan.problems]
    if usage is None:
        return plan(the_scan, chosen, options.keep), problems
    pruning = used_by.prune(the_scan, usage)  # after the built-ins: they keep their lines
    return plan(the_scan, chosen, options.keep, pruning.used, pruning.released,
                last=pruning.strategy), problems


def _without_failed(scan_: Scan, removed: bytearray, made: list[strip.Replacement],
                    failed: Sequence[tuple[transaction.Step, str]]
                    ) -> tuple[bytearray, list[strip.Replacement]]:
    """What really left: the plan minus the steps that could not be staged."""
    if not failed:
        return removed, made
    failed_paths = {step.path for step, _ in failed}
    removed = bytearray(removed)
    for index, path in enumerate(scan_.paths):
        if path in failed_paths:
            removed[index:scan_.ends[index]] = bytes(scan_.ends[index] - index)
            parent = scan_.parents[index]
            while parent > 0 and removed[parent]:  # a directory emptied around it stays
                removed[parent] = 0
                parent = scan_.parents[parent]
    return removed, [m for m in made if scan_.paths[m.index] not in failed_paths]


def _payload(the_plan: Plan, removed: bytearray, made: Sequence[strip.Replacement],
             options: Options, digest: Callable[[Path], str],
             linked: dedup_phase.DedupPhase | None = None) -> dict[str, Any]:
    """What the commit records in ``conda-meta``: small, roots only."""
    scan_ = the_plan.scan
    by_strategy: dict[str, list[str]] = {}
    for selection in the_plan.selections:
        roots = [scan_.paths[i] for i in selection.indices
                 if removed[i] and not removed[scan_.parents[i]]]
        by_strategy[selection.strategy] = sorted(roots)
    payload: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "shrinkconda": __version__,
        "removed": by_strategy,
        "strip_mode": options.strip_mode if options.strips() else None,
        "stripped": {scan_.paths[m.index]: [m.size, digest(scan_.prefix / scan_.paths[m.index])]
                     for m in made},
        "kept": [[k.path, k.reason] for k in the_plan.kept],
        "views": options.conda_pack_views,
    }
    if linked is not None:
        payload["deduplicated"] = {scan_.paths[k.index]: scan_.paths[k.target]
                                   for k in linked.links}
    return payload


def _report(the_plan: Plan, removed: bytearray, problems: list[Problem], dry_run: bool,
            stripped: strip_phase.StripPhase | None = None, notes: tuple[str, ...] = (),
            broken: tuple[Broken, ...] = (), verified: bool | None = None,
            rolled_back: bool = False, metadata: Sequence[condameta.Change] = (),
            removed_packages: Sequence[str] = (), linked: dedup_phase.DedupPhase | None = None) -> Report:
    ledger = Ledger(the_plan.scan)
    lines: tuple[Line, ...] = ()
    per_package: dict[str, int] = {}
    for s in the_plan.selections:
        if s.strategy == used_by.NAME:
            saving, per_package = used_by.account(ledger, the_plan.scan,
                                                  (i for i in s.indices if removed[i]))
            lines += (Line(s.strategy, saving),)
        else:
            lines += (Line(s.strategy, ledger.remove(i for i in s.indices if removed[i])),)
    if stripped is not None:
        lines += (Line(STRIP, strip_phase.saving(ledger, stripped.replaced)),)
        problems = problems + stripped.problems
        notes += stripped.notes
    if linked is not None:
        lines += (Line(DEDUP, ledger.remove(k.index for k in linked.links)),)
        problems = problems + linked.problems
        notes += linked.notes
    if metadata:
        lines += (Line("conda-meta", _metadata_saving(ledger, the_plan.scan, metadata)),)
    if removed_packages:
        notes += ((f"removed the conda-meta records of {len(removed_packages)} packages "
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
        kept=the_plan.kept,
        notes=notes,
        verified=None if dry_run else verified,
        rolled_back=rolled_back,
        broken=broken,
        removed_packages=tuple(removed_packages),
        used_by=tuple(sorted(per_package.items())),
    )


def _stage(progress: StageProgress, stage: str) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda n: progress(stage, n)


def _metadata_saving(ledger: Ledger, scan_: Scan,
                     metadata: Sequence[condameta.Change]) -> Saving:
    """Records shrink as removed paths leave them, views and the history line are new."""
    top = scan_.find("conda-meta")
    where = {} if top is None else {scan_.paths[i]: i for i in range(top, scan_.ends[top])}
    total = Saving()
    for change in metadata:
        index = where.get(change.path)
        if change.gone:
            total += ledger.remove((index,)) if index is not None else Saving()
        elif index is None:
            total += ledger.add(change.size, change.allocated)
        else:
            total += ledger.replace(index, change.size, change.allocated)
    return total
