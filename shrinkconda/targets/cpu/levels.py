"""The x86-64 microarchitecture levels ``--target-cpu`` takes, and this machine's level."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shrinkconda.errors import ShrinkError

LEVELS = ("x86_64", "x86_64_v2", "x86_64_v3", "x86_64_v4")
"""The levels conda's ``__archspec`` and archspec name, lowest first."""
NATIVE = "native"
"""``--target-cpu native``: the level of the CPU shrinkconda runs on."""
CHOICES = (*LEVELS, NATIVE)
"""What ``--target-cpu`` accepts."""
ABOVE_V4 = "avx10"
"""An ISA tier above every level: kernels for it (``libmkl_avx10``) no target asks for."""
TIERS = (*LEVELS, ABOVE_V4)
"""The tiers a dispatched kernel can be for, lowest first."""

CPUINFO = Path("/proc/cpuinfo")
"""Where :func:`native` reads the CPU flags (Linux's names for them)."""

#: The flags each level adds to the one below, as Linux spells them (``pni`` is SSE3,
#: ``abm`` is LZCNT); from the x86-64 psABI's level definitions, as glibc checks them.
_ADDS = {
    "x86_64_v2": ("cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"),
    "x86_64_v3": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"),
    "x86_64_v4": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
}


class CpuLevelError(ShrinkError):
    """The target CPU level is unknown, or this machine's level cannot be read."""


class UnknownCpuLevelError(CpuLevelError):
    """``--target-cpu`` named a level that does not exist: a usage error."""


@dataclass(frozen=True)
class Target:
    """The CPUs a shrunk prefix must run on: this level and every one above it."""

    level: str
    """One of :data:`LEVELS`."""
    asked: str
    """What the user typed: the level, or ``native``."""

    def describe(self) -> str:
        """``x86_64_v3``, or ``native (x86_64_v4, read from /proc/cpuinfo)``."""
        if self.asked == NATIVE:
            return f"{NATIVE} ({self.level}, read from {CPUINFO})"
        return self.level


def rank(tier: str) -> int:
    """A tier's position in :data:`TIERS` (higher needs a newer CPU)."""
    return TIERS.index(tier)


def target(asked: str | None) -> Target | None:
    """The target for ``--target-cpu asked`` (``None``: no target); ``native`` reads
    this machine's CPU flags, so this is called before anything changes."""
    if asked is None:
        return None
    if asked == NATIVE:
        return Target(native(), NATIVE)
    if asked not in LEVELS:
        raise UnknownCpuLevelError(
            f"unknown CPU level {asked!r}; --target-cpu takes: {', '.join(CHOICES)}")
    return Target(asked, asked)


def native(cpuinfo: Path | None = None) -> str:
    """This machine's x86-64 level, from the first ``flags`` line of ``/proc/cpuinfo``."""
    path = cpuinfo or CPUINFO
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise CpuLevelError(f"--target-cpu native: cannot read {path} ({exc.strerror}); "
                            f"name a level instead: {', '.join(LEVELS)}") from None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return level_of(value.split())
    raise CpuLevelError(f"--target-cpu native: {path} lists no CPU flags (not an x86-64 "
                        f"Linux machine?); name a level instead: {', '.join(LEVELS)}")


def level_of(flags: Iterable[str]) -> str:
    """The highest level whose flags (and those of the levels below) are all present."""
    have = set(flags)
    if "lm" not in have:
        raise CpuLevelError("--target-cpu native: this CPU is not 64-bit x86 (no 'lm' flag); "
                            f"name a level instead: {', '.join(LEVELS)}")
    found = LEVELS[0]
    for level in LEVELS[1:]:
        if not set(_ADDS[level]) <= have:
            break
        found = level
    return found
