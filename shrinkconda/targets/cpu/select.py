"""The dispatch selection: a pure choice over a scan of which members of each dispatch
family stay and which go, for a target CPU level and for what ``--used-by`` saw."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from shrinkconda.scan import FILE, Problem, Scan
from shrinkconda.strategies.base import Strategy
from shrinkconda.targets.cpu import levels
from shrinkconda.targets.cpu.families import CONFIG, CPU, Family, Member
from shrinkconda.targets.cpu.levels import Target

NAME = "target-cpu"
"""The selection's name in the report and the history."""
CAP_NAME = "shrinkconda-cpu-cap"
"""The cap files' name (:mod:`shrinkconda.dispatch.cap`)."""
_CAP_GLOBS = (f"lib/python3*/site-packages/{CAP_NAME}.pth",
              f"etc/conda/activate.d/{CAP_NAME}.sh", f"etc/conda/deactivate.d/{CAP_NAME}.sh")


@dataclass(frozen=True)
class Found:
    """A family present in the scanned prefix."""

    family: Family
    files: Mapping[str, tuple[int, ...]]
    """Stem -> the scan indices of ``<stem>.so*`` in the family's directory (a symlink
    chain and its target together); stems with no file are absent."""

    def indices(self, stems: Sequence[str]) -> Iterator[int]:
        """The scan indices of these stems' files."""
        for stem in stems:
            yield from self.files.get(stem, ())


@dataclass(frozen=True)
class Dispatch:
    """What the dispatch families ask of the plan."""

    target: Target | None
    strategy: Strategy
    """Selects what the target lets go."""
    stays: frozenset[int]
    """Scan indices that nothing may remove (``--used-by`` included)."""
    removes: frozenset[int]
    """Scan indices the target lets go."""
    found: tuple[Found, ...] = ()
    """Every family present and whole (its anchors are there)."""
    caps: Mapping[str, str] = field(default_factory=dict)
    """Variable -> value that keeps the dispatchers below what the target removed."""
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()

    def guard(self, used: bytearray | None, size: int) -> bytearray | None:
        """The plan's ``used`` mask: what the workloads used (``None``: nothing), plus
        what must stay, minus what the target lets go (the trace ran on one CPU, the
        cap keeps every CPU at or above the target away from it)."""
        if used is None and not self.stays:
            return None
        mask = bytearray(used) if used is not None else bytearray(size)
        for index in self.removes:
            mask[index] = 0
        for index in self.stays:
            mask[index] = 1
        return mask

    def pruned(self, removed: bytearray) -> tuple[Found, ...]:
        """The families that lose a member but keep their anchors: those to check."""
        out = []
        for found in self.found:
            anchors = list(found.indices(found.family.anchors))
            members = list(found.indices([m.stem for m in found.family.members]))
            if anchors and not any(removed[i] for i in anchors) \
                    and any(removed[i] for i in members):
                out.append(found)
        return tuple(out)


def select(scan: Scan, families: Sequence[Family], target: Target | None,
           used: bytearray | None = None, environ: Mapping[str, str] = {}) -> Dispatch:
    """Decide each present family's fate.

    Without a target, nothing a dispatcher may load goes. With one, a CPU family keeps
    the members every CPU at or above the target is made to load (with the cap in force):
    the generic one and the target's own. ``used`` is ``--used-by``'s mask: a family
    whose dispatcher or members were used keeps what it would keep without it, and its
    configuration layers the workloads did not load may go; a family not used at all is
    left to ``--used-by``. ``environ`` is where shrinkconda runs, for warnings.
    """
    stays: set[int] = set()
    removes: set[int] = set()
    found_all: list[Found] = []
    caps: dict[str, str] = {}
    problems: list[Problem] = []
    notes: list[str] = []
    above: dict[tuple[str, str], list[str]] = {}
    for family in families:
        found = _find(scan, family)
        if found is None:
            continue
        broken = _missing(scan, found, target)
        if broken:
            problems.append(Problem(family.directory, f"{family.name}: {broken} is missing "
                                    f"(a broken install?): {family.summary} left alone"))
            stays.update(found.indices(family.stems()))
            continue
        found_all.append(found)
        wanted = used is None or any(used[i] for i in found.indices(family.stems()))
        kept = _kept(family, target) if family.kind == CPU else _defaults(family, used)
        gone = [m for m in family.members if m not in kept and m.stem in found.files]
        if wanted:
            stays.update(found.indices(family.anchors))
            stays.update(found.indices([m.stem for m in kept]))
            stays.update(found.indices([n for m in kept for n in m.needs]))
            if used is not None and family.check_needs:  # --used-by may not have seen them
                stays.update(_matching(scan, family.check_needs))
        if family.kind == CPU and target is not None and gone:
            removes.update(found.indices([m.stem for m in gone]))
            capped = _capped(family, target)
            if wanted:
                caps[family.variable] = capped.cap
                loaded = _user_setting(family, capped, environ)
                if loaded:
                    above.setdefault((family.variable, capped.cap), []).append(loaded)
            notes.append(f"--target-cpu {target.describe()}: {family.summary} "
                         f"({family.name}{_origin(family)}) keep "
                         f"{', '.join(m.name for m in kept if m.stem in found.files)}, "
                         f"remove {', '.join(m.name for m in gone)}")
        elif family.kind == CONFIG and used is not None and wanted and gone:
            notes.append(f"--used-by: {family.summary} the commands did not load may go; "
                         f"to set {family.variable} to one of them later, keep it with "
                         f"--keep '{family.directory}/<library>.so*'")
    for (variable, value), stems in above.items():
        problems.append(Problem("", f"warning: {variable}={environ[variable]} is set where "
                                    f"shrinkconda runs: a program started with it loads "
                                    f"{' and '.join(stems)}, which --target-cpu "
                                    f"{target.level if target else ''} removes; unset it or "
                                    f"set {value}"))
    if used is not None:  # an earlier shrink's cap, whether the workloads read it or not
        stays.update(_matching(scan, _CAP_GLOBS))
    if target is not None and not found_all:
        notes.append(f"--target-cpu {target.describe()}: no CPU-dispatched library "
                     f"({', '.join(f.name for f in families)}) in this prefix: nothing to remove")
    if caps:
        settings = " ".join(f"{k}={v}" for k, v in sorted(caps.items()))
        notes.append(f"capped the dispatch at the target: every Python process of the env "
                     f"runs with {settings} unless it is set (a .pth file in site-packages), "
                     f"and so do activated shells (etc/conda/activate.d); programs that are "
                     f"not Python need it too: ENV {settings} in a Dockerfile, or a Lambda "
                     f"environment variable")
    chosen = frozenset(removes - stays)

    def pick(_scan: Scan) -> Iterator[int]:
        return iter(sorted(chosen))

    strategy = Strategy(NAME, "dispatched kernels no CPU at or above --target-cpu loads",
                        pick, default=False)
    return Dispatch(target, strategy, frozenset(stays), chosen, tuple(found_all), caps,
                    tuple(problems), tuple(notes))


def _matching(scan: Scan, globs: Sequence[str]) -> Iterator[int]:
    """Entries matching the globs, with their subtrees."""
    pattern = re.compile("|".join(fnmatch.translate(g) for g in globs))
    for index, path in enumerate(scan.paths):
        if pattern.match(path):
            yield from range(index, scan.ends[index])


def _find(scan: Scan, family: Family) -> Found | None:
    """The family's files in its directory, if any of its members is there."""
    top = scan.find(family.directory)
    if top is None:
        return None
    wanted = set(family.stems())
    files: dict[str, list[int]] = {}
    for child in scan.children(top):
        name = scan.name(child)
        stem, sep, _rest = name.partition(".so")
        if sep and stem in wanted and (not _rest or _rest.startswith(".")):
            files.setdefault(stem, []).append(child)
    if not any(m.stem in files for m in family.members):
        return None
    return Found(family, {k: tuple(v) for k, v in files.items()})


def _missing(scan: Scan, found: Found, target: Target | None) -> str:
    """The first library the family cannot do without that has no regular file."""
    family = found.family
    required = list(family.anchors)
    if family.kind == CPU:
        required += [m.stem for m in family.members if m.tier is None]
        if target is not None:
            required.append(_capped(family, target).stem)
    for stem in required:
        if not any(scan.kinds[i] == FILE for i in found.files.get(stem, ())):
            return stem
    return ""


def _capped(family: Family, target: Target) -> Member:
    """The member a CPU at or above the target loads with the cap in force: the
    highest tier the target reaches, else the lowest (no cap value goes below it)."""
    tiered = [m for m in family.members if m.tier is not None]
    reached = [m for m in tiered if levels.rank(m.tier or "") <= levels.rank(target.level)]
    return reached[-1] if reached else tiered[0]


def _kept(family: Family, target: Target | None) -> list[Member]:
    if target is None:
        return list(family.members)
    capped = _capped(family, target)
    return [m for m in family.members if m.tier is None or m is capped]


def _defaults(family: Family, used: bytearray | None) -> list[Member]:
    """Without ``--used-by`` every layer may be chosen; with it, the defaults stay (what
    the workloads loaded is kept by ``--used-by`` itself)."""
    return list(family.members) if used is None else [m for m in family.members if m.default]


def _user_setting(family: Family, capped: Member, environ: Mapping[str, str]) -> str:
    """The library a cap value set by the user makes the dispatcher load, when the
    target removes it; else ""."""
    value = environ.get(family.variable, "").strip().upper()
    matches = [m for m in family.members if m.tier is not None and value.startswith(m.cap)]
    member = max(matches, key=lambda m: len(m.cap)) if value and matches else None
    if member is None or levels.rank(member.tier or "") <= levels.rank(capped.tier or ""):
        return ""
    return member.stem


def _origin(family: Family) -> str:
    return "" if family.origin == "built-in" else f", {family.origin}"
