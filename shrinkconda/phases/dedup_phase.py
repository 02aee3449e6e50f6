"""The dedup phase: duplicates found among what survives the removals and the strip; in
a shrink, a temporary link to the kept inode is made beside each duplicate and the
transaction swaps it in (:mod:`dedup` says which files may take part)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shrinkconda.phases import dedup
from shrinkconda.phases.base import Outcome, changed
from shrinkconda.scan import Scan
from shrinkconda.transaction import journal

NAME = dedup.NAME
"""The phase's name: a strategy for ``--only``/``--skip`` and profiles."""

_NO_VIEWS = ("dedup linked nothing: without --conda-pack-views every package whose "
             "record the shrink changes is packed by conda-pack \"uncached\", and it cannot "
             "pack hard links between such files (docs/dedup.md, \"Identical files "
             "become one inode\")")


@dataclass(frozen=True)
class DedupPhase:
    """Identical files become hard links of one inode (only with conda-pack views)."""

    views: bool
    """``--conda-pack-views``: without them dedup links nothing."""
    name: str = NAME

    def predict(self, scan: Scan, removed: bytearray, earlier: Sequence[Outcome]) -> Outcome:
        """The links a shrink would make among what the removals and earlier phases leave."""
        if not self.views:
            return Outcome(NAME, notes=(_NO_VIEWS,))
        links, problems = dedup.find(scan, removed, changed(earlier))
        return Outcome(NAME, linked=links, problems=problems)

    def make(self, scan: Scan, removed: bytearray, earlier: Sequence[Outcome],
             txn: journal.Transaction) -> Outcome:
        """The temporary links, made beside the duplicates, that the transaction swaps in."""
        if not self.views:
            return Outcome(NAME, notes=(_NO_VIEWS,))
        found, problems = dedup.find(scan, removed, changed(earlier))
        dirs = dedup.directories(scan, found)
        txn.prepare(tuple(d for outcome in earlier for d in outcome.temp_dirs) + dirs)
        links, failed = dedup.make_links(scan, found, str(txn.staging))
        return Outcome(NAME, linked=links, problems=problems + failed, temp_dirs=dirs)


    def room(self, scan: Scan, removed: bytearray) -> None:
        """Nothing worth counting: a link takes a directory entry, not a block."""
        del scan, removed
