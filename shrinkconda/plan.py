"""Decide what a shrink removes: run the strategies over a scan, minus what must stay."""

from __future__ import annotations

import fnmatch
import re
from array import array
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass

from shrinkconda.scan import DIR, Scan
from shrinkconda.strategies import Keep, Strategy

_PINNED = 2
"""Marks a directory that holds something protected: its other contents may go."""
_METADATA = 3
"""Marks an installed ``*.dist-info``/``*.egg-info`` subtree: protected from every
strategy except those that remove whole distributions (``dev-tools``)."""


@dataclass(frozen=True)
class Kept:
    """Something a strategy or the user asked to keep, shown in the report."""

    path: str
    reason: str


@dataclass(frozen=True)
class Selection:
    """What one strategy removes, after protection and after earlier strategies."""

    strategy: str
    indices: array  # type: ignore[type-arg]
    """Scan indices (files, symlinks and directories), each claimed by one strategy only."""


@dataclass(frozen=True)
class Plan:
    """The removals a shrink would make; executing it, or not, is the next stage's call."""

    scan: Scan
    selections: tuple[Selection, ...]
    kept: tuple[Kept, ...]

    def removed(self) -> bytearray:
        """A mask over the scan: 1 where the entry is removed."""
        mask = bytearray(len(self.scan))
        for selection in self.selections:
            for index in selection.indices:
                mask[index] = 1
        return mask

    def roots(self) -> list[int]:
        """The topmost removed entries; removing these removes exactly the plan."""
        mask = self.removed()
        parents = self.scan.parents
        return [i for i in range(len(mask)) if mask[i] and not mask[parents[i]]]


def plan(scan: Scan, strategies: Sequence[Strategy], keep: Iterable[str] = (),
         used: bytearray | None = None, released: Container[int] = (),
         last: Strategy | None = None) -> Plan:
    """Run ``strategies`` in order; an entry counts for the first one that claims it.

    Never removed: the prefix itself, ``conda-meta/``, installed ``*.dist-info`` and
    ``*.egg-info`` (versions and entry points live there; only a strategy that removes
    whole distributions may take theirs) except those in ``released``, environments
    nested in ``envs/``, whatever matches a ``keep`` glob (matched against the path
    relative to the prefix; a matched directory keeps its whole subtree), and the entries
    ``used`` marks (a used directory stays, its unused contents may go).

    ``last`` runs after the others and is bound by those rules only, not by what the
    other strategies spared with a :class:`Keep`: it knows what is used (``--used-by``).
    """
    protected = _protect(scan, list(keep), released)
    if used is not None:
        for index, flag in enumerate(used):
            if flag and index:
                if scan.kinds[index] == DIR:
                    _pin(scan, protected, index)
                else:
                    _mark(scan, protected, index)
    base = bytearray(protected)
    claimed = bytearray(len(scan))
    kept: list[Kept] = []
    selections = []
    for strategy in strategies:
        choices = list(strategy.select(scan))
        for choice in choices:
            if isinstance(choice, Keep) and not claimed[choice.index]:
                _mark(scan, protected, choice.index)
                kept.append(Kept(scan.paths[choice.index], choice.reason))
        indices = array("i")
        for choice in choices:
            if not isinstance(choice, Keep) and choice > 0:
                _claim_subtree(scan, choice, protected, claimed, indices,
                               strategy.removes_distributions)
        selections.append(Selection(strategy.name, indices))
    if last is not None:
        indices = array("i")
        for choice in last.select(scan):
            if not isinstance(choice, Keep) and choice > 0:
                _claim_subtree(scan, choice, base, claimed, indices)
        selections.append(Selection(last.name, indices))
        kept = [k for k in kept if not _claimed_path(scan, claimed, k.path)]
    return Plan(scan, tuple(selections), tuple(kept))


def protected_by(scan: Scan, keep: Sequence[str]) -> bytearray:
    """A mask over the scan: nonzero where a ``--keep`` glob protects the entry (or an
    entry below it, for the directories above)."""
    if not keep:
        return bytearray(len(scan))
    mask = bytearray(len(scan))
    pattern = re.compile("|".join(fnmatch.translate(g.strip("/")) for g in keep))
    for index in range(1, len(scan)):
        if pattern.match(scan.paths[index]):
            _mark(scan, mask, index)
    return mask


def _claimed_path(scan: Scan, claimed: bytearray, path: str) -> bool:
    index = scan.find(path)
    return index is not None and bool(claimed[index])


def _claim_subtree(
    scan: Scan, top: int, protected: bytearray, claimed: bytearray, out: array,  # type: ignore[type-arg]
    metadata_too: bool = False,
) -> None:
    index, end = top, scan.ends[top]
    while index < end:
        if protected[index] == 1 or (protected[index] == _METADATA and not metadata_too):
            index = scan.ends[index]
            continue
        if not claimed[index] and protected[index] != _PINNED:
            claimed[index] = 1
            out.append(index)
        index += 1


def _protect(scan: Scan, keep: list[str], released: Container[int] = ()) -> bytearray:
    """1 on protected entries and their subtrees, 2 on directories above them, 3 on
    installed distributions' metadata (but those in ``released``)."""
    protected = bytearray(len(scan))
    protected[0] = _PINNED
    pattern = re.compile("|".join(fnmatch.translate(g.strip("/")) for g in keep)) if keep else None
    paths, kinds = scan.paths, scan.kinds
    index, end = 1, len(paths)
    while index < end:
        path = paths[index]
        if path.endswith((".dist-info", ".egg-info")) and not path.startswith("pkgs/") \
                and index not in released and not (pattern is not None and pattern.match(path)):
            _mark(scan, protected, index, _METADATA)
        elif (
            path == "conda-meta"
            or (pattern is not None and pattern.match(path))
            or (kinds[index] == DIR and path.startswith("envs/") and path.count("/") == 1
                and scan.find(path + "/conda-meta") is not None)
        ):
            _mark(scan, protected, index)
            index = scan.ends[index]
            continue
        index += 1
    return protected


def _mark(scan: Scan, protected: bytearray, index: int, value: int = 1) -> None:
    if protected[index] == 1:
        return
    for i in range(index, scan.ends[index]):
        if protected[i] != 1:
            protected[i] = value
    parent = scan.parents[index]
    while parent >= 0 and protected[parent] != _PINNED:
        protected[parent] = _PINNED
        parent = scan.parents[parent]


def _pin(scan: Scan, protected: bytearray, index: int) -> None:
    """Keep a directory itself (and its ancestors), not its contents."""
    while index >= 0 and protected[index] == 0:
        protected[index] = _PINNED
        index = scan.parents[index]
