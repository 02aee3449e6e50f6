"""The fatbin parser and the ``--target-gpu`` grammar, against real device code from
``nvcc`` listed by ``cuobjdump``."""

from __future__ import annotations

import glob
import shutil
from pathlib import Path

import pytest

from fixtures import cuda
from shrinkconda.phases import elf
from shrinkconda.targets.gpu import archs, fatbin
from shrinkconda.targets.gpu.archs import GpuTarget


@pytest.fixture(scope="module")
def multi() -> Path:
    """Three translation units, cubins for sm_75/80/90 and sm_90 PTX."""
    return cuda.build_library("big")


@pytest.fixture(scope="module")
def rdc() -> Path:
    """Separate compilation (``-rdc``): device-linked code in ``.nv_fatbin``."""
    return cuda.build_library("bigrdc", gencodes=cuda.GENCODES[1:], rdc=True)


def _labels(path: Path) -> list[str]:
    found = fatbin.read_file(path)
    assert found is not None
    return [e.label for e in found.entries()]


@pytest.mark.parametrize("name", ["multi", "rdc"])
def test_entries_are_those_cuobjdump_lists(name: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(name)
    assert _labels(path) == cuda.cuobjdump_list(path)


def test_sizes_add_up_to_the_section(multi: Path) -> None:
    info = elf.read(multi)
    found = fatbin.read_file(multi, info)
    section = fatbin.section(info)
    assert found is not None and section is not None
    assert len(found.containers) >= len(cuda.SOURCES)  # one per translation unit, at least
    last = found.containers[-1]
    assert last.offset + last.size == section.size
    assert sum(found.by_arch().values()) == sum(c.size - c.header_size for c in found.containers)
    assert set(found.by_arch()) == {"sm_75 cubin", "sm_80 cubin", "sm_90 cubin", "sm_90 PTX"}
    assert any(e.is_ptx and e.compressed for e in found.entries())


def test_a_file_without_device_code_has_no_fatbin() -> None:
    assert fatbin.read_file(Path("/bin/sh").resolve()) is None


@pytest.mark.parametrize("cut", [8, 40, 200, -5])
def test_a_truncated_section_is_an_error(multi: Path, cut: int) -> None:
    info = elf.read(multi)
    section = fatbin.section(info)
    assert section is not None
    with open(multi, "rb") as f:
        f.seek(section.offset)
        data = f.read(section.size)
    with pytest.raises(fatbin.FatbinError):
        fatbin.parse_bytes(data[:cut])


def test_bytes_that_are_not_a_container_are_an_error(multi: Path) -> None:
    with pytest.raises(fatbin.FatbinError, match="no fatbin container"):
        fatbin.parse_bytes(b"\x7fELF" + bytes(60))


@pytest.mark.parametrize(("asked", "expected"), [
    ("sm_90", (90,)), ("sm_90,sm_80", (80, 90)), (" SM_86 ", (86,)), ("none", ())])
def test_the_target_grammar(asked: str, expected: tuple[int, ...]) -> None:
    found = archs.target(asked)
    assert found is not None and found.archs == expected


@pytest.mark.parametrize("asked", ["sm_91", "90", "sm_90,", "compute_90", "volta"])
def test_an_unknown_architecture_lists_the_known_ones(asked: str) -> None:
    with pytest.raises(archs.UnknownGpuArchError, match="sm_75, sm_80.*none, native"):
        archs.target(asked)


@pytest.mark.skipif(bool(glob.glob("/dev/nvidia[0-9]*")) and bool(shutil.which("nvidia-smi")),
                    reason="this machine has a GPU")
def test_native_without_a_gpu_is_an_error() -> None:
    with pytest.raises(archs.GpuTargetError, match="no NVIDIA GPU"):
        archs.target("native")


def test_which_code_a_gpu_runs() -> None:
    ampere = GpuTarget((86,), "sm_86")
    assert ampere.runs_cubin(80) and ampere.runs_cubin(86)
    assert not ampere.runs_cubin(75) and not ampere.runs_cubin(89) and not ampere.runs_cubin(90)
    assert ampere.ptx_for([75, 80, 90]) == {80}
    assert GpuTarget((80, 90), "").ptx_for([75, 90]) == {75, 90}
    assert GpuTarget((), "none").ptx_for([75, 90]) == set()
