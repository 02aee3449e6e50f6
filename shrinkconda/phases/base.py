"""The one shape of a phase that rewrites files: predicted from the scan by an audit, made
in the staging directory by a shrink, swapped in by the transaction, and accounted in the
report. Strip, dedup and bytecode each return an :class:`Outcome`; the pipeline runs them
as a list and never needs to know which is which."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Callable, Optional, Protocol

from shrinkconda.plan import Kept
from shrinkconda.scan import Problem, Scan
from shrinkconda.transaction import journal
from shrinkconda.transaction.preflight import Need

Progress = Optional[Callable[[int], None]]


@dataclass(frozen=True)
class Replacement:
    """A file's new version at the same path (stripped, recompiled): predicted, or
    written and waiting to be swapped in."""

    index: int
    """Scan index of the original."""
    size: int
    """Apparent size of the new file."""
    allocated: int
    """Bytes it takes on disk (predicted as whole 4 KiB blocks)."""
    temp: str = ""
    """Absolute path of the new file (in staging or beside the original); "" for a
    prediction."""


@dataclass(frozen=True)
class Link:
    """A path that becomes a hard link to another path's inode, or a symlink to it."""

    index: int
    """Scan index of the duplicate, whose own inode leaves the prefix."""
    target: int
    """Scan index of a path of the inode that stays."""
    temp: str = ""
    """Absolute path of the temporary link beside the duplicate; "" for a prediction."""
    size: int = 0
    """Apparent bytes of what takes the path's place: none for a hard link; for a
    symlink, the length of the path it holds."""


@dataclass(frozen=True)
class Added:
    """A path the prefix did not have: a file, or a directory holding new files."""

    path: str
    """Relative to the prefix."""
    size: int
    """Apparent bytes, everything below a directory included."""
    allocated: int
    temp: str = ""
    """Absolute path of what is renamed to ``path`` (in staging); "" for a prediction."""
    files: tuple[tuple[str, int, str], ...] = ()
    """The files it brings, ``(relative path, size, source)``: itself, or a directory's
    files; ``conda-meta`` lists each in the record that lists its ``source``."""


@dataclass(frozen=True)
class Outcome:
    """What one phase changes (or would), and what it has to say."""

    name: str
    """The phase's line in the report (``strip``, ``dedup``, ``python-code``)."""
    removed: tuple[int, ...] = ()
    """Scan indices the phase takes away (a directory: its subtree)."""
    replaced: Sequence[Replacement] = ()
    linked: Sequence[Link] = ()
    added: Sequence[Added] = ()
    problems: Sequence[Problem] = ()
    notes: tuple[str, ...] = ()
    kept: tuple[Kept, ...] = ()
    """What the phase left as it was, and why (``kept: PATH, REASON``)."""
    temp_dirs: tuple[str, ...] = ()
    """Directories (relative) where temporary files may lie, for crash recovery."""
    shown_when_empty: bool = True
    """Whether the report has its line when it changes nothing (``soname-copies``, which
    finds nothing in most envs, has none then)."""

    def changes(self) -> bool:
        """Whether it removes, replaces, links or adds anything."""
        return bool(self.removed or self.replaced or self.linked or self.added)

    def steps(self, scan: Scan) -> list[journal.Step]:
        """What the transaction stages for it: removals, then replacements, then adds."""
        name, paths, root = self.name, scan.paths, scan.prefix
        steps = [journal.Step(paths[i], f"{name}-r{n}") for n, i in enumerate(self.removed)]
        swapped: list[Replacement | Link] = [*self.replaced, *self.linked]
        steps += [journal.Step(paths[r.index], f"{name}-s{n}", os.path.relpath(r.temp, root))
                  for n, r in enumerate(swapped)]
        steps += [journal.Step(a.path, journal.ADDED, os.path.relpath(a.temp, root))
                  for a in self.added]
        return steps

    def without(self, failed: Collection[str], scan: Scan) -> Outcome:
        """The outcome minus what the transaction could not stage."""
        if not failed:
            return self
        paths = scan.paths
        return replace(
            self,
            removed=tuple(i for i in self.removed if paths[i] not in failed),
            replaced=[r for r in self.replaced if paths[r.index] not in failed],
            linked=[k for k in self.linked if paths[k.index] not in failed],
            added=[a for a in self.added if a.path not in failed])

    def undone(self) -> Outcome:
        """The outcome after a rollback: nothing changed, the same problems and notes."""
        return replace(self, removed=(), replaced=(), linked=(), added=())


def changed(earlier: Sequence[Outcome]) -> set[int]:
    """The scan indices that ``earlier`` phases replace or link: one change per path, so
    a later phase leaves them to the phase that took them."""
    return {r.index for outcome in earlier for r in outcome.replaced} | {
        k.index for outcome in earlier for k in outcome.linked}


class Phase(Protocol):
    """A phase: one name, a prediction and the making of the same changes."""

    @property
    def name(self) -> str:
        """Its line in the report."""

    def predict(self, scan: Scan, removed: bytearray, earlier: Sequence[Outcome]) -> Outcome:
        """What the phase would change among what ``removed`` (1 = gone) leaves, after
        the ``earlier`` phases' changes."""

    def make(self, scan: Scan, removed: bytearray, earlier: Sequence[Outcome],
             txn: journal.Transaction) -> Outcome:
        """The same changes, made in ``txn``'s staging, for the transaction to swap in."""

    def room(self, scan: Scan, removed: bytearray) -> Need | None:
        """The room :meth:`make` takes on the prefix's filesystem at most, estimated
        cheaply before anything is written (:mod:`preflight`)."""


def run_all(phases: Sequence[Phase], scan: Scan, removed: bytearray,
        txn: journal.Transaction | None = None) -> tuple[Outcome, ...]:
    """Each phase in turn, predicting (no ``txn``) or making; a later phase sees what
    the earlier ones remove as gone, and their outcomes."""
    removed = bytearray(removed)
    outcomes: list[Outcome] = []
    for phase in phases:
        outcome = (phase.predict(scan, removed, outcomes) if txn is None
                   else phase.make(scan, removed, outcomes, txn))
        for index in subtrees(scan, outcome.removed):
            removed[index] = 1
        outcomes.append(outcome)
    return tuple(outcomes)


def rooms(phases: Sequence[Phase], scan: Scan, removed: bytearray) -> list[Need]:
    """What each phase says it needs on the filesystem, before any writes."""
    return [need for phase in phases if (need := phase.room(scan, removed)) is not None]


def removed_by(outcomes: Sequence[Outcome], scan: Scan, removed: bytearray) -> bytearray:
    """``removed`` plus what the phases take away."""
    mask = bytearray(removed)
    for outcome in outcomes:
        for index in subtrees(scan, outcome.removed):
            mask[index] = 1
    return mask


def subtrees(scan: Scan, tops: Sequence[int]) -> list[int]:
    """The scan indices of ``tops`` and everything below them."""
    return [i for top in tops for i in range(top, scan.ends[top])]
