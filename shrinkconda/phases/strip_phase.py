"""The strip phase: predicted from ELF headers in an audit; in a shrink, stripped copies
are made beside the originals and the transaction swaps them in."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from shrinkconda.errors import StripToolMissing
from shrinkconda.phases import strip
from shrinkconda.phases.base import Outcome, Progress, changed
from shrinkconda.plan import protected_by
from shrinkconda.scan import Problem, Scan
from shrinkconda.targets.gpu import licences
from shrinkconda.transaction import journal
from shrinkconda.transaction.preflight import Need, blocks
from shrinkconda.units import counted

NAME = "strip"
"""The phase's name in the report; ``--only``/``--skip`` take it like a strategy."""


@dataclass(frozen=True)
class StripPhase:
    """Strip debug information (or more, by ``mode``) from the ELF files that stay."""

    mode: str
    """``debug``, ``unneeded``, ``all`` or ``dh`` (see :data:`strip.MODES`)."""
    jobs: int | None = None
    progress: Progress = None
    name: str = NAME
    keep: Sequence[str] = ()
    """``--keep`` globs: what they match stays exactly as it is, unstripped too."""

    def predict(self, scan: Scan, removed: bytearray, earlier: Sequence[Outcome]) -> Outcome:
        """What stripping what the removals leave would replace."""
        chosen, licensed = _allowed(scan, strip.candidates(scan, removed), earlier, self.keep)
        predicted, problems = strip.predict(scan, chosen.indices, self.mode, self.progress)
        try:
            strip.find_tool()
        except StripToolMissing as exc:
            problems.append(Problem("", str(exc)))
        return Outcome(NAME, replaced=predicted, problems=problems,
                       notes=_notes(scan, chosen, self.mode, licensed))

    def make(self, scan: Scan, removed: bytearray, earlier: Sequence[Outcome],
             txn: journal.Transaction) -> Outcome:
        """Stripped copies beside the originals, for the transaction to swap in."""
        chosen, licensed = _allowed(scan, strip.candidates(scan, removed), earlier, self.keep)
        notes = _notes(scan, chosen, self.mode, licensed)
        dirs = tuple(sorted({os.path.dirname(scan.paths[i]) for i in chosen.indices}))
        txn.prepare(dirs)
        try:
            made, problems = strip.make_stripped(scan, chosen.indices, self.mode, self.jobs,
                                                 temp_dir=str(txn.staging),
                                                 progress=self.progress)
        except StripToolMissing as exc:
            return Outcome(NAME, problems=[Problem("", str(exc))], notes=notes, temp_dirs=dirs)
        return Outcome(NAME, replaced=list(made), problems=problems, notes=notes,
                       temp_dirs=dirs)


    def room(self, scan: Scan, removed: bytearray) -> Need:
        """The stripped copies, at their predicted sizes, and one more: the objects
        patchelf edited are flagged as probably not strippable but tried, and such a
        copy is checked (and deleted) only once written (a 24 MiB OpenBLAS of numpy's
        wheel)."""
        chosen, _ = _allowed(scan, strip.candidates(scan, removed), (), self.keep)
        predicted, problems = strip.predict(scan, chosen.indices, self.mode)
        flagged = {p.path for p in problems}
        doubtful = max((blocks(scan.sizes[i]) for i in chosen.indices
                        if scan.paths[i] in flagged), default=0)
        paths = tuple(scan.paths[r.index] for r in predicted)
        return Need(NAME, "stripped copies", sum(blocks(r.size) for r in predicted) + doubtful,
                    len(predicted), "pass --no-strip",
                    dirs=tuple(sorted({os.path.dirname(p) for p in paths})), steps=paths)


def _allowed(scan: Scan, chosen: strip.Candidates, earlier: Sequence[Outcome],
             keep: Sequence[str]) -> tuple[strip.Candidates, int]:
    """The candidates strip may rewrite, and how many NVIDIA redistributables it may
    not: their licence forbids modifying them; one replacement per file, so what an
    earlier phase (``gpu-code``) replaces already is left to it; and nothing ``keep``
    protects."""
    taken = changed(earlier)
    if keep:
        protected = protected_by(scan, keep)
        taken |= {i for i in chosen.indices if protected[i] == 1}
    taken |= (nvidia := licences.Licences(scan).forbidden(chosen.indices))
    if not taken:
        return chosen, 0
    return replace(chosen, indices=tuple(i for i in chosen.indices if i not in taken)), \
        len(nvidia)


def _notes(scan: Scan, chosen: strip.Candidates, mode: str, licensed: int = 0
           ) -> tuple[str, ...]:
    linked = strip.strippable(scan, chosen.linked_inside, mode)
    notes: tuple[str, ...] = (strip.linked_inside_note(len(linked)),) if linked else ()
    if licensed:
        verb = "it is" if licensed == 1 else "they are"
        leaves = f"strip leaves {counted(licensed, 'NVIDIA redistributable')} as {verb}"
        notes += (f"{leaves}: {licences.NVIDIA_REASON}",)
    return notes
