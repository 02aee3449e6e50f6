"""What a prefix costs compressed: one tar layer through gzip -6 and zstd -3, and a
Lambda-style zip, before and after a shrink.

Nothing is written: the archives are streamed through the compressors and only their
lengths are kept. The tar is what ``tar -C PREFIX --sort=name -cf - .`` writes (GNU
format, hard links stored once); the zip is what ``cd PREFIX && zip -6 -r`` writes (every
link's bytes, symlinks to files stored as the file). The three compressors run in their
own threads; zlib and zstandard release the GIL while they work.
"""

from __future__ import annotations

import grp
import os
import pwd
import queue
import stat
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any, Optional, Union

from shrinkconda.errors import StripToolMissing
from shrinkconda.phases import strip
from shrinkconda.scan import DIR, FILE, SYMLINK, Scan

ZSTD_MISSING = ("zstd sizes need the zstandard package, not installed: "
                "pip install 'shrinkconda[zstd]' (or pip install zstandard)")

_CHUNK = 1 << 20
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
# Info-ZIP 3.0 on Unix: local header 30 + "UT" (mtime, atime) 13 + "ux" (uid, gid) 15;
# central header 46 + "UT" 9 + "ux" 4; end of central directory 22.
_ZIP_LOCAL, _ZIP_CENTRAL, _ZIP_END = 30 + 13 + 15, 46 + 9 + 4, 22

Source = Union[str, bytes]
"""A member's new content: the path of a file holding it, or the bytes themselves."""


@dataclass(frozen=True)
class Added:
    """An entry the "after" archive has and the scan does not (a file a commit writes)."""

    path: str
    """Relative to the prefix."""
    kind: str
    """``file``, ``dir`` or ``symlink``."""
    data: bytes = b""
    """A file's bytes, or a symlink's target."""


@dataclass(frozen=True)
class Sizes:
    """The compressed sizes of one state of a prefix."""

    gzip: int
    """``tar --sort=name -cf - . | gzip -6 | wc -c``"""
    zstd: int | None
    """``tar ... | zstd -3 | wc -c``; ``None`` without the zstandard package."""
    zip: int
    """``zip -6 -r`` of the prefix's contents."""


@dataclass(frozen=True)
class Compressed:
    """What the prefix costs compressed, before and after the shrink (JSON ``compressed``)."""

    before: Sizes
    after: Sizes


def measure(scan: Scan, removed: bytearray | None = None,
            replaced: Mapping[int, Source] | None = None,
            added: Sequence[Added] = ()) -> Sizes:
    """Compress the scanned prefix as it is, or as it will be: without the entries
    ``removed`` marks, with ``replaced`` contents, plus ``added`` entries (put at the end
    of the archive)."""
    zstd = _zstd_compressor()
    sinks: list[_Sink] = [_Stream(zlib.compressobj(6, zlib.DEFLATED, 31))]
    if zstd is not None:
        sinks.append(_Stream(zstd))
    zipper = _Zip()
    with ThreadPoolExecutor(max_workers=len(sinks) + 1) as pool:
        feeders = [_Feeder(pool, sink) for sink in (*sinks, zipper)]
        tar_feeds, zip_feed = feeders[:-1], feeders[-1]
        try:
            _write_tar(scan, removed, replaced or {}, added, tar_feeds, zip_feed)
        finally:
            results = [feeder.close() for feeder in feeders]
    return Sizes(results[0], results[1] if zstd is not None else None, results[-1])


def stripped_copies(scan: Scan, indices: Sequence[int], mode: str, directory: str,
                    jobs: int | None = None) -> dict[int, Source]:
    """Stripped copies of the files at ``indices`` written into ``directory`` (outside
    the prefix) with the same ``strip`` the shrink runs: what the audit's "after"
    archive holds. Empty when ``strip`` is missing (the report already says so)."""
    try:
        program = strip.find_tool()
    except StripToolMissing:
        return {}

    def one(index: int) -> tuple[int, str] | None:
        target = os.path.join(directory, str(index))
        source = os.path.join(scan.prefix, scan.paths[index])
        run = subprocess.run([program, strip.flag(source, mode), "-o", target, source],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, check=False)
        return (index, target) if run.returncode == 0 else None

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        return dict(r for r in pool.map(one, indices) if r is not None)


def temporary_directory() -> tempfile.TemporaryDirectory[str]:
    """Where :func:`stripped_copies` may write, outside any prefix."""
    return tempfile.TemporaryDirectory(prefix="shrinkconda-compressed-")


def _zstd_compressor() -> Any:
    try:
        import zstandard  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return zstandard.ZstdCompressor(level=3).compressobj()


def _order(scan: Scan, removed: bytearray | None) -> Iterator[int]:
    """Entries in ``tar --sort=name`` order: depth first, siblings by their bytes."""
    stack = [0]
    while stack:
        index = stack.pop()
        if removed is not None and removed[index]:
            continue
        yield index
        if scan.kinds[index] == DIR:
            children = sorted(scan.children(index),
                              key=lambda c: os.fsencode(scan.name(c)), reverse=True)
            stack.extend(children)


def _write_tar(scan: Scan, removed: bytearray | None, replaced: Mapping[int, Source],
               added: Sequence[Added], tar_feeds: list[_Feeder], zip_feed: _Feeder) -> None:
    _Archive(scan, removed, replaced, tar_feeds, zip_feed).write(added)


_Key = Optional[tuple[Any, ...]]
"""What makes two zip members' bytes the same: the inode, or the replacement's index."""


class _Archive:
    """One pass over the prefix, feeding the tar stream and the zip's members."""

    def __init__(self, scan: Scan, removed: bytearray | None, replaced: Mapping[int, Source],
                 tar_feeds: list[_Feeder], zip_feed: _Feeder) -> None:
        self.scan, self.removed, self.replaced = scan, removed, replaced
        self.tar_feeds, self.zip_feed = tar_feeds, zip_feed
        self.written = 0
        self.first_link: dict[tuple[int, int], str] = {}
        self.zipped: set[tuple[Any, ...]] = set()
        """Keys whose bytes the zip has deflated: another link is the same size again."""

    def write(self, added: Sequence[Added]) -> None:
        for index in _order(self.scan, self.removed):
            self._entry(index)
        for extra in added:
            self._added(extra)
        self._emit(bytes(2 * _BLOCK))
        self._emit(bytes(-self.written % _RECORD))

    def _gone(self, index: int) -> bool:
        return self.removed is not None and bool(self.removed[index])

    def _emit(self, data: bytes) -> None:
        self.written += len(data)
        for feed in self.tar_feeds:
            feed.put(data)

    def _entry(self, index: int) -> None:
        relpath = self.scan.paths[index]
        path = os.path.join(self.scan.prefix, relpath)
        try:
            st = os.lstat(path)
        except OSError:
            return  # vanished since the scan
        name = f"./{relpath}" if relpath else "."
        info = _tarinfo(name, st)
        source: Source | None = self.replaced.get(index)
        key: tuple[Any, ...] = ("replaced", index) if source is not None else \
            (st.st_dev, st.st_ino)
        if info.type == tarfile.REGTYPE and source is None and st.st_nlink > 1:
            first = self.first_link.setdefault((st.st_dev, st.st_ino), name)
            if first != name:
                info.type, info.linkname = tarfile.LNKTYPE, first
        if info.type == tarfile.REGTYPE:
            source = path if source is None else source
            info.size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
        elif info.type == tarfile.SYMTYPE:
            info.linkname = os.readlink(path)
        elif info.type not in (tarfile.DIRTYPE, tarfile.LNKTYPE):
            return  # sockets, fifos, devices: not in a conda prefix worth archiving
        self._emit(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
        if info.type == tarfile.REGTYPE and source is not None:
            zip_too = bool(relpath) and key not in self.zipped
            if zip_too:
                self.zip_feed.put((_Zip.BEGIN, len(os.fsencode(relpath))))
            for chunk in _chunks(source):
                self._emit(chunk)
                if zip_too:
                    self.zip_feed.put(chunk)
            self._emit(bytes(-info.size % _BLOCK))
            if zip_too:
                self.zip_feed.put((_Zip.END, key))
                self.zipped.add(key)
            elif relpath:
                self.zip_feed.put((_Zip.AGAIN, len(os.fsencode(relpath)), key))
        elif relpath:
            self._zip_member(relpath, index, info)

    def _zip_member(self, relpath: str, index: int, info: tarfile.TarInfo) -> None:
        """What ``zip -r`` adds for an entry with no bytes of its own in the tar."""
        name = len(os.fsencode(relpath))
        if info.type == tarfile.DIRTYPE:
            self.zip_feed.put((_Zip.ENTRY, name + 1, 0))
        elif info.type == tarfile.LNKTYPE:
            scan = self.scan
            self._zip_file(name, (scan.devs[index], scan.inos[index]),
                           os.path.join(scan.prefix, relpath))
        else:
            self._follow(relpath, _inside(self.scan, os.path.realpath(
                os.path.join(self.scan.prefix, relpath))))

    def _follow(self, relpath: str, target: str | None) -> None:
        """``zip -r`` follows symlinks: a file's bytes, or a directory's tree again under
        the link's name (links inside it to directories are not followed: no loops).
        Dangling links, and links to what the shrink removes, are skipped, as zip does."""
        top = None if target is None else self.scan.find(target)
        if top is None or self._gone(top):
            return
        scan = self.scan
        cut = len(scan.paths[top])
        for index in range(top, scan.ends[top] if scan.kinds[top] == DIR else top + 1):
            if self._gone(index):
                continue
            name = len(os.fsencode(relpath + scan.paths[index][cut:]))
            kind = scan.kinds[index]
            if kind == DIR:
                self.zip_feed.put((_Zip.ENTRY, name + 1, 0))
            elif kind == FILE:
                source = self.replaced.get(index)
                key = ("replaced", index) if source is not None else \
                    (scan.devs[index], scan.inos[index])
                self._zip_file(name, key, source or os.path.join(scan.prefix, scan.paths[index]))
            elif kind == SYMLINK and index != top:
                inner = _inside(scan, os.path.realpath(os.path.join(scan.prefix, scan.paths[index])))
                found = None if inner is None else scan.find(inner)
                if found is not None and scan.kinds[found] == FILE and not self._gone(found):
                    self._follow(relpath + scan.paths[index][cut:], inner)

    def _zip_file(self, name: int, key: _Key, source: Source) -> None:
        if key is not None and key in self.zipped:
            self.zip_feed.put((_Zip.AGAIN, name, key))
            return
        self.zip_feed.put((_Zip.BEGIN, name))
        for chunk in _chunks(source):
            self.zip_feed.put(chunk)
        self.zip_feed.put((_Zip.END, key))
        if key is not None:
            self.zipped.add(key)

    def _added(self, extra: Added) -> None:
        info = tarfile.TarInfo(f"./{extra.path}")
        name = len(os.fsencode(extra.path))
        if extra.kind == "dir":
            info.type, info.mode, info.name = tarfile.DIRTYPE, 0o755, info.name + "/"
            self._emit(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
            self.zip_feed.put((_Zip.ENTRY, name + 1, 0))
        elif extra.kind == "symlink":
            info.type, info.mode = tarfile.SYMTYPE, 0o777
            info.linkname = os.fsdecode(extra.data)
            self._emit(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
            self._follow(extra.path, _inside(self.scan, os.path.normpath(os.path.join(
                self.scan.prefix, os.path.dirname(extra.path), info.linkname))))
        else:
            info.size, info.mode = len(extra.data), 0o644
            self._emit(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
            self._emit(extra.data + bytes(-len(extra.data) % _BLOCK))
            self._zip_file(name, None, extra.data)


def _inside(scan: Scan, path: str) -> str | None:
    """``path`` relative to the prefix, or ``None`` when it lies outside."""
    relpath = os.path.relpath(path, scan.prefix)
    return None if relpath == ".." or relpath.startswith("../") else \
        ("" if relpath == "." else relpath)


def _tarinfo(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname, info.gname = _user(st.st_uid), _group(st.st_gid)
    info.mtime = int(st.st_mtime)
    info.size = 0
    fmt = stat.S_IFMT(st.st_mode)
    info.type = {stat.S_IFREG: tarfile.REGTYPE, stat.S_IFDIR: tarfile.DIRTYPE,
                 stat.S_IFLNK: tarfile.SYMTYPE}.get(fmt, tarfile.FIFOTYPE)
    if fmt == stat.S_IFDIR and not name.endswith("/"):
        info.name = name + "/" if name != "." else "./"
    return info


@cache
def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@cache
def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def _chunks(source: Source) -> Iterator[bytes]:
    if isinstance(source, bytes):
        yield source
        return
    with open(source, "rb") as f:
        yield from iter(lambda: f.read(_CHUNK), b"")


class _Sink:
    """A consumer of a stream of items, run in a thread of its own."""

    def consume(self, items: list[Any]) -> None:
        raise NotImplementedError

    def total(self) -> int:
        raise NotImplementedError


class _Stream(_Sink):
    """One compressor over the whole tar stream, counting what comes out."""

    def __init__(self, compressor: Any) -> None:
        self._compressor = compressor
        self._length = 0

    def consume(self, items: list[Any]) -> None:
        self._length += len(self._compressor.compress(b"".join(items)))

    def total(self) -> int:
        return self._length + len(self._compressor.flush())


class _Zip(_Sink):
    """``zip -6``: each file deflated on its own (empty ones stored).

    Items: ``(BEGIN, name_length)``, the file's chunks, ``(END, inode or None)``;
    ``(AGAIN, name_length, inode)`` for another link of an inode already compressed;
    ``(ENTRY, name_length, data_length)`` for an entry with nothing to compress.
    """

    BEGIN, END, AGAIN, ENTRY = "begin", "end", "again", "entry"

    def __init__(self) -> None:
        self._length = _ZIP_END
        self._linked: dict[Any, int] = {}
        """Inode -> its compressed length, so each hard-linked file is deflated once."""
        self._name = self._raw = self._packed = 0
        self._deflate: Any = None

    def consume(self, items: list[Any]) -> None:
        for item in items:
            if isinstance(item, bytes):
                self._raw += len(item)
                self._packed += len(self._deflate.compress(item))
            elif item[0] == self.BEGIN:
                self._name, self._raw, self._packed = item[1], 0, 0
                self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
            elif item[0] == self.END:
                self._packed += len(self._deflate.flush())
                data = self._packed if self._raw else 0  # zip keeps deflate even if it is larger
                self._length += _ZIP_LOCAL + _ZIP_CENTRAL + 2 * self._name + data
                if item[1] is not None:
                    self._linked[item[1]] = data
            elif item[0] == self.AGAIN:
                self._length += _ZIP_LOCAL + _ZIP_CENTRAL + 2 * item[1] + self._linked[item[2]]
            else:
                self._length += _ZIP_LOCAL + _ZIP_CENTRAL + 2 * item[1] + item[2]

    def total(self) -> int:
        return self._length


class _Feeder:
    """Batches items for one sink and hands them to its thread through a short queue."""

    def __init__(self, pool: ThreadPoolExecutor, sink: _Sink) -> None:
        self._sink = sink
        self._queue: queue.Queue[list[Any] | None] = queue.Queue(maxsize=8)
        self._batch: list[Any] = []
        self._bytes = 0
        self._future = pool.submit(self._run)

    def put(self, item: Any) -> None:
        self._batch.append(item)
        self._bytes += len(item) if isinstance(item, bytes) else 64
        if self._bytes >= _CHUNK:
            self._send(self._batch)
            self._batch, self._bytes = [], 0

    def close(self) -> int:
        self._send(self._batch)
        self._send(None)
        return int(self._future.result())

    def _send(self, items: list[Any] | None) -> None:
        while True:  # a sink that died must not leave the producer blocked on its queue
            try:
                self._queue.put(items, timeout=0.5)
                return
            except queue.Full:
                if self._future.done():
                    self._future.result()
                    return

    def _run(self) -> int:
        while True:
            items = self._queue.get()
            if items is None:
                return self._sink.total()
            self._sink.consume(items)
