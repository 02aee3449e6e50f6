"""Make identical files one inode: the ``dedup`` phase, run after the removals and strip.

Not a removal: a duplicate path stays, as a hard link to a file with the same bytes,
mode and owner. The transaction stages each duplicate's original (hard-linked into
staging) and swaps in a temporary link beside it, so the path never goes missing and
a rollback puts the original back. Only inodes whose every link is inside the prefix
take part: linking an env file to one shared with a package cache or a sibling
environment would make them share a new inode, and the disk would get nothing back.

Nor do files that conda-pack reads and rewrites itself (files no record lists, those
with a prefix placeholder, the scripts of noarch packages, every file of a package with
a file at the top of the prefix, which it packs "uncached"): it writes such a file with
the tar header of the first path it saw with that inode, a hard link followed by data,
and tar cannot read the archive from there on.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Collection, Iterable, Sequence

from shrinkconda import condameta
from shrinkconda.phases.base import Link
from shrinkconda.scan import FILE, TEMP_SUFFIX, Problem, Scan

NAME = "dedup"
#: Never linked: records conda rewrites, caches and nested environments.
OUTSIDE_SCOPE = ("conda-meta/", "pkgs/", "envs/")


def find(scan: Scan, removed: bytearray, replaced: Collection[int] = ()
         ) -> tuple[list[Link], list[Problem]]:
    """The duplicates among the files that survive ``removed`` (1 = gone) and are not
    replaced by a stripped copy, each with the path it will link to.

    Files are duplicates when size, mode bits, owner, group and sha256 agree. Of a set
    of duplicates, the inode with the most links stays. Empty files are left alone.
    """
    survivors = _eligible_inodes(scan, removed, replaced)
    by_shape: dict[tuple[int, int, int], list[tuple[int, ...]]] = {}
    for paths in survivors.values():
        first = paths[0]
        shape = (scan.devs[first], scan.sizes[first], scan.modes[first])
        by_shape.setdefault(shape, []).append(paths)
    groups = [g for g in by_shape.values() if len(g) > 1]
    rewritten = _rewritten_by_conda_pack(scan, [i for g in groups for p in g for i in p])
    links: list[Link] = []
    problems: list[Problem] = []
    for group in groups:
        group = [paths for paths in group if not any(i in rewritten for i in paths)]
        if len(group) < 2:
            continue
        by_content: dict[tuple[str, int, int], list[tuple[int, ...]]] = {}
        for paths in group:
            try:
                key = fingerprint(scan, paths[0])
            except OSError as exc:
                problems.append(Problem(scan.paths[paths[0]],
                                        f"not deduplicated: {exc.strerror or exc}"))
                continue
            by_content.setdefault(key, []).append(paths)
        for same in by_content.values():
            if len(same) < 2:
                continue
            keeper = max(same, key=lambda p: (len(p), -p[0]))
            links += [Link(i, keeper[0]) for paths in same if paths is not keeper for i in paths]
    return sorted(links, key=lambda link: link.index), problems


def _eligible_inodes(scan: Scan, removed: bytearray, replaced: Collection[int]
                     ) -> dict[tuple[int, int], tuple[int, ...]]:
    """Inode -> its surviving paths, for inodes whose every link is a surviving (or
    removed) path inside the prefix, none of them in conda-meta, pkgs or envs."""
    kinds, sizes, nlinks, devs, inos, paths = (scan.kinds, scan.sizes, scan.nlinks, scan.devs,
                                               scan.inos, scan.paths)
    replaced = set(replaced)
    inside: dict[tuple[int, int], int] = {}
    survivors: dict[tuple[int, int], list[int]] = {}
    barred: set[tuple[int, int]] = set()
    for index in range(len(scan)):
        if kinds[index] != FILE or not sizes[index]:
            continue
        key = (devs[index], inos[index])
        if nlinks[index] > 1:
            inside[key] = inside.get(key, 0) + 1
        if removed[index]:
            continue
        if index in replaced or paths[index].startswith(OUTSIDE_SCOPE):
            barred.add(key)
            continue
        survivors.setdefault(key, []).append(index)
    return {key: tuple(found) for key, found in survivors.items()
            if key not in barred and nlinks[found[0]] == inside.get(key, 1)}


def _rewritten_by_conda_pack(scan: Scan, indices: Iterable[int]) -> set[int]:
    """Those of ``indices`` that conda-pack would read and rewrite (see the module doc)."""
    owners = scan.owners
    wanted: dict[int, list[int]] = {}
    rewritten: set[int] = set()
    for index in indices:
        if owners[index] >= 0:
            wanted.setdefault(owners[index], []).append(index)
        else:
            rewritten.add(index)  # unmanaged: conda-pack reads it for prefixes
    for owner, found in wanted.items():
        try:
            doc = json.loads((scan.prefix / "conda-meta" /
                              f"{scan.owner_names[owner]}.json").read_bytes())
            entries = doc["paths_data"]["paths"]
            by_path = {e["_path"]: e for e in entries}
        except (OSError, ValueError, KeyError, TypeError):
            rewritten.update(found)  # cannot tell: leave them alone
            continue
        noarch = doc.get("noarch") in ("python", {"type": "python"})
        if any("/" not in path for path in by_path):
            rewritten.update(found)  # packed "uncached": every file is read
            continue
        for index in found:
            entry = by_path.get(scan.paths[index], {})
            if entry.get("prefix_placeholder") or (noarch and scan.paths[index].startswith("bin/")):
                rewritten.add(index)
    return rewritten


def fingerprint(scan: Scan, index: int) -> tuple[str, int, int]:
    """``(sha256, uid, gid)`` of the file at ``index``; ``OSError`` if it changed since
    the scan."""
    path = scan.prefix / scan.paths[index]
    st = os.lstat(path)
    if (st.st_ino, st.st_size) != (scan.inos[index], scan.sizes[index]):
        raise OSError(0, "changed since the scan")
    return condameta.sha256(path), st.st_uid, st.st_gid


def make_links(scan: Scan, links: Iterable[Link], temp_dir: str | None = None
               ) -> tuple[list[Link], list[Problem]]:
    """Create each link's temporary hard link to its target, in ``temp_dir`` (on the
    prefix's filesystem: the transaction's staging directory) or beside the duplicate.

    They are named like stripped copies (``.<name>.<random>`` plus
    :data:`~shrinkconda.transaction.journal.TEMP_SUFFIX`), so a killed run's leftovers are cleaned up
    the same way.
    """
    made: list[Link] = []
    problems: list[Problem] = []
    for link in links:
        directory, name = os.path.split(scan.prefix / scan.paths[link.index])
        temp = os.path.join(temp_dir or directory,
                            f".{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            os.link(scan.prefix / scan.paths[link.target], temp)
        except OSError as exc:
            problems.append(Problem(scan.paths[link.index],
                                    f"not deduplicated: {exc.strerror or exc}"))
            continue
        made.append(Link(link.index, link.target, temp))
    return made, problems


def discard(links: Sequence[Link]) -> None:
    """Delete temporary links that will not be installed."""
    for link in links:
        if link.temp:
            try:
                os.unlink(link.temp)
            except FileNotFoundError:
                pass


def directories(scan: Scan, links: Iterable[Link]) -> tuple[str, ...]:
    """The directories (relative) where temporary links lie, for crash recovery."""
    return tuple(sorted({os.path.dirname(scan.paths[link.index]) for link in links}))
