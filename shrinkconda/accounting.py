"""Byte accounting, as ``du`` does it: every inode in the prefix counted once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shrinkconda.scan import DIR, Scan

UNOWNED = "(no package)"
"""The package name :meth:`Ledger.remove_by_owner` gives files no package records."""


@dataclass(frozen=True)
class Saving:
    """What one stage of a shrink takes off the prefix."""

    files: int = 0
    """Non-directory entries removed."""
    bytes: int = 0
    """Apparent bytes the prefix shrinks by (``du -sb`` before minus after)."""
    allocated: int = 0
    """Allocated bytes the prefix shrinks by (``du -s``, in bytes)."""
    linked_outside: int = 0
    """Of ``bytes``, those whose inode is still linked from outside the prefix, so the
    disk does not get them back (a package cache elsewhere, a sibling environment)."""

    def __add__(self, other: Saving) -> Saving:
        return Saving(
            self.files + other.files,
            self.bytes + other.bytes,
            self.allocated + other.allocated,
            self.linked_outside + other.linked_outside,
        )


_ONE_LINK = (1 << 24) + 1
"""One more link inside the prefix, not yet removed (no filesystem allows 2**24)."""
_REMAINING = (1 << 24) - 1


class Ledger:
    """The prefix's ``du -sb`` and ``du -s`` totals, updated as entries leave it.

    An inode leaves the prefix when its last link inside the prefix goes; removing one
    of several links saves nothing. Only multiply-linked files need a counter, so the
    ledger stays small even for a million files.
    """

    def __init__(self, scan: Scan) -> None:
        self._scan = scan
        self._root_dev = scan.devs[0]
        self._links: dict[int, int] = {}
        """Inode key -> (links inside the prefix << 24) | links not yet removed. Packed
        into one small int, as the keys are: half a million hard-linked files is
        common in a base install, and each byte here is half a megabyte there."""
        size = allocated = 0
        kinds, nlinks, sizes, blocks = scan.kinds, scan.nlinks, scan.sizes, scan.allocated
        for index in range(len(scan)):
            if kinds[index] != DIR and nlinks[index] > 1:
                key = self._key(index)
                count = self._links.get(key)
                if count is not None:
                    self._links[key] = count + _ONE_LINK
                    continue
                self._links[key] = _ONE_LINK
            size += sizes[index]
            allocated += blocks[index]
        self.size_before = self.size = size
        """Apparent bytes, before and now."""
        self.allocated_before = self.allocated = allocated
        """Allocated bytes, before and now."""

    def _key(self, index: int) -> int:
        dev = self._scan.devs[index]
        ino = self._scan.inos[index]
        return ino if dev == self._root_dev else ((dev + 1) << 64) | ino

    def remove(self, indices: Iterable[int]) -> Saving:
        """Account for removing the entries at ``indices`` (each at most once)."""
        scan = self._scan
        kinds, nlinks, sizes, blocks = scan.kinds, scan.nlinks, scan.sizes, scan.allocated
        files = saved = saved_allocated = outside = 0
        for index in indices:
            if kinds[index] != DIR:
                files += 1
            if kinds[index] != DIR and nlinks[index] > 1:
                key = self._key(index)
                count = self._links[key] - 1
                self._links[key] = count
                remaining, inside = count & _REMAINING, count >> 24
                if remaining:
                    continue
                if nlinks[index] > inside:
                    outside += sizes[index]
            saved += sizes[index]
            saved_allocated += blocks[index]
        self.size -= saved
        self.allocated -= saved_allocated
        return Saving(files, saved, saved_allocated, outside)

    def remove_by_owner(self, indices: Iterable[int]) -> tuple[Saving, dict[str, int]]:
        """:meth:`remove` package by package: the total, and the bytes each package gave
        up (files no package records under :data:`UNOWNED`)."""
        scan = self._scan
        groups: dict[int, list[int]] = {}
        for index in indices:
            groups.setdefault(scan.owners[index], []).append(index)
        total = Saving()
        per_package: dict[str, int] = {}
        for owner, group in sorted(groups.items()):
            saving = self.remove(group)
            total += saving
            if saving.bytes or any(scan.kinds[i] != DIR for i in group):
                per_package[scan.owner_names[owner] if owner >= 0 else UNOWNED] = saving.bytes
        return total, per_package

    def add(self, size: int, allocated: int) -> Saving:
        """Account for a new file in the prefix (it saves negative bytes)."""
        self.size += size
        self.allocated += allocated
        return Saving(0, -size, -allocated, 0)

    def replace(self, index: int, new_size: int, new_allocated: int) -> Saving:
        """Account for the file at ``index`` now being a new, singly-linked inode."""
        gone = self.remove((index,))
        self.size += new_size
        self.allocated += new_allocated
        return Saving(0, gone.bytes - new_size, gone.allocated - new_allocated, gone.linked_outside)
