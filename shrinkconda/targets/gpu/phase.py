"""The ``gpu-code`` phase: the device code of every library, per architecture, in the
report; with ``--target-gpu``, rewritten copies of the open-source libraries without
what the target never runs, swapped in by the transaction."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from shrinkconda.errors import ElfError
from shrinkconda.phases import elf, strip
from shrinkconda.phases.base import Outcome, Progress, Replacement
from shrinkconda.plan import Kept
from shrinkconda.scan import Problem, Scan
from shrinkconda.targets.gpu import fatbin, licences, rewrite
from shrinkconda.targets.gpu.archs import GpuTarget
from shrinkconda.transaction import journal
from shrinkconda.transaction.preflight import Need, blocks
from shrinkconda.units import counted, human

NAME = "gpu-code"
"""The phase's line in the report."""
_TOP_LIBRARIES = 8


@dataclass(frozen=True)
class Library:
    """One file with device code."""

    index: int
    fat: fatbin.Fatbin
    verdict: licences.Verdict


@dataclass(frozen=True)
class GpuPhase:
    """Remove the device code ``target`` never runs from the libraries that may be
    rewritten; report what every library holds."""

    target: GpuTarget
    ptx: bool = True
    """Keep the PTX the target would compile (forward compatibility)."""
    progress: Progress = None
    name: str = NAME

    def predict(self, scan: Scan, removed: bytearray, earlier: Sequence[Outcome]) -> Outcome:
        """The rewrites' sizes, worked out from the headers; nothing is written."""
        libraries, problems = find(scan, removed)
        replaced: list[Replacement] = []
        for lib in libraries:
            if not lib.verdict.rewrite:
                continue
            try:
                ready = rewrite.prepare(str(scan.prefix / scan.paths[lib.index]), self.target,
                                        self.ptx)
            except rewrite.NothingToFree:
                continue
            except (rewrite.RewriteUnsupported, fatbin.FatbinError, ElfError) as exc:
                problems.append(Problem(scan.paths[lib.index], f"left whole: {exc}"))
                continue
            replaced.append(Replacement(lib.index, ready.after, blocks(ready.after)))
        return self._outcome(scan, libraries, replaced, problems)

    def make(self, scan: Scan, removed: bytearray, earlier: Sequence[Outcome],
             txn: journal.Transaction) -> Outcome:
        """Rewritten copies in ``txn``'s staging, each read back before it is offered."""
        libraries, problems = find(scan, removed)
        out_dir = txn.staging / NAME
        replaced: list[Replacement] = []
        for lib in libraries:
            if not lib.verdict.rewrite:
                continue
            path = scan.paths[lib.index]
            out_dir.mkdir(parents=True, exist_ok=True)
            temp = str(out_dir / f"r{len(replaced)}")
            try:
                done = rewrite.rewrite(str(scan.prefix / path), temp, self.target, self.ptx)
                wrong = _read_back(temp, done)
            except rewrite.NothingToFree:
                continue
            except (rewrite.RewriteUnsupported, fatbin.FatbinError, ElfError) as exc:
                wrong = [str(exc)]
            if wrong:
                if os.path.exists(temp):
                    os.unlink(temp)
                problems.append(Problem(path, f"left whole: {'; '.join(wrong)}"))
                continue
            replaced.append(Replacement(lib.index, done.after, blocks(done.after), temp))
            if self.progress:
                self.progress(1)
        return self._outcome(scan, libraries, replaced, problems)

    def room(self, scan: Scan, removed: bytearray) -> Need:
        """The rewritten copies: at most the originals' sizes."""
        libraries, _ = find(scan, removed)
        chosen = [lib for lib in libraries if lib.verdict.rewrite]
        paths = tuple(scan.paths[lib.index] for lib in chosen)
        return Need(NAME, "rewritten GPU libraries",
                    sum(blocks(scan.sizes[lib.index]) for lib in chosen), len(chosen),
                    "leave out --target-gpu", steps=paths)

    def _outcome(self, scan: Scan, libraries: Sequence[Library],
                 replaced: list[Replacement], problems: list[Problem]) -> Outcome:
        kept = []
        for lib in libraries:
            if lib.verdict.rewrite:
                continue
            other = lib.fat.size - _kept_bytes(lib.fat, self.target, self.ptx)
            kept.append(Kept(scan.paths[lib.index],
                             f"{lib.verdict.reason}; holds {human(other)} of device code "
                             f"for other GPUs than {self.target.describe()}"))
        missing = [scan.paths[lib.index] for lib in libraries
                   if not self.target.none and not _runs_any(lib.fat, self.target)]
        warnings = tuple(f"{path} holds no device code {self.target.describe()} runs: its "
                         "kernels fail there ('no kernel image is available')"
                         for path in missing)
        return Outcome(NAME, replaced=replaced, problems=problems, kept=tuple(kept),
                       notes=notes(scan, libraries, replaced, self.target) + warnings)


def find(scan: Scan, removed: bytearray) -> tuple[list[Library], list[Problem]]:
    """Every ELF file that stays and holds device code, with its licence verdict."""
    chosen = strip.candidates(scan, removed)
    licensing = licences.Licences(scan)
    libraries, problems = [], []
    for index in (*chosen.indices, *chosen.linked_inside):
        if scan.sizes[index] < 4096:
            continue
        path = scan.prefix / scan.paths[index]
        try:
            info = elf.read(path)
            if fatbin.section(info) is None:
                continue
            fat = fatbin.read_file(path, info)
        except (fatbin.FatbinError, ElfError) as exc:
            problems.append(Problem(scan.paths[index], f"left whole: {exc}"))
            continue
        except OSError as exc:
            problems.append(Problem(scan.paths[index], f"unreadable: {exc.strerror}"))
            continue
        if fat is not None and fat.containers:
            verdict = licensing.verdict(index)
            if index in chosen.linked_inside and verdict.rewrite:
                verdict = licences.Verdict(False, "hard-linked elsewhere in the prefix")
            libraries.append(Library(index, fat, verdict))
    return libraries, problems


def notes(scan: Scan, libraries: Sequence[Library], replaced: Sequence[Replacement],
          target: GpuTarget) -> tuple[str, ...]:
    """The device code per architecture, the largest libraries, and what the target frees."""
    if not libraries:
        return (f"--target-gpu {target.describe()}: no file in the env holds device code",)
    per_arch: dict[str, int] = defaultdict(int)
    for lib in libraries:
        for label, size in lib.fat.by_arch().items():
            per_arch[label] += size
    total = sum(per_arch.values())
    lines = [f"device code: {human(total)} in {counted(len(libraries), 'file')}: "
             + ", ".join(f"{label} {human(size)}" for label, size in
                         sorted(per_arch.items(), key=_arch_order))]
    for lib in sorted(libraries, key=lambda lib: -lib.fat.size)[:_TOP_LIBRARIES]:
        arches = ", ".join(f"{label} {human(size)}" for label, size in
                           sorted(lib.fat.by_arch().items(), key=_arch_order))
        lines.append(f"device code: {scan.paths[lib.index]}: {human(lib.fat.size)} ({arches})")
    freed = sum(scan.sizes[r.index] - r.size for r in replaced)
    lines.append(f"--target-gpu {target.describe()}: {human(freed)} of device code for other "
                 f"GPUs leaves {counted(len(replaced), 'file')}")
    return tuple(lines)


def _arch_order(item: tuple[str, int]) -> tuple[int, str]:
    arch, _, kind = item[0].partition(" ")
    return int(arch.removeprefix("sm_")), kind


def _runs_any(fat: fatbin.Fatbin, target: GpuTarget) -> bool:
    """Whether any entry is a cubin the target runs or PTX it can compile."""
    return any(target.runs_cubin(e.arch) if not e.is_ptx else target.ptx_for([e.arch])
               for e in fat.entries())


def _kept_bytes(fat: fatbin.Fatbin, target: GpuTarget, ptx: bool) -> int:
    return sum(e.size for e in rewrite.choose(fat, target, ptx).entries())


def _read_back(temp: str, done: rewrite.Rewritten) -> list[str]:
    """What the rewritten file gets wrong: its entries must be the kept ones, and every
    wrapper must land on a container."""
    found = fatbin.read_file(temp)
    labels = [e.label for e in found.entries()] if found else []
    wrong = rewrite.check(temp)
    if labels != [e.label for e in done.kept]:
        wrong.append("the rewritten fatbin does not list the kept entries")
    return wrong
