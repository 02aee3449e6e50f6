"""Whole files only another GPU target loads: triton's Blackwell copies of ``ptxas`` and
CUPTI (used for sm_100 and above); and, for ``--target-gpu none``, every library a GPU
host loads on demand (the on-demand members of the GPU :mod:`families`: cuDNN's
sub-libraries, NVRTC's builtins, ``libtorch_cuda_linalg.so``, triton's NVIDIA tools),
while the libraries ``import`` loads stay. Deleting a file the image never loads is not
modifying it, so these go whoever's licence they carry.

triton's AMD backend stays: triton registers it as an entry point and imports its
modules at ``import triton``, whatever the GPU (3 MiB)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from shrinkconda.errors import ElfError
from shrinkconda.phases import elf
from shrinkconda.scan import MAGIC_ELF, Scan
from shrinkconda.strategies.base import Strategy
from shrinkconda.targets.gpu import ondemand
from shrinkconda.targets.gpu.archs import GpuTarget
from shrinkconda.targets.gpu.families import Family

NAME = "gpu-target"
"""The strategy's line in the report."""


@dataclass(frozen=True)
class WholeFile:
    """A path in site-packages, and when no target GPU loads it."""

    path: str
    """Relative to site-packages; a directory goes with everything below it."""
    unused: Callable[[GpuTarget], bool]
    """Whether no GPU of the target loads it."""
    why: str


def _below_blackwell(target: GpuTarget) -> bool:
    return all(arch < 100 for arch in target.archs)


#: triton 3.x: ``backends/nvidia/compiler.py`` runs ``ptxas-blackwell`` for arch >= 100
#: (plain ``ptxas`` otherwise, and for its version check); the profiler loads
#: ``cupti-blackwell`` for arch >= 100.
BUILTIN = (
    WholeFile("triton/backends/nvidia/bin/ptxas-blackwell", _below_blackwell,
              "triton runs it for sm_100 and above"),
    WholeFile("triton/backends/nvidia/lib/cupti-blackwell", _below_blackwell,
              "triton's profiler loads it for sm_100 and above"),
)


def strategy(target: GpuTarget, known: tuple[WholeFile, ...] = BUILTIN,
             families: Sequence[Family] = ()) -> Strategy:
    """Removes the files of ``known`` that no GPU of ``target`` loads; for ``none``, the
    on-demand members of ``families`` too."""
    wanted = [w for w in known if w.unused(target)]

    def pick(scan: Scan) -> Iterator[int]:
        for index, path in enumerate(scan.paths):
            _, sep, rest = path.partition("/site-packages/")
            if sep and any(rest == w.path for w in wanted):
                yield index
        if target.none:  # no GPU ever asks for them; what import loads is not on demand
            yield from _not_needed(scan, [index for found in ondemand.find(scan, families)
                                          for index, on_demand in found.members if on_demand])

    return Strategy(NAME, "whole files only other GPUs than --target-gpu load (triton's "
                    "Blackwell ptxas and CUPTI; with none, every library a GPU host loads "
                    "on demand)", pick, default=False)


def _not_needed(scan: Scan, candidates: Sequence[int]) -> list[int]:
    """Of the on-demand ``candidates``, those no staying ELF object names in its
    ``DT_NEEDED``: the family data says what a GPU loads on demand, the loader says what
    ``import`` loads (torch's ``libtorch_cuda.so`` NEEDs ``libtorch_nvshmem.so`` and
    NVRTC), and the loader wins. A kept candidate's own NEEDED are kept in turn; so is
    the file a kept symlink resolves to."""
    going = set(candidates)
    by_name: dict[str, list[int]] = {}
    for index in going:
        by_name.setdefault(scan.name(index), []).append(index)
    real = {index: os.path.realpath(scan.prefix / scan.paths[index]) for index in going}
    needs: dict[int, tuple[str, ...]] = {}
    for index in range(len(scan)):
        if scan.magic[index] == MAGIC_ELF:
            full = os.fspath(scan.prefix / scan.paths[index])
            try:
                needs[index] = elf.needed(full, elf.read(full))
            except (ElfError, OSError):
                needs[index] = ()  # unreadable: it names nothing we can honour
    todo = [i for i in needs if i not in going]
    while todo:
        for name in needs.get(todo.pop(), ()):
            for hit in by_name.get(name, ()):
                if hit in going:
                    kept = {i for i in going if real[i] == real[hit]}
                    going -= kept
                    todo.extend(kept)
    return sorted(going)
