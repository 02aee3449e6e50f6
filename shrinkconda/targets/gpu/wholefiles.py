"""Whole files only another GPU target loads: triton's Blackwell copies of ``ptxas`` and
CUPTI (used for sm_100 and above); and, for ``--target-gpu none``, every library a GPU
host loads on demand (the on-demand members of the GPU :mod:`families`: cuDNN's
sub-libraries, NVRTC's builtins, ``libtorch_cuda_linalg.so``, triton's NVIDIA tools),
while the libraries ``import`` loads stay. Deleting a file the image never loads is not
modifying it, so these go whoever's licence they carry.

triton's AMD backend stays: triton registers it as an entry point and imports its
modules at ``import triton``, whatever the GPU (3 MiB)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from shrinkconda.scan import Scan
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
            for found in ondemand.find(scan, families):
                yield from (index for index, on_demand in found.members if on_demand)

    return Strategy(NAME, "whole files only other GPUs than --target-gpu load (triton's "
                    "Blackwell ptxas and CUPTI; with none, every library a GPU host loads "
                    "on demand)", pick, default=False)
