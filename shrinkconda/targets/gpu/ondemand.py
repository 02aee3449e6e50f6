"""The on-demand choice for ``--used-by``: which GPU libraries stay although no traced
command loaded them, because a GPU host loads them at its first GPU call.

Traced without a GPU (none on this host, and no traced process found the CUDA driver),
every family (:mod:`families`) whose loader stays is kept whole: the trace could not
have seen its members load. Traced with one, a family one of whose on-demand members
did load is kept whole (another operation loads another member); a family none of
whose on-demand members loaded is left to ``--used-by``.
"""

from __future__ import annotations

import fnmatch
import glob
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from shrinkconda.appaware.trace import DRIVER_MISSING, DRIVER_OPENED
from shrinkconda.scan import DIR, FILE, Problem, Scan
from shrinkconda.targets.gpu import families
from shrinkconda.targets.gpu.families import Family
from shrinkconda.units import human

DEVICES = "/dev/nvidia*"
"""NVIDIA's device nodes: present where a GPU and its driver are."""


@dataclass(frozen=True)
class Found:
    """A family present in the scanned prefix."""

    family: Family
    loaders: tuple[int, ...]
    """Scan indices of the loaders' files (symlinks and targets)."""
    members: tuple[tuple[int, bool], ...]
    """Scan indices of the members' files, each with whether it loads on demand."""

    def indices(self) -> Iterator[int]:
        """Every file of the family."""
        yield from self.loaders
        yield from (i for i, _ in self.members)


@dataclass(frozen=True)
class OnDemand:
    """What the GPU families ask of the plan."""

    stays: frozenset[int] = frozenset()
    """Scan indices ``--used-by`` may not remove."""
    kept: tuple[Found, ...] = ()
    """The families kept whole."""
    with_gpu: bool = False
    """Whether the trace saw a GPU."""
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()

    def guard(self, used: bytearray | None) -> bytearray | None:
        """``--used-by``'s mask with the kept families added (``None``: no ``--used-by``)."""
        if used is None or not self.stays:
            return used
        mask = bytearray(used)
        for index in self.stays:
            mask[index] = 1
        return mask


def find(scan: Scan, known: Sequence[Family]) -> list[Found]:
    """The families with at least one member in the prefix."""
    out = []
    dirs = [i for i, kind in enumerate(scan.kinds) if kind == DIR]
    for family in known:
        where = re.compile("|".join(fnmatch.translate(d) for d in family.directories))
        loaders: list[int] = []
        members: list[tuple[int, bool]] = []
        for index in dirs:
            if not where.match(scan.paths[index]):
                continue
            for child in scan.children(index):
                if scan.kinds[child] == DIR:
                    continue
                name = scan.name(child)
                if any(fnmatch.fnmatchcase(name, g) for g in family.loaders):
                    loaders.append(child)
                for member in family.members:
                    if fnmatch.fnmatchcase(name, member.pattern):
                        members.append((child, member.on_demand))
                        break
        if any(on_demand for _, on_demand in members):
            out.append(Found(family, tuple(loaders), tuple(members)))
    return out


def select(scan: Scan, known: Sequence[Family], used: bytearray | None, driver: str,
           devices: Sequence[str]) -> OnDemand:
    """Decide which families ``--used-by`` keeps whole. ``driver`` is what the trace saw
    of the CUDA driver (:attr:`~shrinkconda.appaware.trace.Usage.gpu_driver`),
    ``devices`` the NVIDIA device nodes of the host that traced."""
    if used is None:
        return OnDemand()
    present = find(scan, known)
    with_gpu = bool(devices) or driver == DRIVER_OPENED
    mask = bytearray(used)
    kept: list[Found] = []
    changed = True
    while changed:  # a kept member may be another family's loader (cuSOLVER for torch)
        changed = False
        for found in present:
            if found in kept or not _wanted(found, mask, with_gpu):
                continue
            kept.append(found)
            changed = True
            for index in found.indices():
                mask[index] = 1
    stays = frozenset(i for f in kept for i in f.indices() if not used[i])
    notes = [_note(scan, kept, stays, with_gpu, driver, devices)] if kept else []
    return OnDemand(stays, tuple(kept), with_gpu, (), tuple(notes))


def choose(scan: Scan, used: bytearray | None, driver: str) -> OnDemand:
    """:func:`select` over the built-in and plugin families, on this host's devices;
    plugins that failed to load become problem lines."""
    if used is None:
        return OnDemand()
    known, problems = families.available()
    chosen = select(scan, known, used, driver, sorted(glob.glob(DEVICES)))
    return replace(chosen, problems=(*problems, *chosen.problems)) if problems else chosen


def _wanted(found: Found, mask: bytearray, with_gpu: bool) -> bool:
    if with_gpu:  # the trace saw what a GPU call loads
        return any(mask[i] for i, on_demand in found.members if on_demand)
    return any(mask[i] for i in found.loaders)


def _note(scan: Scan, kept: Sequence[Found], stays: frozenset[int], with_gpu: bool,
          driver: str, devices: Sequence[str]) -> str:
    inodes = {(scan.devs[i], scan.inos[i]): scan.sizes[i] for i in stays
              if scan.kinds[i] == FILE}
    names = ", ".join(f.family.name for f in kept)
    if with_gpu:
        seen = f"{devices[0]} on this host" if devices else "a traced process opened libcuda"
        return (f"traced with a GPU ({seen}): kept whole the GPU library families a traced "
                f"GPU call loaded ({names}): {_libraries(len(inodes))} more, "
                f"{human(sum(inodes.values()))}")
    why = ("no /dev/nvidia* on this host, and no traced process found libcuda.so"
           if driver == DRIVER_MISSING else "no /dev/nvidia* on this host, and no traced "
           "process asked for libcuda.so")
    return (f"traced without a GPU ({why}): kept {_libraries(len(inodes), 'GPU ')}, "
            f"{human(sum(inodes.values()))}, that a GPU host loads on demand ({names})")


def _libraries(n: int, kind: str = "") -> str:
    return f"{n:,} {kind}{'library' if n == 1 else 'libraries'}"
