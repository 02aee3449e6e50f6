"""The ``used-by`` selection: everything the traced workloads did not use goes.

It runs after the built-in strategies, so they keep their lines. What the workloads
used is protected from every strategy; ``conda-meta/``, ``--keep`` globs and the
metadata of distributions that stay are protected by the plan as always.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from shrinkconda import distmeta, verify
from shrinkconda.appaware import trace
from shrinkconda.appaware.trace import Usage
from shrinkconda.plan import Plan
from shrinkconda.scan import Scan
from shrinkconda.strategies.base import Strategy

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
    """The used-by selection over ``scan`` for what the workloads used."""
    index_of = {path: i for i, path in enumerate(scan.paths)}
    used = bytearray(len(scan))
    for path in usage.paths:
        index = index_of.get(path)
        if index is not None:
            used[index] = 1
    for index in _always_kept(scan, index_of):
        used[index:scan.ends[index]] = b"\x01" * (scan.ends[index] - index)
    live = bytearray(used)  # used, or holds something used
    parents = scan.parents
    for index in range(len(scan) - 1, 0, -1):
        if live[index]:
            live[parents[index]] = 1
    released = frozenset(_released(scan, used, live, index_of))

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


def _always_kept(scan: Scan, index_of: dict[str, int]) -> Iterator[int]:
    """Subtrees kept whatever the trace saw: the stdlib's ``encodings`` package, since
    the codec Python starts with follows the locale of wherever it runs next."""
    lib = index_of.get("lib")
    if lib is None:
        return
    for child in scan.children(lib):
        if scan.name(child).startswith("python"):
            found = index_of.get(f"{scan.paths[child]}/encodings")
            if found is not None:
                yield found


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


def modules_to_verify(the_plan: Plan, usage: Usage) -> list[str]:
    """What must import after the shrink: the modules the workloads imported, and every
    distribution's top-level module that the used-by selection left whole."""
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
    return sorted(usage.modules | untouched)


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
    own = trace.resolve(prefix, [*trace.loaded_modules_in(prefix), sys.executable])
    return replace(usage, paths=usage.paths | own)  # the GPU driver seen stays
