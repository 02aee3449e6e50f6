"""Who owns the bytes: each entry of a scan attributed to a conda package, a pip
distribution, or nobody, and a shrink's savings split the same way."""

from __future__ import annotations

import csv
import io
import posixpath
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

from shrinkconda.accounting import Charge
from shrinkconda.cacheview import VIEWS
from shrinkconda.scan import DIR, FILE, Scan

UNOWNED = "(unowned)"
"""The row of files no ``conda-meta`` record and no ``RECORD`` claims."""

_NONE, _MIXED = -2, -3
"""Directory states while owners are worked out bottom-up."""


@dataclass(frozen=True)
class Group:
    """Something entries belong to: a conda package, a pip distribution, or nobody."""

    name: str
    """``numpy``, ``(pip: requests)``, ``(unowned)``."""
    version: str
    kind: str
    """``conda``, ``pip`` or ``unowned``."""
    stem: str = ""
    """A conda package's record name (``name-version-build``)."""


@dataclass(frozen=True)
class Package:
    """One row of ``--by package``: what a group holds and what the shrink frees from it."""

    name: str
    version: str
    kind: str
    size: int
    """Apparent bytes, each inode once (``du -sb`` of the group's share)."""
    bytes_saved: int
    """What the shrink takes off it, all strategies, strip and ``conda-meta`` included."""
    strategies: dict[str, int] = field(default_factory=dict)
    """Bytes saved per strategy (report line name), only those that saved or cost bytes."""

    @property
    def stays(self) -> int:
        return self.size - self.bytes_saved


@dataclass(frozen=True)
class Tally:
    """A shrink's bytes by owner, and where each freed or rewritten inode was counted."""

    rows: tuple[Package, ...]
    """One per group that holds or frees bytes, largest first."""
    fates: dict[int, str]
    """Scan index -> the report line (strategy or phase) whose step freed, shrank or
    rewrote that entry's inode; entries absent here stay as they are."""
    removed: bytearray
    """Per scan entry, 1 if the shrink takes its path away (removed, or replaced by a
    link to another inode)."""
    after: dict[int, int]
    """Scan index -> apparent size of the file that replaces it (stripped, recompiled,
    rewritten)."""


@dataclass(frozen=True)
class Attribution:
    """Per scan entry, the group that owns its bytes."""

    groups: tuple[Group, ...]
    owner: array  # type: ignore[type-arg]
    """Per entry, an index into :attr:`groups`. A hard-linked inode belongs to the group
    of its best-owned link (a conda package over a pip distribution over nobody), so a
    cache file in ``pkgs/`` linked to a package's file counts for the package."""


def attribute(scan: Scan) -> Attribution:
    """Work out every entry's owner; reads ``conda-meta`` (through the scan) and the
    ``RECORD`` of each ``*.dist-info`` no conda record owns. Call it before a commit
    rewrites ``conda-meta``."""
    groups = [Group(*_name_version(stem), "conda", stem) for stem in scan.owner_names]
    groups.append(Group(UNOWNED, "", "unowned"))
    unowned = len(groups) - 1
    owner = array("i", (o if o >= 0 else unowned for o in scan.owners))
    for index, stem in enumerate(scan.owner_names):  # a record belongs to its package
        found = scan.find(f"conda-meta/{stem}.json")
        if found is not None:
            owner[found] = index
    claims: dict[str, int] = {}
    for dist_info, name, version in _pip_distributions(scan, owner, unowned):
        groups.append(Group(f"(pip: {name})", version, "pip"))
        for path in _record_paths(scan, dist_info):
            claims.setdefault(path, len(groups) - 1)
    if claims:
        for index, path in enumerate(scan.paths):
            if owner[index] == unowned and path in claims:
                owner[index] = claims[path]
    _own_inodes(scan, owner, unowned)
    _own_directories(scan, owner, unowned)
    return Attribution(tuple(groups), owner)


def tally(attribution: Attribution, scan: Scan, charges: Iterable[Charge]) -> Tally:
    """Each group's size and savings, largest first: the report's own charges (see
    :func:`~shrinkconda.outcome.report`) grouped by owner, so the sizes add up to
    ``size_before`` and the savings to ``bytes_saved``, line by line."""
    owner = attribution.owner
    sizes = [0] * len(attribution.groups)
    seen: set[tuple[int, int]] = set()
    for index in range(len(scan)):
        if scan.kinds[index] != DIR and scan.nlinks[index] > 1:
            key = (scan.devs[index], scan.inos[index])
            if key in seen:
                continue
            seen.add(key)
        sizes[owner[index]] += scan.sizes[index]
    saved: list[dict[str, int]] = [{} for _ in attribution.groups]
    fates: dict[int, str] = {}
    after: dict[int, int] = {}
    removed = bytearray(len(scan))
    new_owner = _NewOwner(scan, attribution)
    for item in charges:
        if item.index < 0:
            group = new_owner(item.path)
        else:
            group = owner[item.index]
            if item.after is not None:
                fates[item.index] = item.line
                after[item.index] = item.after
            else:
                removed[item.index] = 1
                if item.bytes and scan.kinds[item.index] != DIR:
                    fates[item.index] = item.line
        if item.bytes:
            saved[group][item.line] = saved[group].get(item.line, 0) + item.bytes
    rows = [Package(g.name, g.version, g.kind, sizes[n], sum(saved[n].values()), saved[n])
            for n, g in enumerate(attribution.groups) if sizes[n] or saved[n]]
    return Tally(tuple(sorted(rows, key=lambda p: (-p.size, p.name))), fates, removed, after)


class _NewOwner:
    """The group a new entry's bytes belong to: a ``conda-meta/.shrinkconda/<record>/``
    view is that package's, compiled bytecode (``d/__pycache__/m.cpython-311.pyc``, a
    legacy ``d/m.pyc``) is its ``d/m.py``'s, anything else is the group of the entry the
    prefix had there (a link in a duplicate's place), else of the nearest directory above
    it that the prefix had (``(unowned)`` where several packages share it, as
    ``lib/python3.11`` or ``site-packages``). A new directory is, as a scanned one
    is, the one group's whose new files it holds: charge its files first."""

    def __init__(self, scan: Scan, attribution: Attribution) -> None:
        self._scan = scan
        self._attribution = attribution
        self._unowned = next(n for n, g in enumerate(attribution.groups)
                             if g.kind == "unowned")
        self._stems = {g.stem: n for n, g in enumerate(attribution.groups) if g.kind == "conda"}
        self._found: dict[str, int | None] = {}
        """Path -> scan index, or ``None``: phases add many files to one directory."""
        self._below: dict[str, set[int]] = {}
        """Path -> the groups of the new files below it so far."""

    def __call__(self, path: str) -> int:
        group = self._owner(path)
        parent = posixpath.dirname(path)
        while parent:
            self._below.setdefault(parent, set()).add(group)
            parent = posixpath.dirname(parent)
        return group

    def _owner(self, path: str) -> int:
        parts = path.split("/")
        if len(parts) > 2 and parts[:2] == ["conda-meta", VIEWS]:
            return self._stems.get(parts[2], self._unowned)
        if path.endswith(".pyc"):
            directory, _, name = path.rpartition("/")
            if directory.rpartition("/")[2] == "__pycache__":
                directory = posixpath.dirname(directory)
                name = name.split(".")[0] + ".pyc"
            source = self._find(posixpath.join(directory, name[:-1]))
            if source is not None:
                return int(self._attribution.owner[source])
        below = self._below.get(path, ())
        if len(below) == 1:
            return next(iter(below))
        found = self._find(path)
        while found is None:  # the prefix's root is found at last, and is nobody's
            path = posixpath.dirname(path)
            found = self._find(path)
        return int(self._attribution.owner[found])

    def _find(self, path: str) -> int | None:
        if path not in self._found:
            self._found[path] = self._scan.find(path)
        return self._found[path]


def _name_version(stem: str) -> tuple[str, str]:
    """``py-lib-1.2-h0_1`` -> ``("py-lib", "1.2")``: versions and builds hold no ``-``."""
    parts = stem.rsplit("-", 2)
    return (parts[0], parts[1]) if len(parts) == 3 else (stem, "")


def _pip_distributions(scan: Scan, owner: array, unowned: int  # type: ignore[type-arg]
                       ) -> list[tuple[int, str, str]]:
    """``(index of the dist-info dir, name, version)`` of each installed distribution
    whose ``RECORD`` no conda record owns (pip installs, ``setup.py develop`` leftovers)."""
    found = []
    for index, path in enumerate(scan.paths):
        if (path.endswith(".dist-info/RECORD") and scan.kinds[index] == FILE
                and owner[index] == unowned and not path.startswith(("pkgs/", "envs/"))):
            dist_info = scan.parents[index]
            stem = scan.name(dist_info)[: -len(".dist-info")]
            name, _, version = stem.partition("-")
            found.append((dist_info, name, version))
    return found


def _record_paths(scan: Scan, dist_info: int) -> set[str]:
    """The paths a ``*.dist-info/RECORD`` lists, relative to the prefix, with the
    dist-info directory's own files."""
    base = posixpath.dirname(scan.paths[dist_info])
    wanted = {scan.paths[i] for i in range(dist_info, scan.ends[dist_info])}
    try:
        with open(scan.prefix / scan.paths[dist_info] / "RECORD", "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except OSError:
        return wanted
    for row in csv.reader(io.StringIO(text)):
        if row and row[0]:
            path = posixpath.normpath(posixpath.join(base, row[0]))
            if not path.startswith(("../", "/")) and path != "..":
                wanted.add(path)
    return wanted


def _own_directories(scan: Scan, owner: array, unowned: int) -> None:  # type: ignore[type-arg]
    """A directory belongs to the one group owning what is owned below it, else nobody:
    ``site-packages/numpy`` is numpy's, ``lib`` (many packages) nobody's."""
    state = array("i", [_NONE]) * len(scan)
    kinds, parents = scan.kinds, scan.parents
    for index in range(len(scan) - 1, 0, -1):  # children come after their parents
        if kinds[index] == DIR:
            mine = state[index]
            owner[index] = mine if mine >= 0 else unowned
        else:
            mine = owner[index] if owner[index] != unowned else _NONE
        parent = parents[index]
        theirs = state[parent]
        if mine == _NONE or theirs == _MIXED:
            continue
        state[parent] = mine if theirs in (_NONE, mine) else _MIXED
    owner[0] = unowned


def _own_inodes(scan: Scan, owner: array, unowned: int) -> None:  # type: ignore[type-arg]
    """Give every link of a hard-linked inode the best owner among its links: a conda
    package, else a pip distribution, else nobody."""
    def rank(group: int) -> int:
        return 0 if group < unowned else 1 if group > unowned else 2

    best: dict[tuple[int, int], int] = {}
    linked = [i for i in range(len(scan)) if scan.kinds[i] != DIR and scan.nlinks[i] > 1]
    for index in linked:
        key = (scan.devs[index], scan.inos[index])
        current = best.get(key)
        if current is None or rank(owner[index]) < rank(current):
            best[key] = owner[index]
    for index in linked:
        owner[index] = best[(scan.devs[index], scan.inos[index])]
