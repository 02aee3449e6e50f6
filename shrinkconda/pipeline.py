"""The whole shrink, left to right, each stage in its own module: :mod:`scan`, then
:mod:`plan` (the strategies choose; so do :mod:`appaware` for ``--used-by`` and the
hardware :mod:`targets`), then the :mod:`phases` that rewrite or add files (python-code,
strip, soname-copies, dedup, cpu-cap; an audit predicts them, a shrink makes them); then the
:mod:`transaction` checks for room, stages everything, :mod:`verify` checks it, and it
commits or rolls back; :mod:`outcome` says what happened. The transaction's faults and
interrupt handling make any failure or signal on the way end in one line."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from shrinkconda import (
    condameta,
    distmeta,
    outcome,
    profiles,
    runtime_compilers,
    strategies,
    verify,
)
from shrinkconda.appaware import trace, used_by
from shrinkconda.phases import bytecode, dedup_phase, soname_copies, strip_phase
from shrinkconda.phases.base import Outcome, Phase, Replacement, removed_by, rooms, run_all
from shrinkconda.plan import Plan, plan
from shrinkconda.render import breakdown
from shrinkconda.render.report import Broken, Report
from shrinkconda.scan import Problem, Scan, check_prefix, scan
from shrinkconda.strategies import locales
from shrinkconda.targets import cpu as cpu_target
from shrinkconda.targets.cpu import cap as cpu_cap
from shrinkconda.targets.cpu import check as cpu_check
from shrinkconda.targets.cpu.select import Found
from shrinkconda.targets.gpu import archs as gpu_archs
from shrinkconda.targets.gpu import families as gpu_families
from shrinkconda.targets.gpu import ondemand as gpu_ondemand
from shrinkconda.targets.gpu import phase as gpu_phase
from shrinkconda.targets.gpu import wholefiles as gpu_files
from shrinkconda.transaction import faults, interrupt, journal, preflight, state, testhooks
from shrinkconda.units import counted

StageProgress = Optional[Callable[[str, int], None]]
"""Told ``(stage, n)`` as ``n`` more items of ``stage`` (``scan``, ``strip``) are done."""

STRIP = strip_phase.NAME
"""The strip phase's name in the report; ``--only``/``--skip`` take it like a strategy."""
DEDUP = dedup_phase.NAME
"""The dedup phase's name: a strategy for ``--only``/``--skip`` and profiles, run after
the strip phase since it replaces files by links instead of removing them."""
SONAMES = soname_copies.NAME
"""The soname-copies phase's name: like :data:`DEDUP`, a strategy that links, run after
the strip phase and before dedup."""
LINKERS = (SONAMES, DEDUP)
"""The built-in strategies whose work a phase does, in the order the phases run."""
FROM_PROFILE = "profile"
"""``Options.strip_mode`` that means: the profile's strip mode."""
PYTHON_CODE = bytecode.NAME
"""The python-code phase's name; ``--only``/``--skip`` take it like a strategy (skipped,
code stays in ``source`` form)."""
BYTECODE = "bytecode"
"""The strategy that removes compiled files when code stays in ``source`` form."""


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
    python_code: str = FROM_PROFILE
    """The form Python code takes (:data:`~shrinkconda.phases.bytecode.FORMS`):
    :data:`FROM_PROFILE` takes the profile's, or ``bytecode`` with ``used_by``."""
    python_code_convert: tuple[str, ...] = ()
    """Top-level packages the ``bytecode`` form converts although their code reads its
    own sources (``inspect.getsource``): by default they keep their ``.py``."""
    target_cpu: str | None = None
    """The lowest x86-64 level (or ``native``) the env must run on: dispatched kernels
    no CPU at or above it loads go, and the dispatch is capped there. ``None``: every
    kernel a dispatcher may load stays."""
    target_gpu: str | None = None
    """The GPU architectures the env must run on (``sm_90``, ``sm_80,sm_90``, ``none``,
    ``native``): device code no such GPU runs leaves the libraries whose licence allows
    it. ``None``: every library stays whole."""
    no_ptx: bool = False
    """With ``target_gpu``, drop the target's PTX too where a cubin covers it."""

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
    state.begin()
    root = check_prefix(prefix)
    breakdown.check(options.extras, root)
    target = cpu_target.levels.target(options.target_cpu)
    gpu = gpu_archs.target(options.target_gpu)
    options, chosen, linkers, plugin_problems = _resolve(options)
    mode = options.strip_mode if options.strips() else None
    with journal.locked(root):
        notes = _recover(root)
        testhooks.reached("recovered")
        usage = used_by.trace_workloads(root, options.used_by, options.used_by_timeout,
                                        options.command_output)
        the_plan, problems, plan_notes, cpu = _plan(root, chosen, plugin_problems, options,
                                                    progress, usage, target, gpu)
        notes += plan_notes
        extras = breakdown.Breakdown(options.extras, the_plan)
        removed = the_plan.removed()
        phases = _phases(options, mode, linkers, usage, progress, cpu, gpu)
        changes = run_all(phases, the_plan.scan, removed)
        payload = outcome.payload(the_plan, removed, changes, mode, options.conda_pack_views,
                                  digest=lambda path: "0" * 64)
        metadata, dropped = condameta.predict(the_plan.scan, payload)
        refused = preflight.refusal(root, the_plan, preflight.needs(
            the_plan, rooms(phases, the_plan.scan, removed)))
        report, charges = outcome.report(
            the_plan, removed, problems, dry_run=True, phases=changes,
            notes=notes + preflight.notes(refused), metadata=metadata,
            removed_packages=dropped, refused=refused, itemise=extras.itemises)
        return extras.finish(report, charges, lambda: breakdown.predicted_after(
            the_plan, removed_by(changes, the_plan.scan, removed), _stripped(changes),
            options.strip_mode, payload, metadata, options.jobs))


def shrink(prefix: str | os.PathLike[str], options: Options = Options(),
           progress: StageProgress = None) -> Report:
    """Shrink the prefix as one transaction and report what it freed.

    Removals are renamed into a staging directory and stripped copies take their
    originals' places; then the environment is verified. If something that imported
    before no longer does, everything goes back and the report says what broke.
    """
    state.begin()
    root = check_prefix(prefix)
    breakdown.check(options.extras, root)
    target = cpu_target.levels.target(options.target_cpu)
    gpu = gpu_archs.target(options.target_gpu)
    options, chosen, linkers, plugin_problems = _resolve(options)
    mode = options.strip_mode if options.strips() else None
    preflight.check_writable(root)  # before the lock, the journal, anything
    with interrupt.handled(), journal.locked(root), \
            faults.undone_on_failure(lambda: _recover(root), root), \
            ThreadPoolExecutor(max_workers=1) as background, \
            verify.ImportCheck(root, options.jobs or 2) as imports:
        notes = _recover(root)
        testhooks.reached("recovered")
        usage = used_by.trace_workloads(root, options.used_by, options.used_by_timeout,
                                        options.command_output)
        # What imports before the shrink is asked of the env's own python (subprocesses)
        # while this process scans, plans and strips: nothing changes until staging.
        if usage is None:
            importable = background.submit(verify.importable, imports, options.verify)
        readable = background.submit(distmeta.unreadable, root, verify.python_of(root)
                                     if options.verify else None)
        # --used-by keeps what its commands use: a compile none of them ran may break
        compiling = background.submit(runtime_compilers.working, root, verify.python_of(root)
                                      if options.verify and not options.used_by else None)
        the_plan, problems, plan_notes, cpu = _plan(root, chosen, plugin_problems, options,
                                                    progress, usage, target, gpu)
        notes += plan_notes
        extras = breakdown.Breakdown(options.extras, the_plan)  # reads what the shrink changes
        scan_ = the_plan.scan
        if usage is not None:  # the modules to check depend on what the plan prunes
            importable = background.submit(verify.importable, imports, options.verify,
                                           used_by.modules_to_verify(the_plan, usage))
        removed = the_plan.removed()
        phases = _phases(options, mode, linkers, usage, progress, cpu, gpu)
        preflight.check(root, the_plan, preflight.needs(the_plan, rooms(phases, scan_, removed)))
        txn = journal.Transaction(root)
        changes = run_all(phases, scan_, removed, txn)
        modules, verify_notes = importable.result()
        unreadable = readable.result()  # before staging changes anything
        notes += verify_notes
        steps = _steps(the_plan, changes)
        distributed = set(verify.top_level_modules(root)) if options.verify else set()
        failed = txn.stage(steps, [d for change in changes for d in change.temp_dirs])
        problems += journal.problems_for(failed)
        removed, changes = outcome.without_failed(scan_, removed, changes, failed)
        if options.verify:
            verify.reuse_staged_bytecode(imports, txn.staging, steps)
        broken, verify_notes = _broken(imports, modules, distributed, options, scan_,
                                       cpu.pruned(removed), unreadable, compiling.result())
        notes += verify_notes
        if broken:
            txn.rollback()
            report, charges = outcome.report(
                the_plan, bytearray(len(scan_)), problems, dry_run=False,
                phases=[change.undone() for change in changes], notes=notes,
                broken=broken, verified=True, rolled_back=True, itemise=extras.itemises)
            testhooks.reached("report")
            return extras.finish(report, charges, after=None)
        dropped: list[str] = []
        txn.commit(outcome.payload(the_plan, removed, changes, mode, options.conda_pack_views,
                                   digest=condameta.sha256),
                   lambda payload: dropped.extend(condameta.apply(root, payload)))
        # Shrunk from here on (state.SHRUNK): a signal or a fault while the report is made
        # says so, and changes nothing more.
        testhooks.reached("committed")
        if options.verify and modules:
            # With --used-by the list holds submodules too (each package a unit).
            noun = "module" if options.used_by else "top-level module"
            notes += ((f"verified: the {counted(len(modules), noun)} "
                       "that imported before the shrink still import"),)
        metadata = condameta.measure(scan_)
        report, charges = outcome.report(
            the_plan, removed, problems, dry_run=False, phases=changes, notes=notes,
            verified=options.verify, metadata=metadata, removed_packages=dropped,
            itemise=extras.itemises)
        testhooks.reached("report")
        return extras.finish(report, charges, lambda: breakdown.measured_after(root))


def _broken(imports: verify.ImportCheck, modules: list[str], distributed: set[str],
            options: Options, scan_: Scan, pruned: Sequence[Found],
            unreadable: dict[str, str], compilers: Sequence[str]
            ) -> tuple[tuple[Broken, ...], tuple[str, ...]]:
    """What the staged shrink broke: imports, the user's and the traced commands, the
    calls into the dispatched libraries it pruned, the metadata of distributions that
    stay (``unreadable``: what did not read before), and the runtime compilers that
    compiled before (``compilers``); with notes about the calls."""
    if not options.verify:
        return (), ()
    broken = verify.broken(imports, modules, distributed,
                           options.verify_commands + options.used_by, options.used_by_timeout,
                           options.python_code != bytecode.SOURCE)
    calls, notes = cpu_check.broken(scan_, pruned)
    python = verify.python_of(imports.prefix)
    metadata = distmeta.broken(imports.prefix, python, unreadable)
    compiles = [Broken(what, "command", error) for what, error
                in runtime_compilers.broken(imports.prefix, python, compilers)]
    if compilers:
        notes = (*notes, f"verified by a real compile: {', '.join(compilers)} still "
                 "compiles at run time" if not compiles else "")
    return (*broken, *calls, *metadata, *compiles), tuple(n for n in notes if n)


def _recover(root: Path) -> tuple[str, ...]:
    note = journal.Transaction(root).recover(
        lambda payload: condameta.apply(root, payload))
    return (note,) if note else ()


def _resolve(options: Options
             ) -> tuple[Options, tuple[strategies.Strategy, ...], frozenset[str], list[Problem]]:
    """The options with the profile's strip mode filled in, the strategies that remove,
    which of the linking phases (:data:`LINKERS`) run, and the plugins that failed to
    load. Bad names fail here, before anything is touched."""
    profile, problems = profiles.find(options.profile)
    if options.strip_mode == FROM_PROFILE:
        options = replace(options, strip_mode=profile.strip_mode)
    if options.python_code == FROM_PROFILE:
        # An app-aware shrink is for size limits: bytecode alone starts as fast as both.
        form = bytecode.BYTECODE if options.used_by else profile.python_code
        options = replace(options, python_code=form)
    if options.python_code not in bytecode.FORMS:
        raise bytecode.PythonCodeUsageError(
            f"unknown --python-code {options.python_code!r}; use one of "
            f"{', '.join(bytecode.FORMS)}")
    if (options.only and PYTHON_CODE not in options.only) or PYTHON_CODE in options.skip:
        options = replace(options, python_code=bytecode.SOURCE)  # code stays as it is
    everything, plugin_problems = strategies.available()
    only = tuple(n for n in options.only if n not in (STRIP, PYTHON_CODE))
    skip = tuple(n for n in options.skip if n not in (STRIP, PYTHON_CODE))
    if options.only and not only:
        chosen: tuple[strategies.Strategy, ...] = ()  # --only strip
    else:
        chosen = strategies.choose(everything, only, skip, profile)
    chosen = tuple(locales.keeping(s, options.keep_locales) for s in chosen
                   if not (s.name in LINKERS and s.origin == "built-in")
                   # in the other forms the python-code phase owns every compiled file
                   and not (s.name == BYTECODE and s.origin == "built-in"
                            and options.python_code != bytecode.SOURCE))
    linkers = frozenset(s.name for s in strategies.choose(everything, only, skip, profile)
                        if s.name in LINKERS and s.origin == "built-in") \
        if not (options.only and not only) else frozenset()
    return options, chosen, linkers, [*problems, *plugin_problems]


def _plan(root: Path, chosen: Sequence[strategies.Strategy], plugin_problems: list[Problem],
          options: Options, progress: StageProgress, usage: trace.Usage | None = None,
          target: cpu_target.Target | None = None, gpu: gpu_archs.GpuTarget | None = None
          ) -> tuple[Plan, list[Problem], tuple[str, ...], cpu_target.Dispatch]:
    """The plan, its problems, what the hardware targets and ``--used-by`` have to say
    about it, and the CPU dispatch choice the phases and verification need."""
    the_scan: Scan = scan(root, _stage(progress, "scan"))
    pruning = used_by.prune(the_scan, usage) if usage is not None else None
    cpu = cpu_target.choose(the_scan, target, pruning.used if pruning else None, os.environ)
    ondemand = gpu_ondemand.choose(the_scan, pruning.used if pruning else None,
                                   usage.gpu_driver if usage else "")
    problems = [*plugin_problems, *the_scan.problems, *cpu.problems, *ondemand.problems]
    chosen = (*chosen, cpu.strategy) if target is not None else chosen
    if gpu is not None:
        known, failed = gpu_families.available()
        chosen = (*chosen, gpu_files.strategy(gpu, families=known))
        problems += [p for p in failed if p not in problems]  # ondemand's may name them
    used = ondemand.guard(cpu.guard(pruning.used if pruning else None, len(the_scan)))
    notes = (*cpu.notes, *ondemand.notes)
    if pruning is None or usage is None:
        return plan(the_scan, chosen, options.keep, used), problems, notes, cpu
    # used-by runs after the built-ins: they keep their lines
    the_plan = plan(the_scan, chosen, options.keep, used, pruning.released,
                    last=pruning.strategy)
    return the_plan, problems, (*notes, *used_by.pruned_note(the_plan, usage)), cpu


def _phases(options: Options, mode: str | None, linkers: frozenset[str],
            usage: trace.Usage | None,
            progress: StageProgress, cpu: cpu_target.Dispatch,
            gpu: gpu_archs.GpuTarget | None = None) -> list[Phase]:
    """The phases that rewrite or add files, in order: the code's form, the GPU device
    code (before strip, which leaves the libraries it rewrote alone), strip, the soname
    copies and dedup, the CPU dispatch cap."""
    chosen: list[Phase] = []
    if options.python_code != bytecode.SOURCE:
        chosen.append(bytecode.PythonCodePhase(
            options.python_code, options.keep, usage.sources_read if usage else frozenset(),
            frozenset(options.python_code_convert), options.jobs or os.cpu_count() or 2,
            _stage(progress, bytecode.NAME)))
    if gpu is not None:
        chosen.append(gpu_phase.GpuPhase(gpu, not options.no_ptx, _stage(progress, gpu_phase.NAME)))
    if mode is not None:
        chosen.append(strip_phase.StripPhase(mode, options.jobs, _stage(progress, STRIP),
                                             keep=options.keep))
    if SONAMES in linkers:
        chosen.append(soname_copies.SonamePhase())
    if DEDUP in linkers:
        chosen.append(dedup_phase.DedupPhase(options.conda_pack_views))
    return chosen + cpu_cap.phases(cpu)


def _stripped(changes: Sequence[Outcome]) -> list[Replacement]:
    return [r for change in changes if change.name == STRIP for r in change.replaced]


def _steps(the_plan: Plan, changes: Sequence[Outcome]) -> list[journal.Step]:
    """What the transaction stages: the removals' roots, then each phase's changes."""
    paths = the_plan.scan.paths
    steps = [journal.Step(paths[i], f"r{n}") for n, i in enumerate(the_plan.roots())]
    return steps + [step for change in changes for step in change.steps(the_plan.scan)]


def _stage(progress: StageProgress, stage: str) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda n: progress(stage, n)
