"""The dedup phase: duplicates found among what survives the removals and the strip; in
a shrink, a temporary link to the kept inode is made beside each duplicate and the
transaction swaps it in (:mod:`dedup` says which files may take part)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shrinkconda import transaction
from shrinkconda.phases import dedup
from shrinkconda.phases.strip import Replacement
from shrinkconda.scan import Problem, Scan

NAME = dedup.NAME
"""The phase's name: a strategy for ``--only``/``--skip`` and profiles."""

_NO_VIEWS = ("dedup linked nothing: without --conda-pack-views every package whose "
             "record the shrink changes is packed by conda-pack \"uncached\", and it cannot "
             "pack hard links between such files (README, \"Identical files become one "
             "inode\")")


@dataclass(frozen=True)
class DedupPhase:
    """The links the dedup phase makes (or would), and what it has to say."""

    links: Sequence[dedup.Link]
    problems: list[Problem]
    temp_dirs: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def without(self, paths: set[str], scan_: Scan) -> DedupPhase:
        """The phase minus the links at ``paths`` (those the transaction could not stage)."""
        kept = [k for k in self.links if scan_.paths[k.index] not in paths]
        return DedupPhase(kept, self.problems, self.temp_dirs, self.notes)

    def undone(self) -> DedupPhase:
        """The phase after a rollback: no links, the same problems and notes."""
        return DedupPhase([], self.problems, notes=self.notes)


def predict(scan_: Scan, removed: bytearray, replaced: Sequence[Replacement],
            views: bool) -> DedupPhase:
    """The links a shrink would make among what ``removed`` and ``replaced`` leave; none
    without conda-pack ``views``."""
    if not views:
        return DedupPhase([], [], notes=(_NO_VIEWS,))
    return DedupPhase(*dedup.find(scan_, removed, {r.index for r in replaced}))


def make(scan_: Scan, removed: bytearray, made: Sequence[Replacement],
         txn: transaction.Transaction, strip_dirs: tuple[str, ...], views: bool) -> DedupPhase:
    """The temporary links, made in ``txn``'s staging, that the transaction swaps in."""
    if not views:
        return DedupPhase([], [], notes=(_NO_VIEWS,))
    found, problems = dedup.find(scan_, removed, {m.index for m in made})
    dirs = dedup.directories(scan_, found)
    txn.prepare(strip_dirs + dirs)
    links, failed = dedup.make_links(scan_, found, str(txn.staging))
    return DedupPhase(links, problems + failed, dirs)
