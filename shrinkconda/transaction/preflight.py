"""Before a shrink changes anything: may it write where it must, and is there room?

A shrink mostly renames (same filesystem: no data moves), but it writes too: stripped
copies beside their originals until the swap, its journal (twice, briefly, when it
replaces it), entries in the staging directory, and the rewritten ``conda-meta``
records. Each phase that writes declares a :class:`Need`; :func:`check` refuses the
shrink when the prefix's filesystem has less free space or fewer free inodes than the
needs add up to, before a lock file or directory exists. A phase added later (one that
writes new files) appends its own :class:`Need`, naming the option that skips it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shrinkconda.errors import FilesystemError, NoRoomError
from shrinkconda.plan import Plan
from shrinkconda.scan import DIR, Scan
from shrinkconda.units import human

BLOCK = 4096
"""What a small write costs at least on the common filesystems (ext4, xfs, tmpfs)."""
HEADROOM = 1 << 20
"""Bytes kept free on top of the estimate: directory blocks, filesystem metadata."""
_STEP_BYTES = 96
"""Journal bytes per staged path beyond the path itself (the staged and temporary
names, JSON punctuation), and about what its staging directory entry costs."""


@dataclass(frozen=True)
class Need:
    """The room one phase of a shrink takes on the prefix's filesystem while it runs."""

    phase: str
    """The phase's name as the report shows it (``strip``, ``staging``)."""
    purpose: str
    """What the room is for, for the message (``stripped copies``)."""
    size: int
    """Bytes it writes at most, rounded up to blocks."""
    inodes: int = 0
    """Files and links it creates at most."""
    skip: str = ""
    """How to do without it (``pass --no-strip``); empty if it cannot be skipped."""
    dirs: tuple[str, ...] = ()
    """Directories (relative) it writes into, which this user must be able to change."""
    steps: tuple[str, ...] = ()
    """The paths (relative) it asks the transaction to stage, for the journal."""


def needs(the_plan: Plan, phases: Sequence[Need] = ()) -> list[Need]:
    """The room of the shrink ``the_plan`` (journal, staging, the commit), with each
    phase's own :class:`Need` (stripped copies, compiled bytecode, links)."""
    scan_ = the_plan.scan
    paths = [scan_.paths[i] for i in the_plan.roots()]
    paths += [p for need in phases for p in need.steps]
    journal = sum(len(p.encode(errors="surrogateescape")) + _STEP_BYTES for p in paths)
    return [Need("staging", "the journal and the staging directory",
                 2 * blocks(journal) + blocks(len(paths) * _STEP_BYTES) + HEADROOM, 4),
            Need("commit", "rewritten conda-meta records and history",
                 blocks(_largest_record(scan_)) + blocks(journal), 2),
            *(need for need in phases if need.size or need.inodes)]


def check_writable(root: Path) -> None:
    """Refuse a prefix on a read-only filesystem, or one this user cannot write."""
    if os.statvfs(root).f_flag & os.ST_RDONLY:
        raise FilesystemError(
            f"{root} is on a read-only filesystem, and a shrink changes it: remount it "
            f"read-write or shrink a writable copy (shrinkconda audit works read-only)")
    if not _writable(root):
        raise FilesystemError(
            f"{root} is not writable by this user (uid {os.geteuid()}; it belongs to uid "
            f"{root.stat().st_uid}): run shrinkconda as the prefix's owner")


def check(root: Path, the_plan: Plan, wanted: Sequence[Need]) -> None:
    """Refuse the shrink, changing nothing, if a directory it must change is not
    writable or the filesystem lacks the room ``wanted`` adds up to."""
    locked = unwritable(the_plan, [d for need in wanted for d in need.dirs])
    if locked:
        more = f" (and {len(locked) - 1} more)" if len(locked) > 1 else ""
        raise FilesystemError(
            f"{root / locked[0]}{more} is not writable by this user (uid {os.geteuid()}), "
            f"and the shrink would move files out of it: run shrinkconda as the prefix's "
            f"owner, or pass --keep '{locked[0]}' to leave it alone")
    short = shortfall(root, wanted)
    if short:
        raise NoRoomError(short)


def refusal(root: Path, the_plan: Plan, wanted: Sequence[Need]) -> str | None:
    """For an audit (a CI pre-flight): why a shrink of this prefix would be refused, in
    the words the shrink would use; ``None`` when the checks up front would pass. The
    same checks, in the same order: the prefix writable, then every directory the shrink
    must change, then the room."""
    try:
        check_writable(root)
        check(root, the_plan, wanted)
    except FilesystemError as exc:
        return str(exc)
    return None


def notes(refused: str | None) -> tuple[str, ...]:
    """The audit's note for :func:`refusal`'s answer."""
    return (f"a shrink would be refused: {refused}",) if refused else ()


def shortfall(root: Path, wanted: Sequence[Need]) -> str | None:
    """What is missing on ``root``'s filesystem for ``wanted``, as a message; ``None``
    when it fits."""
    st = os.statvfs(root)
    free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
    size = sum(n.size for n in wanted)
    inodes = sum(n.inodes for n in wanted)
    skips = [n.skip for n in wanted if n.skip and (n.size or n.inodes)]
    hint = f"free space or {' or '.join(skips)}" if skips else "free space"
    if size > free:
        biggest = max(wanted, key=lambda n: n.size)
        return (f"no space left on {root}'s filesystem: the {biggest.phase} phase needs "
                f"{human(biggest.size)} for {biggest.purpose} (the shrink {human(size)} in "
                f"all), {human(free)} are free; {hint}")
    # Filesystems without an inode table (btrfs) report none at all.
    if st.f_files and inodes > st.f_favail:
        return (f"no free inodes left on {root}'s filesystem: the shrink creates up to "
                f"{inodes:,} files, {st.f_favail:,} inodes are free; delete files or "
                f"{' or '.join(skips) or 'use a filesystem with more inodes'}")
    return None


def unwritable(the_plan: Plan, written: Iterable[str] = ()) -> list[str]:
    """The directories (relative) this user may not change that the shrink must change:
    the parents of what it removes, those the phases write into (``written``), and the
    directories it moves."""
    scan_ = the_plan.scan
    dirs = set(written)
    for index in the_plan.roots():
        dirs.add(os.path.dirname(scan_.paths[index]))
        if scan_.kinds[index] == DIR:
            dirs.add(scan_.paths[index])  # moving it rewrites its ".." entry
    return sorted(d for d in dirs if not _writable(Path(scan_.prefix) / d))


def _writable(path: Path) -> bool:
    """Whether the permission bits let this user change ``path``, a directory. Not
    :func:`os.access`: it also says no for an immutable directory, whose entries the
    transaction leaves in place and reports, as before."""
    uid = os.geteuid()
    if uid == 0:
        return True
    try:
        st = path.stat()
    except OSError:
        return True  # gone: the shrink says so itself
    if st.st_uid == uid:
        bits = st.st_mode >> 6
    elif st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & 0o3 == 0o3


def _largest_record(scan_: Scan) -> int:
    return max((scan_.sizes[i] for i in _records(scan_)), default=0)


def _records(scan_: Scan) -> Iterable[int]:
    return (i for i, p in enumerate(scan_.paths)
            if p.startswith("conda-meta/") and p.endswith(".json")
            and stat.S_ISREG(scan_.modes[i]))


def blocks(size: int) -> int:
    """``size`` rounded up to whole blocks, as a write of it takes them at least."""
    return -(-size // BLOCK) * BLOCK
