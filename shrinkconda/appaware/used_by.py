"""The ``used-by`` selection: everything the traced workloads did not use goes.

It runs after the built-in strategies, so they keep their lines. What the workloads
used is protected from every strategy; ``conda-meta/``, ``--keep`` globs and the
metadata of distributions that stay are protected by the plan as always.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from shrinkconda import distmeta, verify
from shrinkconda.appaware import packages, trace
from shrinkconda.appaware.trace import Usage
from shrinkconda.plan import Plan
from shrinkconda.scan import DIR, Scan
from shrinkconda.strategies.base import Strategy
from shrinkconda.units import counted

NAME = "used-by"
"""The selection's name in the report and the history."""

_METADATA = (".dist-info", ".egg-info")


@dataclass(frozen=True)
class Pruning:
    """What ``--used-by`` asks of the plan."""

    strategy: Strategy
    """Selects every entry the workloads did not use (a directory: its subtree)."""
    used: bytearray
    """A mask over the scan: 1 where the workloads used the entry."""
    released: frozenset[int]
    """``*.dist-info``/``*.egg-info`` of distributions that do not stay: the plan does
    not protect these, so a package left with no files can lose its record."""


def prune(scan: Scan, usage: Usage) -> Pruning:
    """The used-by selection over ``scan`` for what the workloads used, each package a
    unit (:mod:`~shrinkconda.appaware.packages`)."""
    index_of = {path: i for i, path in enumerate(scan.paths)}
    used = _mask(usage.paths, index_of, len(scan))
    opened = _mask(usage.opened, index_of, len(scan))
    drop, keep = packages.probed_only(scan, used, opened)
    for index in drop:
        used[index:scan.ends[index]] = bytes(scan.ends[index] - index)
    for index in keep:
        used[index:scan.ends[index]] = b"\x01" * (scan.ends[index] - index)
    stdlib, third = packages.imported_packages(usage.opened)
    for index in packages.whole(scan, stdlib):
        used[index] = 1
    for index in packages.families(scan, third):
        used[index:scan.ends[index]] = b"\x01" * (scan.ends[index] - index)
    live = bytearray(used)  # used, or holds something used
    parents = scan.parents
    for index in range(len(scan) - 1, 0, -1):
        if live[index]:
            live[parents[index]] = 1
    released = frozenset(_released(scan, used, live, index_of)) | frozenset(
        i for i in drop if scan.paths[i].endswith(_METADATA))

    pkgs = scan.find("pkgs")  # the empty pkgs/ stays, as the pkgs-cache strategy leaves it

    def select(the_scan: Scan) -> Iterator[int]:
        index, ends = 1, the_scan.ends
        while index < len(the_scan):
            if live[index] or index == pkgs:
                index += 1
            else:
                yield index
                index = ends[index]

    strategy = Strategy(NAME, "everything the --used-by commands did not use", select,
                        default=False)
    return Pruning(strategy, used, released)


def _mask(paths: Iterable[str], index_of: dict[str, int], size: int) -> bytearray:
    """1 at each scan entry among ``paths``."""
    mask = bytearray(size)
    for path in paths:
        index = index_of.get(path)
        if index is not None:
            mask[index] = 1
    return mask


def _released(scan: Scan, used: bytearray, live: bytearray,
              index_of: dict[str, int]) -> Iterator[int]:
    """Metadata directories of distributions none of whose files was used."""
    owners = scan.owners
    owner_used = set()
    for index in range(len(scan)):
        if used[index] and owners[index] >= 0:
            owner_used.add(owners[index])
    for index, path in enumerate(scan.paths):
        if not path.endswith(_METADATA) or path.startswith("pkgs/") or live[index]:
            continue
        owner = owners[index]
        if owner >= 0:
            if owner not in owner_used:
                yield index
        elif _record_unused(scan, index, live, index_of):
            yield index


def _record_unused(scan: Scan, index: int, live: bytearray, index_of: dict[str, int]) -> bool:
    """A distribution no conda package owns (pip installed it) is unused when its
    ``RECORD`` lists files and none of them was used."""
    record = scan.prefix / scan.paths[index] / "RECORD"
    try:
        lines = record.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False
    site = os.path.dirname(scan.paths[index])
    listed = 0
    for line in lines:
        relpath = os.path.normpath(os.path.join(site, line.split(",", 1)[0]))
        found = index_of.get(relpath)
        if found is not None:
            listed += 1
            if live[found]:
                return False
    return listed > 0


def public_submodules(the_plan: Plan) -> tuple[list[str], list[str]]:
    """``(kept, pruned)``: the public submodules (``scipy.signal``; not ``_private``
    ones, not test suites) of every site-packages package that stays, by whether the
    used-by selection removed them whole."""
    scan = the_plan.scan
    removed = the_plan.removed()
    pruned_mask = bytearray(len(scan))
    for selection in the_plan.selections:
        if selection.strategy == NAME:
            for index in selection.indices:
                pruned_mask[index] = 1
    kept: set[str] = set()
    pruned: set[str] = set()
    for lib in packages.stdlib_dirs(scan):
        site = scan.find(f"{scan.paths[lib]}/site-packages")
        if site is None:
            continue
        for top in scan.children(site):
            if removed[top] or packages.module_name(scan, top) is None \
                    or scan.kinds[top] != DIR:
                continue
            for child in scan.children(top):
                name = packages.module_name(scan, child)
                if name is None or name.startswith("_") or name in packages.SKIPPED_PARTS:
                    continue
                dotted = f"{scan.name(top)}.{name}"
                if pruned_mask[child]:
                    pruned.add(dotted)
                elif not removed[child]:
                    kept.add(dotted)
    return sorted(kept), sorted(pruned - kept)


def pruned_note(the_plan: Plan, usage: Usage) -> tuple[str, ...]:
    """Which public submodules of packages that stay go, on purpose, and why; and which
    packages go although the expansion's imports loaded them (:attr:`Usage.optional`)."""
    notes = []
    pruned = public_submodules(the_plan)[1]
    if pruned:
        notes.append(
            f"--used-by removed {counted(len(pruned), 'public submodule')} of packages that "
            "stay, since no traced run imported them and their packages do not announce them "
            f"as lazily loaded (--keep a path to keep one): {packages.describe(pruned)}")
    scan, removed = the_plan.scan, the_plan.removed()
    gone = sorted(name for name in usage.optional for lib in packages.stdlib_dirs(scan)
                  if (found := scan.find(f"{scan.paths[lib]}/site-packages/{name}")) is not None
                  and removed[found])
    if gone:
        notes.append(
            f"--used-by removed {packages.describe(gone)}: no traced run imported "
            f"{'it' if len(gone) == 1 else 'them'}, only the check that imports what the "
            "packages they did import announce, and that imports as well without "
            f"{'it' if len(gone) == 1 else 'them'} (checked); code that calls into "
            f"{'it' if len(gone) == 1 else 'them'} at run time, such as torch.compile on a "
            "GPU into triton, needs --keep of its directory")
    return tuple(notes)


def modules_to_verify(the_plan: Plan, usage: Usage) -> list[str]:
    """What must import after the shrink: the modules the workloads imported, those
    imported on their behalf (each package a unit), the public submodules of the
    packages that stay, and every distribution's top-level module that the used-by
    selection left whole."""
    scan = the_plan.scan
    touched = set()
    for selection in the_plan.selections:
        if selection.strategy != NAME:
            continue
        for index in selection.indices:
            parts = scan.paths[index].split("/")
            if len(parts) >= 4 and parts[0] == "lib" and parts[2] == "site-packages":
                touched.add(parts[3].split(".", 1)[0])
    untouched = {m for m in verify.top_level_modules(scan.prefix)
                 if m.split(".")[0] not in touched}
    return sorted(usage.modules | untouched | usage.expanded
                  | set(public_submodules(the_plan)[0]))


def trace_workloads(prefix: Path, commands: Sequence[str], timeout: float,
                    output: trace.Output) -> Usage | None:
    """Trace the commands, plus what the prefix's python needs to start, to verify the
    shrink and to read distributions' metadata, plus this process' own modules if it
    runs on that python."""
    if not commands:
        return None
    python = verify.python_of(prefix)
    with tempfile.TemporaryDirectory(prefix="shrinkconda-probe-") as workdir:
        # What reads the metadata of the distributions that stay stays too.
        extra = [[str(python), "-c", "pass"], [str(python), *verify.IMPORTER_ARGS],
                 distmeta.probe(python, Path(workdir))] if python else []
        usage = trace.trace(prefix, commands, timeout, output, extra)
        if python:
            usage |= _expand(prefix, python, Path(workdir), usage, timeout)
    own = trace.resolve(prefix, [*trace.loaded_modules_in(prefix), sys.executable])
    return usage | Usage(own, frozenset())  # the GPU driver seen stays


def _expand(prefix: Path, python: Path, workdir: Path, usage: Usage, timeout: float) -> Usage:
    """What the packages the workloads imported bring along, each a unit: the env's
    python imports them whole (stdlib) or asks them for their lazy submodules, traced."""
    stdlib, third = packages.imported_packages(usage.opened)
    argv, out = packages.expander(python, workdir, stdlib, third)
    label = (f"{python} importing the packages the commands imported, each whole or "
             "with the submodules it announces")
    expanded = trace.trace(prefix, [], timeout, None, [argv], [label])
    modules = packages.read_expanded(out)
    optional = packages.optional(python, workdir, stdlib, third, modules,
                                 packages.only_expanded(expanded.opened, usage.opened),
                                 timeout, trace.command_env(prefix))
    if optional:  # what it loads without them is what stays
        argv, out = packages.expander(python, workdir, stdlib, third, optional)
        hidden = f"{label}, as if {packages.describe(optional)} were not installed"
        expanded = trace.trace(prefix, [], timeout, None, [argv], [hidden])
        modules = packages.read_expanded(out)
    # The workloads' own runs say whether they use a GPU, not this one's imports.
    return replace(expanded, gpu_driver="") | Usage(frozenset(), frozenset(),
                                                    expanded=modules, optional=optional)
