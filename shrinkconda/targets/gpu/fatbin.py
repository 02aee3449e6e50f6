"""Read the device code in an ELF file's ``.nv_fatbin`` section: containers, their
entries (cubin or PTX, for which SM architecture, compressed or not) and sizes.

Pure parsing, no third-party code: a container is a 16-byte header (magic
``0xBA55ED50``, u16 version, u16 header size, u64 size of the entries that follow),
then entries, each a header (u16 kind: 1 PTX, 2 cubin; u32 header size at byte 4; u64
payload size at byte 8; u32 SM architecture at byte 28; u64 flags at byte 40) followed
by its payload. Containers follow each other, padded with zero bytes to 8 or 16.
"""

from __future__ import annotations

import os
import struct
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from shrinkconda.errors import ShrinkError
from shrinkconda.phases import elf

SECTION = ".nv_fatbin"
"""The section holding the containers (``fatbinary_section.h``)."""
WRAPPERS = ".nvFatBinSegment"
"""The section holding the 24-byte wrappers that point at the containers."""
MAGIC = 0xBA55ED50
"""A container's first four bytes."""
WRAPPER_MAGIC = 0x466243B1
"""A wrapper's first four bytes (``FATBINC_MAGIC``)."""
PTX, CUBIN = 1, 2
"""Entry kinds."""
_COMPRESSED = 0x2000 | 0x8000  # LZ4 and ZSTD payloads
_CONTAINER = struct.Struct("<IHHQ")
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_ENTRY = struct.Struct("<HHIQIIHHIIIQQQ")
_ENTRY_MIN = 64
_MAX_PAD = 16

Reader = Callable[[int, int], bytes]
"""``read(offset, length)`` within the section: at most ``length`` bytes."""


class FatbinError(ShrinkError):
    """A ``.nv_fatbin`` section is truncated or does not hold fatbin containers."""


@dataclass(frozen=True)
class Entry:
    """One piece of device code: a cubin or PTX for one architecture."""

    offset: int
    """Where its header starts, from the start of the section."""
    header_size: int
    payload_size: int
    """Bytes of (possibly compressed, padded) payload after the header."""
    kind: int
    """:data:`PTX` or :data:`CUBIN`."""
    arch: int
    """The SM architecture as a number: 90 for ``sm_90``, 121 for ``sm_121``."""
    flags: int
    """The entry's flags (compression, host, 64-bit)."""

    @property
    def size(self) -> int:
        """Bytes it takes in the section, header included."""
        return self.header_size + self.payload_size

    @property
    def is_ptx(self) -> bool:
        """PTX (compiled for the GPU at load time) rather than a cubin."""
        return self.kind == PTX

    @property
    def compressed(self) -> bool:
        """Whether the payload is LZ4- or ZSTD-compressed."""
        return bool(self.flags & _COMPRESSED)

    @property
    def label(self) -> str:
        """``sm_90 cubin``, ``sm_90 PTX``."""
        return f"{arch_name(self.arch)} {'PTX' if self.is_ptx else 'cubin'}"


@dataclass(frozen=True)
class Container:
    """One fatbin: what one wrapper registers with the CUDA runtime."""

    offset: int
    """Where its header starts, from the start of the section."""
    header_size: int
    version: int
    entries: tuple[Entry, ...]

    @property
    def size(self) -> int:
        """Bytes from its header to the end of its last entry."""
        return self.header_size + sum(e.size for e in self.entries)


@dataclass(frozen=True)
class Fatbin:
    """The parsed section."""

    size: int
    """The section's size in bytes."""
    containers: tuple[Container, ...]

    def entries(self) -> Iterable[Entry]:
        """Every entry, container by container."""
        return (e for c in self.containers for e in c.entries)

    def by_arch(self) -> dict[str, int]:
        """Bytes of device code per ``sm_XY cubin`` / ``sm_XY PTX`` label."""
        totals: dict[str, int] = defaultdict(int)
        for entry in self.entries():
            totals[entry.label] += entry.size
        return dict(totals)


def arch_name(arch: int) -> str:
    """``sm_90`` for 90."""
    return f"sm_{arch}"


def parse(read: Reader, size: int) -> Fatbin:
    """Parse a section of ``size`` bytes through ``read``; reads only the headers.

    Raises :class:`FatbinError` for a truncated or corrupt section.
    """
    containers: list[Container] = []
    pos = 0
    while pos < size:
        pos = _next_container(read, pos, size)
        if pos >= size:
            break
        head = read(pos, _CONTAINER.size)
        if len(head) < _CONTAINER.size:
            raise FatbinError(f"truncated container header at {pos:#x}")
        _magic, version, header_size, body = _CONTAINER.unpack(head)
        end = pos + header_size + body
        if header_size < _CONTAINER.size or end > size:
            raise FatbinError(f"container at {pos:#x} runs past the section's end "
                              f"({end:#x} > {size:#x})")
        containers.append(Container(pos, header_size, version,
                                    _entries(read, pos + header_size, end)))
        pos = end
    return Fatbin(size, tuple(containers))


def _next_container(read: Reader, pos: int, size: int) -> int:
    """The start of the container at or just after ``pos`` (past zero padding), or
    ``size`` when only padding is left."""
    window = read(pos, min(_MAX_PAD + 4, size - pos))
    skip = len(window) - len(window.lstrip(b"\0"))
    if skip == len(window) and pos + skip >= size:
        return size
    if skip <= _MAX_PAD and window[skip:skip + 4] == _MAGIC_BYTES:
        return pos + skip
    raise FatbinError(f"no fatbin container at {pos:#x} (bytes {window[:8].hex()})")


def _entries(read: Reader, pos: int, end: int) -> tuple[Entry, ...]:
    found = []
    while pos < end:
        raw = read(pos, _ENTRY.size)
        if len(raw) < _ENTRY.size:
            raise FatbinError(f"truncated entry header at {pos:#x}")
        (kind, _ver, header_size, payload, _zsize, _zhead, _minor, _major, arch, _name_off,
         _name_len, flags, _opts, _raw_size) = _ENTRY.unpack(raw)
        if kind not in (PTX, CUBIN) or header_size < _ENTRY_MIN or pos + header_size + payload > end:
            raise FatbinError(f"corrupt entry at {pos:#x} (kind {kind}, header {header_size}, "
                              f"payload {payload})")
        found.append(Entry(pos, header_size, payload, kind, arch, flags))
        pos += header_size + payload
    return tuple(found)


def parse_bytes(data: bytes) -> Fatbin:
    """Parse a section held in memory."""
    return parse(lambda offset, length: data[offset:offset + length], len(data))


def section(info: elf.Elf) -> elf.Section | None:
    """The file's ``.nv_fatbin`` section, if it has one with bytes in the file."""
    return next((s for s in info.sections if s.name == SECTION and s.file_bytes), None)


def read_file(path: str | os.PathLike[str], info: elf.Elf | None = None) -> Fatbin | None:
    """The fatbin of the ELF file at ``path`` (``None`` without one); reads its headers
    only, so a 300 MiB section costs a few thousand small reads.

    Raises :class:`FatbinError` for a corrupt section, :class:`ElfError` for a corrupt
    ELF file, ``OSError`` when it cannot be read.
    """
    info = info or elf.read(path)
    found = section(info)
    if found is None:
        return None
    if found.offset + found.size > info.file_size:
        raise FatbinError(f"{SECTION} runs past the end of the file")
    with open(path, "rb") as f:
        base = found.offset

        def read(offset: int, length: int) -> bytes:
            f.seek(base + offset)
            return f.read(length)

        return parse(read, found.size)
