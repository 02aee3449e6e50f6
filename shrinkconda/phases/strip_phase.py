"""The strip phase: predicted from ELF headers in an audit; in a shrink, stripped copies
are made beside the originals and the transaction swaps them in."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from shrinkconda import transaction
from shrinkconda.accounting import Ledger, Saving
from shrinkconda.errors import StripToolMissing
from shrinkconda.phases import strip
from shrinkconda.scan import Problem, Progress, Scan

NAME = "strip"
"""The phase's name in the report; ``--only``/``--skip`` take it like a strategy."""


@dataclass(frozen=True)
class StripPhase:
    """What the strip phase replaces (or would), and what it has to say."""

    replaced: Sequence[strip.Replacement]
    problems: list[Problem]
    notes: tuple[str, ...]
    temp_dirs: tuple[str, ...] = ()
    """Directories (relative) where stripped copies may lie, for crash recovery."""

    def with_replaced(self, replaced: Sequence[strip.Replacement]) -> StripPhase:
        return StripPhase(replaced, self.problems, self.notes, self.temp_dirs)


def predict(scan_: Scan, removed: bytearray, mode: str | None,
            progress: Progress = None) -> StripPhase | None:
    """What stripping what the removals leave would replace; ``None`` if ``mode`` is."""
    if mode is None:
        return None
    chosen = strip.candidates(scan_, removed)
    predicted, problems = strip.predict(scan_, chosen.indices, mode, progress)
    try:
        strip.find_tool()
    except StripToolMissing as exc:
        problems.append(Problem("", str(exc)))
    return StripPhase(predicted, problems, _notes(scan_, chosen, mode))


def make(scan_: Scan, removed: bytearray, mode: str | None, jobs: int | None,
         progress: Progress, txn: transaction.Transaction
         ) -> tuple[list[strip.Replacement], StripPhase]:
    """Stripped copies, made in ``txn``'s staging, of what the removals leave (none if
    ``mode`` is ``None``), and the phase whose ``replaced`` the caller fills in once the
    transaction has staged them."""
    if mode is None:
        return [], StripPhase((), [], ())
    chosen = strip.candidates(scan_, removed)
    notes = _notes(scan_, chosen, mode)
    dirs = tuple(sorted({os.path.dirname(scan_.paths[i]) for i in chosen.indices}))
    txn.prepare(dirs)
    try:
        made, problems = strip.make_stripped(scan_, chosen.indices, mode, jobs,
                                             temp_dir=str(txn.staging), progress=progress)
    except StripToolMissing as exc:
        return [], StripPhase((), [Problem("", str(exc))], notes, dirs)
    return list(made), StripPhase((), problems, notes, dirs)


def saving(ledger: Ledger, replaced: Sequence[strip.Replacement]) -> Saving:
    """What the stripped copies free, replacing their originals in ``ledger``."""
    total = Saving(files=len(replaced))
    for item in replaced:
        total += ledger.replace(item.index, item.size, item.allocated)
    return total


def _notes(scan_: Scan, chosen: strip.Candidates, mode: str) -> tuple[str, ...]:
    linked = strip.strippable(scan_, chosen.linked_inside, mode)
    return (strip.linked_inside_note(len(linked)),) if linked else ()
