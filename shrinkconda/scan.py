"""Walk a conda prefix once and record what every entry in it is."""

from __future__ import annotations

import json
import os
import stat
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional

from shrinkconda.errors import PrefixError

STATE_DIR = ".shrinkconda"
"""Exists inside a prefix only while a shrink is under way (see :mod:`shrinkconda.transaction.journal`)."""
TEMP_SUFFIX = ".shrinkconda-strip"
"""Temporary files beside their originals (stripped copies, dedup links) are named
``.<name>.<random>`` plus this, so that a crash's leftovers can be found."""

#: Entry kinds, as stored in :attr:`Scan.kinds`.
FILE, DIR, SYMLINK, OTHER = 0, 1, 2, 3
KIND_NAMES = ("file", "dir", "symlink", "other")

#: What the first bytes of a file say it is, as stored in :attr:`Scan.magic`.
MAGIC_NONE, MAGIC_ELF, MAGIC_AR = 0, 1, 2
_ELF_MAGIC = b"\x7fELF"
_AR_MAGIC = b"!<arch>\n"

Progress = Optional[Callable[[int], None]]
"""A callback told how many more entries have been done; ``None`` for silence."""


@dataclass(frozen=True)
class Problem:
    """A path that could not be handled, and why; problems are reported, never fatal."""

    path: str
    """Path relative to the prefix ("" for the prefix itself)."""
    message: str
    """What went wrong, in words a user can act on."""


class Entry(NamedTuple):
    """One scanned entry, materialised on demand from the scan's columns."""

    position: int
    """Index in the scan; a directory's subtree is ``position + 1 .. end``."""
    path: str
    """Path relative to the prefix, ``/``-separated; "" is the prefix itself."""
    kind: str
    """``file``, ``dir``, ``symlink`` or ``other``."""
    size: int
    """Apparent size (``st_size``), what ``du -b`` counts."""
    allocated: int
    """Bytes allocated on disk (``st_blocks * 512``), what ``du`` counts."""
    dev: int
    """Device number; with ``ino`` the identity of the inode."""
    ino: int
    """Inode number."""
    nlink: int
    """Hard-link count, including links outside the prefix."""
    mode: int
    """``st_mode`` from ``lstat``."""
    owner: str | None
    """The conda package (``conda-meta`` record name) that installed it, if any."""
    is_elf: bool
    """The file starts with the ELF magic bytes."""
    is_ar: bool
    """The file starts with the ``ar`` archive magic bytes."""
    end: int
    """One past the last index of this entry's subtree."""


class Scan:
    """Everything one walk of a prefix learned, stored column-wise.

    Columns instead of one object per entry keep a million-file prefix within a few
    hundred bytes per entry. Entries are in depth-first pre-order, so the subtree of
    entry ``i`` is exactly ``range(i, ends[i])``. Treat a scan as immutable.
    """

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        """The prefix, absolute and resolved."""
        self.paths: list[str] = []
        self.kinds = array("b")
        self.sizes = array("q")
        self.allocated = array("q")
        self.devs = array("Q")
        self.inos = array("Q")
        self.nlinks = array("I")
        self.modes = array("I")
        self._owners: array[int] | None = None
        self.magic = array("b")
        self.parents = array("i")
        self.ends = array("i")
        self.owner_names: list[str] = []
        """Names of the readable ``conda-meta`` records (``name-version-build``)."""
        self.problems: list[Problem] = []

    @property
    def owners(self) -> array[int]:
        """Per entry, the index into :attr:`owner_names` of the package that installed
        it, or -1. Worked out on first use: no strategy needs it, and mapping a million
        paths from ``conda-meta`` costs a dict as large as the scan itself."""
        if self._owners is None:
            by_path = _record_files(self.prefix, self.owner_names)
            self._owners = array("i", (by_path.get(p, -1) for p in self.paths))
        return self._owners

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Entry:
        owner = self.owners[index]
        magic = self.magic[index]
        return Entry(
            index,
            self.paths[index],
            KIND_NAMES[self.kinds[index]],
            self.sizes[index],
            self.allocated[index],
            self.devs[index],
            self.inos[index],
            self.nlinks[index],
            self.modes[index],
            self.owner_names[owner] if owner >= 0 else None,
            magic == MAGIC_ELF,
            magic == MAGIC_AR,
            self.ends[index],
        )

    def __iter__(self) -> Iterator[Entry]:
        return (self[i] for i in range(len(self.paths)))

    def children(self, index: int) -> Iterator[int]:
        """Indices of the direct children of directory ``index``."""
        child, end = index + 1, self.ends[index]
        while child < end:
            yield child
            child = self.ends[child]

    def find(self, relpath: str) -> int | None:
        """Index of the entry at ``relpath`` (``a/b/c``), or ``None``; cost is O(siblings)."""
        index = 0
        for part in relpath.strip("/").split("/") if relpath.strip("/") else []:
            for child in self.children(index):
                if self.paths[child].rpartition("/")[2] == part:
                    index = child
                    break
            else:
                return None
        return index

    def name(self, index: int) -> str:
        """The last component of the entry's path."""
        return self.paths[index].rpartition("/")[2]


def check_prefix(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` resolved if it is a conda prefix we may touch, else raise."""
    prefix = Path(path).expanduser()
    if not prefix.exists():
        raise PrefixError(f"{prefix}: no such directory")
    if not prefix.is_dir():
        raise PrefixError(f"{prefix}: not a directory; give the path of a conda prefix")
    prefix = prefix.resolve()
    if prefix == Path(prefix.anchor):
        raise PrefixError(f"{prefix}: refusing to work on the filesystem root")
    if prefix == Path.home().resolve():
        raise PrefixError(f"{prefix}: refusing to work on the home directory itself")
    if not (prefix / "conda-meta").is_dir():
        raise PrefixError(
            f"{prefix}: not a conda prefix (no conda-meta/ directory); "
            "give the environment's root, e.g. $CONDA_PREFIX"
        )
    return prefix


def scan(path: str | os.PathLike[str], progress: Progress = None) -> Scan:
    """Walk the prefix at ``path`` once, never following symlinks or crossing mounts."""
    prefix = check_prefix(path)
    result = Scan(prefix)
    _check_records(prefix, result)
    root = os.lstat(prefix)
    _append(result, "", -1, root, DIR, MAGIC_NONE)
    _walk(result, prefix, root.st_dev, progress)
    return result


def _walk(
    result: Scan, prefix: Path, root_dev: int, progress: Progress
) -> None:
    """Fill ``result`` in depth-first pre-order; subtrees end up contiguous.

    This loop runs once per entry of the prefix, so it binds the column appends to
    locals and classifies inline: a million entries make every attribute lookup count.
    """
    paths, problems = result.paths, result.problems
    add_path, add_kind, add_size = paths.append, result.kinds.append, result.sizes.append
    add_allocated, add_dev = result.allocated.append, result.devs.append
    add_ino, add_nlink, add_mode = result.inos.append, result.nlinks.append, result.modes.append
    add_magic = result.magic.append
    add_parent, add_end = result.parents.append, result.ends.append
    ends = result.ends
    stack: list[tuple[Iterator[os.DirEntry[str]], int, str]] = []
    # A transaction's own state is handled before any scan and is never an entry.
    listing = [e for e in _list_dir(result, str(prefix), "") or [] if e.name != STATE_DIR]
    stack.append((iter(listing), 0, ""))
    reported = 0
    while stack:
        entries, parent, base = stack[-1]
        for entry in entries:
            relpath = base + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                problems.append(Problem(relpath, f"cannot stat: {exc.strerror}"))
                continue
            mode = st.st_mode
            fmt = stat.S_IFMT(mode)
            magic = MAGIC_NONE
            if fmt == stat.S_IFREG:
                kind = FILE
                name = entry.name
                # Reading every file's first bytes would double the walk's cost: ELF
                # objects are executables or named like shared objects, archives *.a.
                if st.st_size >= 8 and (mode & 0o111 or name.endswith((".so", ".a"))
                                        or ".so." in name):
                    magic = _magic(entry.path)
            elif fmt == stat.S_IFDIR:
                kind = DIR
            elif fmt == stat.S_IFLNK:
                kind = SYMLINK
            else:
                kind = OTHER
            index = len(paths)
            add_path(relpath)
            add_kind(kind)
            add_size(st.st_size)
            add_allocated(st.st_blocks * 512)
            add_dev(st.st_dev)
            add_ino(st.st_ino)
            add_nlink(st.st_nlink)
            add_mode(mode)
            add_magic(magic)
            add_parent(parent)
            add_end(index + 1)
            if kind == DIR:
                if st.st_dev != root_dev:
                    problems.append(Problem(relpath, "a mount point; not scanned"))
                    continue
                children = _list_dir(result, entry.path, relpath)
                if children:
                    stack.append((iter(children), index, relpath + "/"))
                    break
        else:
            stack.pop()
            ends[parent] = len(paths)
            if progress is not None:
                progress(len(paths) - reported)
                reported = len(paths)


def _list_dir(result: Scan, path: str, relpath: str) -> list[os.DirEntry[str]] | None:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError as exc:
        result.problems.append(Problem(relpath, f"cannot read directory: {exc.strerror}"))
        return None


def _magic(path: str) -> int:
    """What a file's first bytes say it is."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return MAGIC_NONE
    if head.startswith(_ELF_MAGIC):
        return MAGIC_ELF
    return MAGIC_AR if head == _AR_MAGIC else MAGIC_NONE


def _append(
    result: Scan, relpath: str, parent: int, st: os.stat_result, kind: int, magic: int
) -> None:
    result.paths.append(relpath)
    result.kinds.append(kind)
    result.sizes.append(st.st_size)
    result.allocated.append(st.st_blocks * 512)
    result.devs.append(st.st_dev)
    result.inos.append(st.st_ino)
    result.nlinks.append(st.st_nlink)
    result.modes.append(st.st_mode)
    result.magic.append(magic)
    result.parents.append(parent)
    result.ends.append(len(result.paths))


def _check_records(prefix: Path, result: Scan) -> None:
    """Name the readable ``conda-meta`` records; report the others, whose files will
    count as unowned."""
    for record in sorted((prefix / "conda-meta").glob("*.json")):
        try:
            doc = json.loads(record.read_bytes())
            why = "" if isinstance(doc, dict) and isinstance(doc.get("files", []), list) \
                else "not a package record"
        except (OSError, ValueError) as exc:
            why = str(exc)
        if why:
            result.problems.append(Problem(
                f"conda-meta/{record.name}",
                f"unreadable package record, its files are treated as unowned: {why}"))
            continue
        result.owner_names.append(record.stem)


def _record_files(prefix: Path, names: list[str]) -> dict[str, int]:
    """Each path the named records list, mapped to the record's index in ``names``."""
    owners: dict[str, int] = {}
    for owner, name in enumerate(names):
        try:
            files = json.loads((prefix / "conda-meta" / f"{name}.json").read_bytes())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # changed since the scan: its files count as unowned
        for relpath in files:
            if isinstance(relpath, str):
                owners[relpath] = owner
    return owners
