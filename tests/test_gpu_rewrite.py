"""The compacting rewrite of real ``nvcc`` libraries: ``cuobjdump`` lists only what the
target keeps, the file shrinks, and the library still loads and runs its host code."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures import cuda
from shrinkconda.phases import elf
from shrinkconda.targets.gpu import archs, fatbin, rewrite

SOURCES, HOST_CALLS = cuda.SOURCES, cuda.HOST_CALLS


@pytest.fixture(scope="module")
def big() -> Path:
    """Three translation units for sm_75/80/90 with sm_90 PTX, room for a header."""
    return cuda.build_library("big", SOURCES)


@pytest.fixture(scope="module")
def rdc() -> Path:
    return cuda.build_library("bigrdc", SOURCES, gencodes=cuda.GENCODES[1:], rdc=True)


@pytest.fixture(scope="module")
def tight() -> Path:
    """The same library straight from the linker: no room for another program header."""
    return cuda.build_library("tight", SOURCES, room=False)


def _run_host_code(path: Path) -> str:
    done = subprocess.run([sys.executable, "-c", HOST_CALLS, str(path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize(("asked", "ptx", "expected"), [
    ("sm_90", True, {"sm_90 cubin", "sm_90 PTX"}),
    ("sm_90", False, {"sm_90 cubin"}),
    ("sm_86", True, {"sm_80 cubin"}),
    ("sm_75,sm_90", False, {"sm_75 cubin", "sm_90 cubin"}),
])
def test_only_the_targets_code_stays_and_the_library_still_runs(
        big: Path, tmp_path: Path, asked: str, ptx: bool, expected: set[str]) -> None:
    target = archs.target(asked)
    assert target is not None
    out = tmp_path / big.name
    done = rewrite.rewrite(str(big), str(out), target, ptx)
    listed = cuda.cuobjdump_list(out)
    assert set(listed) == expected
    assert [e.label for e in fatbin.read_file(out).entries()] == listed  # type: ignore[union-attr]
    assert len(listed) == len(done.kept)
    assert done.after == out.stat().st_size < big.stat().st_size == done.before
    assert (done.before - done.after) % 4096 == 0
    assert rewrite.check(str(out)) == []
    assert _run_host_code(out) == _run_host_code(big) == ["1", "3"]


def test_a_rewritten_library_has_nothing_more_to_free(big: Path, tmp_path: Path) -> None:
    target = archs.target("sm_90")
    assert target is not None
    once = tmp_path / "once.so"
    rewrite.rewrite(str(big), str(once), target)
    with pytest.raises(rewrite.NothingToFree):
        rewrite.rewrite(str(once), str(tmp_path / "twice.so"), target)
    assert not (tmp_path / "twice.so").exists()


def test_what_follows_the_fatbin_keeps_its_address_and_bytes(big: Path, tmp_path: Path) -> None:
    out = tmp_path / big.name
    rewrite.rewrite(str(big), str(out), archs.target("sm_90"))  # type: ignore[arg-type]
    before, after = elf.read(big), elf.read(out)
    assert [s.name for s in before.sections] == [s.name for s in after.sections]
    old, new = big.read_bytes(), out.read_bytes()
    for a, b in zip(before.sections, after.sections):
        assert a.addr == b.addr, a.name
        if a.name in (fatbin.SECTION, fatbin.WRAPPERS, ".rela.dyn", ".symtab") or not a.file_bytes:
            continue
        assert old[a.offset:a.offset + a.size] == new[b.offset:b.offset + b.size], a.name
    assert len([s for s in after.segments if s.type == elf.PT_LOAD]) == \
        len([s for s in before.segments if s.type == elf.PT_LOAD]) + 1


def test_separate_compilation(rdc: Path, tmp_path: Path) -> None:
    out = tmp_path / rdc.name
    done = rewrite.rewrite(str(rdc), str(out), archs.target("sm_90"))  # type: ignore[arg-type]
    assert [e.label for e in done.kept] == ["sm_90 cubin"]
    assert "sm_80 cubin" not in cuda.cuobjdump_list(out)
    assert rewrite.check(str(out)) == []
    assert _run_host_code(out) == ["1", "3"]


def test_no_room_for_a_program_header_leaves_the_file_whole(tight: Path, tmp_path: Path) -> None:
    out = tmp_path / tight.name
    with pytest.raises(rewrite.RewriteUnsupported, match="no room for one more program header"):
        rewrite.rewrite(str(tight), str(out), archs.target("sm_90"))  # type: ignore[arg-type]
    assert not out.exists()


def test_none_keeps_one_entry_per_container(big: Path, tmp_path: Path) -> None:
    out = tmp_path / big.name
    done = rewrite.rewrite(str(big), str(out), archs.target("none"))  # type: ignore[arg-type]
    found = fatbin.read_file(out)
    assert found is not None
    assert [len(c.entries) for c in found.containers] == [1] * len(found.containers)
    assert len(done.kept) == len(found.containers)
    assert _run_host_code(out) == ["1", "3"]


def test_a_wrapper_pointing_elsewhere_is_found(big: Path, tmp_path: Path) -> None:
    out = tmp_path / big.name
    rewrite.rewrite(str(big), str(out), archs.target("sm_90"))  # type: ignore[arg-type]
    info = elf.read(out)
    rela = next(s for s in info.sections if s.name == ".rela.dyn")
    wrappers = next(s for s in info.sections if s.name == fatbin.WRAPPERS)
    data = bytearray(out.read_bytes())
    moved = 0
    for n in range(rela.size // 24):
        r_offset, r_info, addend = struct.unpack_from("<QQq", data, rela.offset + 24 * n)
        if r_offset == wrappers.addr + 8:
            moved = addend + 8
            struct.pack_into("<QQq", data, rela.offset + 24 * n, r_offset, r_info, moved)
    out.write_bytes(bytes(data))
    assert rewrite.check(str(out)) == [
        (f"the wrapper at {wrappers.addr:#x} points at {moved:#x}, which is not a fatbin "
        "container")]


def test_a_corrupt_fatbin_is_refused(big: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.so"
    shutil.copy(big, broken)
    section = fatbin.section(elf.read(broken))
    assert section is not None
    with open(broken, "r+b") as f:
        f.seek(section.offset + 16 + 8)
        f.write(struct.pack("<Q", 1 << 40))
    with pytest.raises(fatbin.FatbinError):
        rewrite.rewrite(str(broken), str(tmp_path / "out.so"), archs.target("sm_90"))  # type: ignore[arg-type]
    assert not (tmp_path / "out.so").exists()
