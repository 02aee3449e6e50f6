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


@dataclass(frozen=True)
class Charge:
    """One entry's share of a report line, as an itemising :class:`Ledger` counted it."""

    line: str
    """The report line (strategy or phase) whose step it was."""
    index: int
    """Scan index of the entry removed or replaced; -1 for a new entry."""
    bytes: int
    """Apparent bytes that step saved: 0 for one link of an inode that stays, negative
    for a new entry or a replacement that grew."""
    after: int | None = None
    """For a replacement, the new file's apparent size."""
    path: str = ""
    """For a new entry, its path relative to the prefix, when known."""


_ONE_LINK = (1 << 24) + 1
"""One more link inside the prefix, not yet removed (no filesystem allows 2**24)."""
_REMAINING = (1 << 24) - 1


class Ledger:
    """The prefix's ``du -sb`` and ``du -s`` totals, updated as entries leave it.

    An inode leaves the prefix when its last link inside the prefix goes; removing one
    of several links saves nothing. Only multiply-linked files need a counter, so the
    ledger stays small even for a million files. With ``itemise`` it also keeps a
    :class:`Charge` per entry it counts (:attr:`charges`), for whoever splits the
    savings further (per package, per file).
    """

    def __init__(self, scan: Scan, itemise: bool = False) -> None:
        self._scan = scan
        self._itemise = itemise
        self.charges: list[Charge] = []
        """Every entry counted, in order; empty unless itemising."""
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

    def remove(self, indices: Iterable[int], *, line: str) -> Saving:
        """Account for removing the entries at ``indices`` (each at most once), for the
        report line ``line``."""
        return self._remove(indices, line if self._itemise else None)

    def _remove(self, indices: Iterable[int], line: str | None) -> Saving:
        """:meth:`remove`, itemised when ``line`` is given."""
        scan = self._scan
        kinds, nlinks, sizes, blocks = scan.kinds, scan.nlinks, scan.sizes, scan.allocated
        charges = self.charges
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
                    if line is not None:
                        charges.append(Charge(line, index, 0))
                    continue
                if nlinks[index] > inside:
                    outside += sizes[index]
            saved += sizes[index]
            saved_allocated += blocks[index]
            if line is not None:
                charges.append(Charge(line, index, sizes[index]))
        self.size -= saved
        self.allocated -= saved_allocated
        return Saving(files, saved, saved_allocated, outside)

    def remove_by_owner(self, indices: Iterable[int], *, line: str
                        ) -> tuple[Saving, dict[str, int]]:
        """:meth:`remove` package by package: the total, and the bytes each package gave
        up (files no package records under :data:`UNOWNED`)."""
        scan = self._scan
        groups: dict[int, list[int]] = {}
        for index in indices:
            groups.setdefault(scan.owners[index], []).append(index)
        total = Saving()
        per_package: dict[str, int] = {}
        for owner, group in sorted(groups.items()):
            saving = self.remove(group, line=line)
            total += saving
            if saving.bytes or any(scan.kinds[i] != DIR for i in group):
                per_package[scan.owner_names[owner] if owner >= 0 else UNOWNED] = saving.bytes
        return total, per_package

    def add(self, size: int, allocated: int, *, line: str, path: str = "") -> Saving:
        """Account for a new entry in the prefix, at ``path`` when known (it saves
        negative bytes)."""
        self.size += size
        self.allocated += allocated
        if self._itemise:
            self.charges.append(Charge(line, -1, -size, path=path))
        return Saving(0, -size, -allocated, 0)

    def replace(self, index: int, new_size: int, new_allocated: int, *, line: str) -> Saving:
        """Account for the file at ``index`` now being a new, singly-linked inode."""
        gone = self._remove((index,), None)
        self.size += new_size
        self.allocated += new_allocated
        if self._itemise:
            self.charges.append(Charge(line, index, gone.bytes - new_size, new_size))
        return Saving(0, gone.bytes - new_size, gone.allocated - new_allocated, gone.linked_outside)
