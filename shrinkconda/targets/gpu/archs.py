"""The GPU architectures ``--target-gpu`` takes (``sm_90``, ``sm_80,sm_90``, ``none``,
``native``), and which device code each can run."""

from __future__ import annotations

import glob
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from shrinkconda.errors import ShrinkError

KNOWN = (50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 88, 89, 90, 100, 101, 103, 107, 110,
         120, 121)
"""SM architectures of CUDA 11 to 13, as numbers (``sm_90`` is 90)."""
NONE = "none"
"""``--target-gpu none``: the image runs on CPUs only."""
NATIVE = "native"
"""``--target-gpu native``: the GPUs of the machine shrinkconda runs on."""


class GpuTargetError(ShrinkError):
    """``--target-gpu native`` on a machine without a GPU, or its GPUs cannot be read."""


class UnknownGpuArchError(GpuTargetError):
    """``--target-gpu`` named an architecture that does not exist: a usage error."""


@dataclass(frozen=True)
class GpuTarget:
    """The GPUs a shrunk prefix must run on (none: CPUs only)."""

    archs: tuple[int, ...]
    """SM architectures, ascending; ``()`` for ``none``."""
    asked: str
    """What the user typed."""

    @property
    def none(self) -> bool:
        """No GPU at all."""
        return not self.archs

    def describe(self) -> str:
        """``sm_80,sm_90``, ``none``, or ``native (sm_90)``."""
        names = ",".join(f"sm_{a}" for a in self.archs) or NONE
        return f"{NATIVE} ({names})" if self.asked == NATIVE else names

    def runs_cubin(self, arch: int) -> bool:
        """Whether a cubin for ``arch`` runs on a target GPU: same major version, minor
        not above the GPU's (an ``sm_80`` cubin runs on ``sm_86``)."""
        return any(arch // 10 == t // 10 and arch <= t for t in self.archs)

    def ptx_for(self, archs: Iterable[int]) -> set[int]:
        """Of the PTX architectures ``archs``, those a target GPU would compile: for each
        target, the highest not above it."""
        have = sorted(set(archs))
        return {max(lower) for t in self.archs if (lower := [a for a in have if a <= t])}


def choices() -> str:
    """What ``--target-gpu`` accepts, for messages."""
    return ", ".join([*(f"sm_{a}" for a in KNOWN), NONE, NATIVE])


def target(asked: str | None) -> GpuTarget | None:
    """The target for ``--target-gpu asked`` (``None``: no target). ``native`` asks this
    machine's driver, so this runs before anything changes."""
    if asked is None:
        return None
    text = asked.strip().lower()
    if text == NONE:
        return GpuTarget((), NONE)
    if text == NATIVE:
        return GpuTarget(native(), NATIVE)
    archs = set()
    for part in text.split(","):
        name = part.strip()
        number = name[3:] if name.startswith("sm_") else ""
        if not number.isdigit() or int(number) not in KNOWN:
            raise UnknownGpuArchError(
                f"unknown GPU architecture {name!r}; --target-gpu takes a comma-separated "
                f"list of: {choices()}")
        archs.add(int(number))
    return GpuTarget(tuple(sorted(archs)), asked)


def native() -> tuple[int, ...]:
    """The SM architectures of this machine's GPUs, from ``nvidia-smi``."""
    smi = shutil.which("nvidia-smi")
    if not glob.glob("/dev/nvidia[0-9]*") or smi is None:
        raise GpuTargetError("--target-gpu native: this machine has no NVIDIA GPU (no "
                             "/dev/nvidia* device or no nvidia-smi); name the target's "
                             "architecture instead, e.g. --target-gpu sm_90")
    done = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
                          capture_output=True, text=True, check=False, timeout=60)
    found = set()
    for line in done.stdout.split():
        major, _, minor = line.strip().partition(".")
        if major.isdigit() and minor.isdigit():
            found.add(int(major) * 10 + int(minor))
    if done.returncode != 0 or not found:
        raise GpuTargetError(f"--target-gpu native: nvidia-smi gave no compute capability "
                             f"({done.stderr.strip() or 'no output'}); name the target's "
                             "architecture instead, e.g. --target-gpu sm_90")
    return tuple(sorted(found))
