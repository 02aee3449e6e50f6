"""Rewrite one ELF file without the device code a GPU target never runs: the kept
fatbin entries written compactly, the wrappers (and their relocations) pointed at the
moved containers, everything after the fatbin moved down the file, every virtual
address kept.

The read-only segment holding ``.nv_fatbin`` is split in two: the part up to the end of
the compacted fatbin, and the part after the old fatbin (``.eh_frame`` and friends) at
its old address but a lower file offset, by a whole number of pages. That needs one more
program header; a file whose header table has no room for it is left whole
(:class:`RewriteUnsupported`).
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from shrinkconda.errors import ShrinkError
from shrinkconda.phases import elf
from shrinkconda.targets.gpu import fatbin
from shrinkconda.targets.gpu.archs import GpuTarget
from shrinkconda.targets.gpu.fatbin import Entry, Fatbin

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_RELA = struct.Struct("<QQq")
_SYM = struct.Struct("<IBBHQQ")
_WRAPPER = struct.Struct("<IIQQ")
_EM_X86_64, _R_X86_64_RELATIVE, _PT_PHDR = 62, 8, 6
_CONTAINER_ALIGN = 16
_COPY_CHUNK = 1 << 22


class RewriteUnsupported(ShrinkError):
    """The file's layout does not allow the rewrite; it stays whole."""


class NothingToFree(RewriteUnsupported):
    """The target runs (nearly) everything the file holds: no page would be freed (a
    file rewritten for the same target by an earlier shrink)."""


@dataclass(frozen=True)
class Choice:
    """What a target keeps of one fatbin."""

    kept: tuple[tuple[Entry, ...], ...]
    """Per container, the entries that stay, in their order."""

    def entries(self) -> list[Entry]:
        """Every kept entry."""
        return [e for c in self.kept for e in c]


@dataclass(frozen=True)
class Rewritten:
    """What :func:`rewrite` did."""

    before: int
    """The original file's size."""
    after: int
    """The new file's size."""
    fatbin_before: int
    fatbin_after: int
    kept: tuple[Entry, ...]
    """The entries that stayed (offsets in the original section)."""


def choose(fat: Fatbin, target: GpuTarget, ptx: bool = True) -> Choice:
    """The entries of each container a GPU of ``target`` could run: cubins it runs, and
    the PTX it would compile (unless ``ptx`` is false and a cubin covers that target).
    A container with nothing for the target keeps its smallest entry, so the runtime
    still registers it and says "no kernel image" for it, as it did before."""
    kept = []
    for container in fat.containers:
        entries = container.entries
        cubins = [e for e in entries if not e.is_ptx and target.runs_cubin(e.arch)]
        ptx_archs = target.ptx_for(e.arch for e in entries if e.is_ptx)
        if not ptx:
            ptx_archs = {a for a in ptx_archs
                         if not any(_covers(c.arch, t, a) for c in cubins for t in target.archs)}
        chosen = [e for e in entries if e in cubins or (e.is_ptx and e.arch in ptx_archs)]
        if not chosen and entries:
            chosen = [min(entries, key=lambda e: e.size)]
        kept.append(tuple(chosen))
    return Choice(tuple(kept))


def _covers(cubin: int, target: int, ptx: int) -> bool:
    """Whether ``cubin`` runs on ``target``, for which ``ptx`` would be the JIT source."""
    return cubin // 10 == target // 10 and cubin <= target and ptx <= target


@dataclass
class _Layout:
    header: tuple[int, ...]
    phdrs: list[list[int]]
    shdrs: list[list[int]]
    info: elf.Elf


def _layout(path: str) -> _Layout:
    info = elf.read(path)
    if info.elf_class != 2 or info.data != 1 or info.machine != _EM_X86_64:
        raise RewriteUnsupported("not a 64-bit little-endian x86-64 ELF file")
    with open(path, "rb") as f:
        header = _EHDR.unpack(f.read(_EHDR.size))
        phoff, shoff, phentsize, phnum, shentsize, shnum = (
            header[5], header[6], header[9], header[10], header[11], header[12])
        if phentsize != _PHDR.size or shentsize != _SHDR.size or phnum == 0xFFFF or shnum == 0:
            raise RewriteUnsupported("unusual ELF header table sizes")
        f.seek(phoff)
        phdrs = [list(p) for p in _PHDR.iter_unpack(f.read(phnum * _PHDR.size))]
        f.seek(shoff)
        shdrs = [list(s) for s in _SHDR.iter_unpack(f.read(shnum * _SHDR.size))]
    return _Layout(header, phdrs, shdrs, info)


@dataclass(frozen=True)
class Prepared:
    """A rewrite worked out from the headers, before any byte is written."""

    src: str
    fat: Fatbin
    choice: Choice
    section_offset: int
    new_fat_size: int
    shift: int
    """Bytes the file loses: what follows the fatbin moves down by this much."""
    header: tuple[int, ...]
    phdrs: tuple[tuple[int, ...], ...]
    shdrs: tuple[tuple[int, ...], ...]
    patches: tuple[tuple[int, bytes], ...]
    file_size: int

    @property
    def after(self) -> int:
        """The new file's size."""
        return self.file_size - self.shift


def prepare(src: str, target: GpuTarget, ptx: bool = True) -> Prepared:
    """Work out the rewrite of ``src`` from its headers and the fatbin's entry headers.

    Raises :class:`RewriteUnsupported` when the layout does not allow it or nothing
    would be saved, :class:`fatbin.FatbinError` for a corrupt fatbin, ``ElfError`` for a
    corrupt ELF file.
    """
    lay = _layout(src)
    info = lay.info
    index = next((i for i, s in enumerate(info.sections) if s.name == fatbin.SECTION), None)
    if index is None:
        raise RewriteUnsupported(f"no {fatbin.SECTION} section")
    sec = info.sections[index]
    fat = fatbin.read_file(src, info)
    assert fat is not None
    choice = choose(fat, target, ptx)
    new_size, moved = _offsets(fat, choice)
    old_start, old_end = sec.offset, sec.offset + sec.size
    new_end = old_start + new_size
    loads = [p for p in lay.phdrs if p[0] == elf.PT_LOAD]
    align = max((p[7] for p in loads), default=1)
    shift = (old_end - new_end) // align * align
    if shift <= 0:
        raise NothingToFree("the device code for other GPUs takes less than one page")
    mapping = {sec.addr + old: sec.addr + new for old, new in moved.items()}
    phdrs = _split_segments(lay, sec, new_end, shift)
    shdrs = _moved_sections(lay, index, new_size, old_end, shift)
    patches = _pointer_patches(src, lay, sec, mapping, old_end, shift)
    header = list(lay.header)
    if header[6] >= old_end:
        header[6] -= shift
    header[10] = len(phdrs)
    return Prepared(src, fat, choice, sec.offset, new_size, shift, tuple(header),
                    tuple(map(tuple, phdrs)), tuple(map(tuple, shdrs)), tuple(patches),
                    info.file_size)


def write(prepared: Prepared, dst: str) -> Rewritten:
    """Write the prepared rewrite to the new file ``dst``."""
    p = prepared
    old_start, old_end = p.section_offset, p.section_offset + p.fat.size
    with open(p.src, "rb") as f, open(dst, "wb") as out:
        _copy(f, out, 0, old_start)
        new_fat = _compact(f, old_start, p.fat, p.choice)
        assert len(new_fat) == p.new_fat_size
        out.write(new_fat)
        out.write(b"\0" * (old_end - p.shift - old_start - len(new_fat)))
        _copy(f, out, old_end, p.file_size - old_end)
        out.seek(0)
        out.write(_EHDR.pack(*p.header))
        out.seek(p.header[5])
        out.write(b"".join(_PHDR.pack(*h) for h in p.phdrs))
        out.seek(p.header[6])
        out.write(b"".join(_SHDR.pack(*h) for h in p.shdrs))
        for offset, data in p.patches:
            out.seek(offset)
            out.write(data)
    shutil.copymode(p.src, dst)
    return Rewritten(p.file_size, os.path.getsize(dst), p.fat.size, len(new_fat),
                     tuple(p.choice.entries()))


def rewrite(src: str, dst: str, target: GpuTarget, ptx: bool = True) -> Rewritten:
    """Write ``src`` without the device code ``target`` never runs to the new file
    ``dst`` (:func:`prepare`, then :func:`write`); nothing is written when it raises."""
    return write(prepare(src, target, ptx), dst)


def _offsets(fat: Fatbin, choice: Choice) -> tuple[int, dict[int, int]]:
    """The compacted section's size, and where each container moves (section offsets)."""
    pos = 0
    moved = {}
    for container, kept in zip(fat.containers, choice.kept):
        pos = _round_up(pos, _CONTAINER_ALIGN)
        moved[container.offset] = pos
        pos += container.header_size + sum(e.size for e in kept)
    return pos, moved


def _compact(f: BinaryIO, base: int, fat: Fatbin, choice: Choice) -> bytes:
    """The compacted section's bytes: each container's header with its new size, then
    the kept entries as they were."""
    out = bytearray()
    for container, kept in zip(fat.containers, choice.kept):
        out += b"\0" * (_round_up(len(out), _CONTAINER_ALIGN) - len(out))
        f.seek(base + container.offset)
        head = bytearray(f.read(container.header_size))
        struct.pack_into("<Q", head, 8, sum(e.size for e in kept))
        out += head
        for entry in kept:
            f.seek(base + entry.offset)
            out += f.read(entry.size)
    return bytes(out)


def _split_segments(lay: _Layout, sec: elf.Section, new_end: int, shift: int) -> list[list[int]]:
    """The program headers after the move: the segment holding the fatbin cut at the
    compacted end, its tail a new ``PT_LOAD`` at the same address, later ones moved."""
    old_start, old_end = sec.offset, sec.offset + sec.size
    out: list[list[int]] = []
    split = False
    for p in lay.phdrs:
        p = list(p)
        p_type, p_off, p_filesz = p[0], p[2], p[5]
        if p_off >= old_end or (p_filesz == 0 and p_off >= old_start):
            if p_off >= old_end:
                p[2] -= shift
            out.append(p)
        elif p_off + p_filesz <= old_start:
            out.append(p)
        elif p_type == elf.PT_LOAD and p_off <= old_start and not split:
            if p[5] != p[6]:
                raise RewriteUnsupported("the segment holding the fatbin has zero-filled bytes")
            tail = p_off + p_filesz - old_end
            head = list(p)
            head[5] = head[6] = new_end - p_off
            out.append(head)
            if tail > 0:
                out.append([p_type, p[1], old_end - shift, sec.addr + sec.size,
                            sec.addr + sec.size, tail, tail, p[7]])
            split = True
        else:
            raise RewriteUnsupported(f"program header type {p_type:#x} overlaps the fatbin")
    if len(out) > len(lay.phdrs):
        _check_room(lay, len(out))
        for p in out:
            if p[0] == _PT_PHDR:
                p[5] = p[6] = len(out) * _PHDR.size
    return out


def _check_room(lay: _Layout, count: int) -> None:
    """Whether ``count`` program headers fit where the table is, before the first
    section's bytes and inside the first segment that maps the table."""
    phoff = lay.header[5]
    end = phoff + count * _PHDR.size
    after = [s[4] for s in lay.shdrs if s[1] != elf.SHT_NOBITS and s[5] and s[4] >= phoff]
    holder = [p for p in lay.phdrs if p[0] == elf.PT_LOAD and p[2] <= phoff < p[2] + p[5]]
    if (after and end > min(after)) or not holder or end > holder[0][2] + holder[0][5]:
        raise RewriteUnsupported("no room for one more program header (the read-only "
                                 "segment holding the fatbin would have to be split)")


def _moved_sections(lay: _Layout, index: int, new_size: int, old_end: int,
                    shift: int) -> list[list[int]]:
    old_start = lay.shdrs[index][4]
    out = []
    for i, s in enumerate(lay.shdrs):
        s = list(s)
        if i == index:
            s[5] = new_size
        elif s[4] >= old_end and i:
            s[4] -= shift
        elif s[5] and s[1] != elf.SHT_NOBITS and old_start <= s[4] < old_end:
            raise RewriteUnsupported(f"section {lay.info.sections[i].name} lies inside "
                                     "the fatbin")
        out.append(s)
    return out


def _pointer_patches(src: str, lay: _Layout, sec: elf.Section, mapping: dict[int, int],
                     old_end: int, shift: int) -> list[tuple[int, bytes]]:
    """New bytes for everything that points into the fatbin: relocation addends, the
    wrappers' stored pointers, symbols. Anything else pointing there, or a pointer to
    no container's start, makes the file unsupported."""
    lo, hi = sec.addr, sec.addr + sec.size
    sections = lay.info.sections
    wrappers = next((s for s in sections if s.name == fatbin.WRAPPERS), None)
    if wrappers is None:
        raise RewriteUnsupported(f"no {fatbin.WRAPPERS} section")
    patches: list[tuple[int, bytes]] = []
    seen: set[int] = set()

    def new_offset(offset: int) -> int:
        return offset - shift if offset >= old_end else offset

    def mapped(value: int, what: str) -> int:
        if value not in mapping:
            raise RewriteUnsupported(f"{what} points inside the fatbin, not at a container")
        seen.add(value)
        return mapping[value]

    with open(src, "rb") as f:
        f.seek(wrappers.offset)
        raw = f.read(wrappers.size)
        wrapper_fields = set()
        for n in range(len(raw) // _WRAPPER.size):
            magic, _version, data, extra = _WRAPPER.unpack_from(raw, n * _WRAPPER.size)
            if magic != fatbin.WRAPPER_MAGIC:
                raise RewriteUnsupported(f"{fatbin.WRAPPERS} holds something else than "
                                         "fatbin wrappers")
            where = wrappers.offset + n * _WRAPPER.size + 8
            wrapper_fields.add(wrappers.addr + n * _WRAPPER.size + 8)
            if lo <= data < hi:
                patches.append((new_offset(where), struct.pack("<Q", mapped(data, "a wrapper"))))
            if lo <= extra < hi:
                raise RewriteUnsupported("a wrapper's second pointer points inside the fatbin")
        for s in sections:
            if s.type == elf.SHT_RELA:
                patches += _rela_patches(f, s, lo, hi, wrapper_fields, mapped, new_offset)
            elif s.type in (elf.SHT_SYMTAB, elf.SHT_DYNSYM):
                patches += _symbol_patches(f, s, lo, hi, mapping, new_offset,
                                           s.type == elf.SHT_DYNSYM)
    if seen != set(mapping):
        raise RewriteUnsupported("a fatbin container is registered by no wrapper")
    return patches


def _rela_patches(f: BinaryIO, s: elf.Section, lo: int, hi: int, fields: set[int],
                  mapped: Callable[[int, str], int],
                  new_offset: Callable[[int], int]) -> list[tuple[int, bytes]]:
    f.seek(s.offset)
    raw = f.read(s.size)
    patches = []
    for n in range(len(raw) // _RELA.size):
        r_offset, r_info, addend = _RELA.unpack_from(raw, n * _RELA.size)
        if not lo <= addend < hi:
            continue
        if r_info & 0xFFFFFFFF != _R_X86_64_RELATIVE or r_offset not in fields:
            raise RewriteUnsupported("a relocation other than a wrapper's points into the "
                                     "fatbin")
        new = mapped(addend, "a relocation")
        patches.append((new_offset(s.offset + n * _RELA.size), _RELA.pack(r_offset, r_info, new)))
    return patches


def _symbol_patches(f: BinaryIO, s: elf.Section, lo: int, hi: int, mapping: dict[int, int],
                    new_offset: Callable[[int], int],
                    dynamic: bool) -> list[tuple[int, bytes]]:
    """Symbols at a container's start follow it; a dynamic symbol elsewhere in the
    fatbin could be looked up at run time, so it makes the file unsupported."""
    f.seek(s.offset)
    raw = f.read(s.size)
    patches = []
    for n in range(len(raw) // _SYM.size):
        fields = list(_SYM.unpack_from(raw, n * _SYM.size))
        value = fields[4]
        if not lo <= value < hi or fields[3] == 0:
            continue
        if value in mapping:
            fields[4] = mapping[value]
            patches.append((new_offset(s.offset + n * _SYM.size), _SYM.pack(*fields)))
        elif dynamic:
            raise RewriteUnsupported("a dynamic symbol points inside the fatbin")
    return patches


def _copy(f: BinaryIO, out: BinaryIO, offset: int, length: int) -> None:
    f.seek(offset)
    while length > 0:
        chunk = f.read(min(length, _COPY_CHUNK))
        if not chunk:
            raise RewriteUnsupported("the file is shorter than its headers say")
        out.write(chunk)
        length -= len(chunk)


def _round_up(value: int, align: int) -> int:
    return -(-value // align) * align


def check(path: str) -> list[str]:
    """What is wrong with a rewritten file, read back as the loader and the CUDA runtime
    would: every wrapper's container pointer (relocation addend, else stored value) must
    land, through the ``PT_LOAD`` segments, on a container's magic; ``[]`` when all do."""
    lay = _layout(path)
    sections = lay.info.sections
    wrappers = next((s for s in sections if s.name == fatbin.WRAPPERS), None)
    if wrappers is None or fatbin.section(lay.info) is None:
        return [f"no {fatbin.SECTION} or {fatbin.WRAPPERS} section"]
    fatbin.read_file(path, lay.info)
    loads = [p for p in lay.phdrs if p[0] == elf.PT_LOAD]
    problems = []
    with open(path, "rb") as f:
        f.seek(wrappers.offset)
        raw = f.read(wrappers.size)
        pointers = {wrappers.addr + n * _WRAPPER.size + 8: _WRAPPER.unpack_from(raw, n * _WRAPPER.size)[2]
                    for n in range(len(raw) // _WRAPPER.size)}
        for s in sections:
            if s.type == elf.SHT_RELA:
                f.seek(s.offset)
                for r_offset, r_info, addend in _RELA.iter_unpack(f.read(s.size)):
                    if r_offset in pointers and r_info & 0xFFFFFFFF == _R_X86_64_RELATIVE:
                        pointers[r_offset] = addend
        for field, vaddr in sorted(pointers.items()):
            load = next((p for p in loads if p[3] <= vaddr < p[3] + p[5]), None)
            if load is None:
                problems.append(f"the wrapper at {field - 8:#x} points at {vaddr:#x}, "
                                "which no segment maps")
                continue
            f.seek(load[2] + vaddr - load[3])
            if f.read(4) != struct.pack("<I", fatbin.MAGIC):
                problems.append(f"the wrapper at {field - 8:#x} points at {vaddr:#x}, "
                                "which is not a fatbin container")
    return problems
