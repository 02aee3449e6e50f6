"""Read ELF headers (no third-party code) to decide, predict and check a strip."""

from __future__ import annotations

import bisect
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from shrinkconda.errors import ElfError

#: What ``strip`` is asked to remove, as users type it.
MODES = ("debug", "unneeded", "all")

#: ``e_type`` values.
ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4
#: ``p_type`` values.
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
#: ``sh_type`` values.
SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_REL, SHT_DYNSYM = 2, 3, 4, 8, 9, 11
#: ``sh_flags`` bit: the section occupies memory at run time.
SHF_ALLOC = 0x2

_SHN_UNDEF, _SHN_XINDEX, _PN_XNUM = 0, 0xFFFF, 0xFFFF
_STT_SECTION, _STT_FILE = 3, 4
_SHF_TLS = 0x400
# Segments the loader reads through their addresses, so they must lie in mapped memory:
# dynamic, interpreter, notes, program headers, the GNU exception frame header.
_MAPPED_SEGMENTS = (2, 3, 4, 6, 0x6474E550)

# binutils (bfd/elf.c) marks these non-allocated sections as debugging information, by
# name alone; --strip-debug removes exactly those, plus relocations against them.
_DEBUG_PREFIXES = (".debug", ".zdebug", ".gnu.debuglto_.debug_", ".gnu.linkonce.wi.",
                   ".line", ".stab")
_DEBUG_NAMES = (".gdb_index",)

# (ident class, data) -> (header, program header, section header) struct formats, after
# the 16 identification bytes; the layouts are the ELF gABI's Elf{32,64}_{Ehdr,Phdr,Shdr}.
_FORMATS = {
    1: ("HHIIIIIHHHHHH", "IIIIIIII", "IIIIIIIIII"),
    2: ("HHIQQQIHHHHHH", "IIQQQQQQ", "IIQQQQIIQQ"),
}


@dataclass(frozen=True)
class Segment:
    """One program header: a part of the file the loader maps or reads."""

    type: int
    """``p_type`` (``PT_LOAD``, ``PT_DYNAMIC``, ...)."""
    flags: int
    """``p_flags``: read, write, execute bits."""
    offset: int
    """``p_offset``: where the segment starts in the file."""
    vaddr: int
    """``p_vaddr``: where it is mapped."""
    filesz: int
    """``p_filesz``: bytes taken from the file."""
    memsz: int
    """``p_memsz``: bytes in memory (the rest is zero-filled)."""
    align: int
    """``p_align``: the loader needs ``offset % align == vaddr % align``."""


@dataclass(frozen=True)
class Section:
    """One section header, with its name resolved."""

    name: str
    """From the section-name string table (``.debug_info``)."""
    type: int
    """``sh_type`` (``SHT_SYMTAB``, ``SHT_NOBITS``, ...)."""
    flags: int
    """``sh_flags`` (``SHF_ALLOC``, ...)."""
    addr: int
    """``sh_addr``: where an allocated section is in memory."""
    offset: int
    """``sh_offset``: where its bytes start in the file."""
    size: int
    """``sh_size``: its length (occupies no file bytes when ``SHT_NOBITS``)."""
    link: int
    """``sh_link``: a related section's index (a symbol table's strings, ...)."""
    info: int
    """``sh_info``: for relocation sections, the index of the section they apply to."""
    align: int
    """``sh_addralign``: the section's start is a multiple of this."""

    @property
    def file_bytes(self) -> int:
        """Bytes the section takes in the file."""
        return 0 if self.type == SHT_NOBITS else self.size


@dataclass(frozen=True)
class Elf:
    """What an ELF file's headers say; enough to decide, predict and check a strip."""

    elf_class: int
    """``1`` for 32-bit, ``2`` for 64-bit objects."""
    data: int
    """``1`` for little-endian, ``2`` for big-endian."""
    type: int
    """``e_type``: ``ET_REL``, ``ET_EXEC``, ``ET_DYN``, ``ET_CORE``."""
    machine: int
    """``e_machine`` (62 is x86-64)."""
    entry: int
    """``e_entry``: the entry point address."""
    shentsize: int
    """Bytes per section header; strip drops one per removed section."""
    shstrndx: int
    """Index of the section-name string table."""
    file_size: int
    """The file's size when its headers were read."""
    segments: tuple[Segment, ...]
    sections: tuple[Section, ...]

    def has_segment(self, p_type: int) -> bool:
        """Whether a program header of type ``p_type`` exists."""
        return any(s.type == p_type for s in self.segments)

    def has_section(self, name: str) -> bool:
        """Whether a section called ``name`` exists."""
        return any(s.name == name for s in self.sections)


def read(path: str | os.PathLike[str]) -> Elf:
    """Read the ELF, program and section headers of the file at ``path``.

    Reads only the headers and the section-name table, a few kilobytes at most. Raises
    :class:`ElfError` for a file that is not a well-formed ELF object, ``OSError`` when
    it cannot be read.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        ident = f.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF":
            raise ElfError("not an ELF file (no ELF magic bytes)")
        elf_class, data = ident[4], ident[5]
        if elf_class not in _FORMATS or data not in (1, 2):
            raise ElfError(f"unknown ELF class {elf_class} or data encoding {data}")
        order = "<" if data == 1 else ">"
        header, phdr, shdr = (struct.Struct(order + fmt) for fmt in _FORMATS[elf_class])
        fields = header.unpack(_read_at(f, 16, header.size, size, "ELF header"))
        (e_type, machine, _version, entry, phoff, shoff, _flags, _ehsize,
         phentsize, phnum, shentsize, shnum, shstrndx) = fields
        raw_sections = _table(f, shoff, shentsize, shnum, shdr, size, "section")
        if raw_sections and shnum == 0:
            # Extended numbering: more than 0xff00 sections; section 0 holds the counts.
            shnum = raw_sections[0][5]
            raw_sections = _table(f, shoff, shentsize, shnum, shdr, size, "section")
        if raw_sections and shstrndx == _SHN_XINDEX:
            shstrndx = raw_sections[0][6]
        if raw_sections and phnum == _PN_XNUM:
            phnum = raw_sections[0][7]
        raw_segments = _table(f, phoff, phentsize, phnum, phdr, size, "program")
        names = b""
        if raw_sections and shstrndx != _SHN_UNDEF:
            if shstrndx >= len(raw_sections):
                raise ElfError(f"section-name table index {shstrndx} out of range")
            strtab = raw_sections[shstrndx]
            names = _read_at(f, strtab[4], strtab[5], size, "section-name table")
    return Elf(
        elf_class, data, e_type, machine, entry, shentsize, shstrndx, size,
        tuple(_segment(elf_class, s) for s in raw_segments),
        tuple(Section(_name(names, s[0]), *s[1:9])
              for s in raw_sections),
    )


_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ = 0, 1, 5, 10


def needed(path: str | os.PathLike[str], elf: Elf) -> tuple[str, ...]:
    """The ``DT_NEEDED`` entries of a linked object (``libtk8.6.so``, ...), in order.

    Read through the program headers, as the dynamic loader reads them, so an object
    without section headers is read too; ``()`` for one without a dynamic segment (a
    static executable, a relocatable object). Raises :class:`ElfError` for a dynamic
    segment or string table that does not lie in the file.
    """
    dynamic = next((s for s in elf.segments if s.type == PT_DYNAMIC), None)
    if dynamic is None:
        return ()
    order = "<" if elf.data == 1 else ">"
    entry = struct.Struct(order + ("qQ" if elf.elf_class == 2 else "iI"))
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        raw = _read_at(f, dynamic.offset, dynamic.filesz, size, "dynamic segment")
        wanted: list[int] = []
        strtab = strsz = None
        for tag, value in entry.iter_unpack(raw[: len(raw) - len(raw) % entry.size]):
            if tag == _DT_NULL:
                break
            if tag == _DT_NEEDED:
                wanted.append(value)
            elif tag == _DT_STRTAB:
                strtab = value
            elif tag == _DT_STRSZ:
                strsz = value
        if not wanted:
            return ()
        if strtab is None or strsz is None:
            raise ElfError("dynamic segment has DT_NEEDED but no string table")
        load = next((s for s in elf.segments if s.type == PT_LOAD
                     and s.vaddr <= strtab < s.vaddr + s.filesz), None)
        if load is None:
            raise ElfError("dynamic string table is not in a loaded part of the file")
        strings = _read_at(f, load.offset + strtab - load.vaddr, strsz, size,
                           "dynamic string table")
    return tuple(_name(strings, offset) for offset in wanted)


def _read_at(f: BinaryIO, offset: int, length: int, size: int, what: str) -> bytes:
    if offset + length > size:
        raise ElfError(f"truncated: the {what} runs past the end of the file")
    f.seek(offset)
    return f.read(length)


def _table(f: BinaryIO, offset: int, entsize: int, count: int, entry: struct.Struct,
           size: int, what: str) -> list[tuple[int, ...]]:
    """The ``count`` entries of a header table; ``[]`` when the file has none."""
    if offset == 0 or count == 0:
        return []
    if entsize < entry.size:
        raise ElfError(f"{what} header entries of {entsize} bytes are too small")
    raw = _read_at(f, offset, entsize * count, size, f"{what} header table")
    return [entry.unpack_from(raw, i * entsize) for i in range(count)]


def _segment(elf_class: int, raw: tuple[int, ...]) -> Segment:
    if elf_class == 2:
        p_type, flags, offset, vaddr, _paddr, filesz, memsz, align = raw
    else:
        p_type, offset, vaddr, _paddr, filesz, memsz, flags, align = raw
    return Segment(p_type, flags, offset, vaddr, filesz, memsz, align)


def _name(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    raw = table[offset:end] if end >= 0 else table[offset:]
    return raw.decode("utf-8", "surrogateescape")


def is_debug_section(section: Section) -> bool:
    """Whether GNU strip counts ``section`` as debugging information."""
    if section.flags & SHF_ALLOC:
        return False
    return section.name.startswith(_DEBUG_PREFIXES) or section.name in _DEBUG_NAMES


def dh_mode(elf: Elf) -> str:
    """The mode Debian's ``dh_strip`` strips a linked object with: all symbols from an
    executable (it has a program interpreter), unneeded symbols from a shared library."""
    return "all" if elf.type == ET_EXEC or elf.has_segment(PT_INTERP) else "unneeded"


def removable(elf: Elf, mode: str) -> list[int]:
    """Indices of the sections ``strip --strip-<mode>`` removes from a linked object.

    ``debug``: the debugging sections (``.debug_*``, ``.zdebug_*``, ``.stab*``, ...);
    ``.gnu_debuglink`` stays in every mode. ``unneeded`` also drops the static symbol
    table, which a linked object needs for nothing unless static relocations
    (``ld --emit-relocs``) refer to it; ``all`` drops it and those relocations anyway.
    Relocation sections go with the sections they apply to.
    """
    if mode not in MODES:
        raise ValueError(f"unknown strip mode {mode!r}; use one of {', '.join(MODES)}")
    sections = elf.sections
    gone = {i for i, s in enumerate(sections) if is_debug_section(s)}
    if mode != "debug":
        for i, s in enumerate(sections):
            if s.type != SHT_SYMTAB:
                continue
            users = [j for j, r in enumerate(sections) if _relocates(r) and r.link == i
                     and r.info not in gone]
            if users and mode == "unneeded":
                continue
            gone.update((i, *users))
            if s.link != elf.shstrndx and 0 < s.link < len(sections):
                gone.add(s.link)
    gone.update(j for j, r in enumerate(sections) if _relocates(r) and r.info in gone)
    return sorted(gone)


def _relocates(section: Section) -> bool:
    """A static relocation section (``.rela.text``), not the loader's (``.rela.dyn``)."""
    return section.type in (SHT_REL, SHT_RELA) and not section.flags & SHF_ALLOC


def predicted_size(elf: Elf, removed: Sequence[int], symbol_bytes: int = 0) -> int:
    """The size of the file after strip removes the sections at ``removed``.

    Lays the file out again as GNU strip does: each load segment at the first offset
    after the previous one that is congruent to its address (a segment keeps its bytes
    up to the end of its last section, so the stale bytes patchelf leaves go), then the
    kept non-allocated sections in order, each at its alignment, then the section
    headers. ``symbol_bytes`` (see :func:`dropped_symbol_bytes`) and the removed names
    come off the symbol and section-name tables. Not modelled: ``.gnu.build.attributes``
    notes that strip rewrites, symbols ``--strip-unneeded`` drops from a symbol table it
    keeps, and string-table tail merging.
    """
    gone = set(removed)
    end = 0
    for n, segment in enumerate(_loads(elf)):
        covered = _covered_bytes(elf, segment)
        if n == 0:
            start = segment.offset
        elif covered == 0:
            start = end  # strip places an empty segment unaligned (see empty_loads)
        else:
            start = end + (segment.vaddr - end) % max(segment.align, 1)
        end = start + covered
    for index, section in enumerate(elf.sections):
        if index and index not in gone and not section.flags & SHF_ALLOC:
            end = _align(end, section.align) + section.file_bytes
    end -= symbol_bytes + sum(_name_bytes(elf.sections[i]) for i in gone)
    end = _align(end, 8 if elf.elf_class == 2 else 4)
    return min(elf.file_size, end + (len(elf.sections) - len(gone)) * elf.shentsize)


def empty_loads(elf: Elf) -> list[int]:
    """Load segments (numbered among ``PT_LOAD``) that hold no allocated section.

    patchelf leaves such segments behind when it moves sections; GNU strip 2.40 writes
    them out empty at an offset not congruent to their address, which the loader
    refuses, so stripping these files fails validation.
    """
    return [n for n, seg in enumerate(_loads(elf)) if seg.filesz and not _covered_bytes(elf, seg)]


def _covered_bytes(elf: Elf, segment: Segment) -> int:
    """File bytes of ``segment`` up to the end of the last section in it."""
    ends = [s.addr + s.size - segment.vaddr for s in elf.sections
            if s.flags & SHF_ALLOC and s.file_bytes
            and segment.vaddr <= s.addr < segment.vaddr + segment.memsz]
    return min(segment.filesz, max(ends)) if ends else 0


def _align(offset: int, alignment: int) -> int:
    return offset if alignment <= 1 else -(-offset // alignment) * alignment


def _name_bytes(section: Section) -> int:
    return len(section.name.encode("utf-8", "surrogateescape")) + 1


def dropped_symbol_bytes(path: str | os.PathLike[str], elf: Elf,
                         removed: Sequence[int]) -> int:
    """Bytes ``.symtab`` and its strings lose when strip keeps them but removes ``removed``.

    Strip drops the ``STT_FILE`` symbols (it counts them as debugging information), the
    section symbols (no relocation of a linked object needs them) and every symbol
    defined in a removed section. Reads the symbol table, so this is for
    predictions, where no strip runs; names shared with a kept symbol are not counted.
    """
    gone = set(removed)
    saved = 0
    for index, symtab in enumerate(elf.sections):
        if symtab.type != SHT_SYMTAB or index in gone or not 0 < symtab.link < len(elf.sections):
            continue
        strtab = elf.sections[symtab.link]
        entry = struct.Struct(("<" if elf.data == 1 else ">")
                              + ("IBBHQQ" if elf.elf_class == 2 else "IIIBBH"))
        with open(path, "rb") as f:
            symbols = _read_at(f, symtab.offset, symtab.size - symtab.size % entry.size,
                               elf.file_size, "symbol table")
            strings = _read_at(f, strtab.offset, strtab.file_bytes, elf.file_size,
                               "symbol string table")
        kept_names: set[int] = set()
        dropped_names: set[int] = set()
        for fields in entry.iter_unpack(symbols):
            if elf.elf_class == 2:
                name, info, _other, shndx = fields[:4]
            else:
                name, info, shndx = fields[0], fields[3], fields[5]
            if info & 0xF in (_STT_SECTION, _STT_FILE) or shndx in gone:
                saved += entry.size
                dropped_names.add(name)
            else:
                kept_names.add(name)
        saved += _unshared_bytes(strings, dropped_names - kept_names - {0}, kept_names)
    return saved


def _unshared_bytes(strings: bytes, dropped: set[int], kept: set[int]) -> int:
    """Bytes the ``dropped`` strings free. Linkers and strip store a string that ends
    another one inside it ("c.c" in "abc.c"), so such a string frees nothing."""

    def reversed_string(offset: int) -> bytes:
        end = strings.find(b"\0", offset)
        return strings[offset:end if end >= 0 else len(strings)][::-1]

    gone = {reversed_string(offset) for offset in dropped}
    everything = sorted(gone | {reversed_string(offset) for offset in kept})
    freed = 0
    for reverse in gone:
        at = bisect.bisect_right(everything, reverse)  # the next string, sorted reversed
        if at == len(everything) or not everything[at].startswith(reverse):
            freed += len(reverse) + 1
    return freed


def check_stripped(original: Elf, stripped: Elf) -> list[str]:
    """Why ``stripped`` is not a safe replacement for ``original``; ``[]`` if it is.

    Same class, byte order, machine, type and entry point. The same loadable segments
    (addresses and permissions), each lying within the file with ``p_offset % p_align ==
    p_vaddr % p_align`` (the loader refuses others). Every allocated section still at
    its address with its size, inside a loadable segment, and so every other segment
    (dynamic, interpreter, notes, ...). For shared objects the dynamic segment,
    ``.dynamic`` and ``.dynsym`` if the original had them. A segment may shrink: strip
    drops bytes no section covers, such as the stale copies patchelf leaves behind.
    """
    reasons = []
    for what, a, b in (("ELF class", original.elf_class, stripped.elf_class),
                       ("byte order", original.data, stripped.data),
                       ("machine", original.machine, stripped.machine),
                       ("object type", original.type, stripped.type),
                       ("entry point", original.entry, stripped.entry)):
        if a != b:
            reasons.append(f"{what} changed from {a:#x} to {b:#x}")
    reasons += _check_loads(original, stripped)
    reasons += _check_contents(original, stripped)
    if original.type == ET_DYN:
        if original.has_segment(PT_DYNAMIC) and not stripped.has_segment(PT_DYNAMIC):
            reasons.append("the dynamic segment (PT_DYNAMIC) is gone")
        for name in (".dynamic", ".dynsym"):
            if original.has_section(name) and not stripped.has_section(name):
                reasons.append(f"the {name} section is gone")
    return reasons


def _loads(elf: Elf) -> list[Segment]:
    return [s for s in elf.segments if s.type == PT_LOAD]


def _check_loads(original: Elf, stripped: Elf) -> list[str]:
    reasons = []
    for n, seg in enumerate(_loads(stripped)):
        if seg.align > 1 and seg.offset % seg.align != seg.vaddr % seg.align:
            reasons.append(
                f"load segment {n} is misaligned: offset {seg.offset:#x} and address "
                f"{seg.vaddr:#x} differ modulo its alignment {seg.align:#x} (the loader "
                "would refuse it)")
        if seg.offset + seg.filesz > stripped.file_size:
            reasons.append(f"load segment {n} runs past the end of the file")
        if seg.filesz > seg.memsz:
            reasons.append(f"load segment {n} has more file bytes than memory")
    before = [(s.vaddr, s.flags) for s in _loads(original)]
    after = [(s.vaddr, s.flags) for s in _loads(stripped)]
    if before != after:
        reasons.append(f"the loadable segments moved: {len(before)} before, {len(after)} "
                       "after, or at other addresses or with other permissions")
    return reasons


def _check_contents(original: Elf, stripped: Elf) -> list[str]:
    """Everything the loader maps must still be there, where it was."""
    loads = _loads(stripped)

    def mapped(start: int, size: int, from_file: bool) -> bool:
        return any(s.vaddr <= start and start + size <= s.vaddr + (
            s.filesz if from_file else s.memsz) for s in loads)

    reasons = []
    kept = {(s.name, s.type, s.addr, s.size) for s in stripped.sections if s.flags & SHF_ALLOC}
    for s in original.sections:
        if not s.flags & SHF_ALLOC:
            continue
        if (s.name, s.type, s.addr, s.size) not in kept:
            reasons.append(f"the allocated section {s.name} moved, changed size or is gone")
        elif s.size and not s.flags & _SHF_TLS and not mapped(s.addr, s.size, s.file_bytes > 0):
            reasons.append(f"the allocated section {s.name} is no longer in a load segment")
    for seg in stripped.segments:
        if seg.type in _MAPPED_SEGMENTS and seg.memsz and not mapped(seg.vaddr, seg.memsz, False):
            reasons.append(f"segment of type {seg.type:#x} at {seg.vaddr:#x} is no longer "
                           "inside a load segment")
    return reasons
