"""Symlinks a plan would leave dangling: which link dies with which removed entry.

``conda doctor`` (and ``os.path.exists``) follows symlinks, so a link whose target a
shrink removes looks like a missing file of its package (ncurses ships
``lib/libcurses.a -> libncurses.a``; ``static-libs`` removes the archive). The plan
removes such a link with its target, or keeps the target when the link must stay.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from shrinkconda.scan import SYMLINK, Scan

_MAX_HOPS = 40
"""Links followed for one path before giving up, as the kernel does (``ELOOP``)."""


class Resolver:
    """Follows symlinks through a scan, within the prefix, reading each link once."""

    def __init__(self, scan: Scan) -> None:
        self.scan = scan
        self._root = str(scan.prefix)
        self._children: dict[int, dict[str, int]] = {}

    def through(self, index: int) -> list[int] | None:
        """Every entry the link at ``index`` passes through to its final target (the
        directories on the way, the links followed, the target itself), or ``None`` when
        it does not resolve inside the prefix: dangling already, or leading outside."""
        scan = self.scan
        path = scan.paths[index]
        target = self._readlink(path)
        if target is None:
            return None
        parent = scan.parents[index]
        return self._walk(parent, target, [])

    def _walk(self, start: int, target: str, seen: list[int]) -> list[int] | None:
        scan = self.scan
        if os.path.isabs(target):
            if not target.startswith(self._root + "/"):
                return None
            target, start = target[len(self._root) + 1:], 0
        current = start
        parts = [p for p in target.split("/") if p and p != "."]
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if current == 0:
                    return None  # above the prefix
                current = scan.parents[current]
                continue
            child = self._child(current, part)
            if child is None:
                return None
            seen.append(child)
            if scan.kinds[child] == SYMLINK:
                hops += 1
                link = self._readlink(scan.paths[child])
                if link is None or hops > _MAX_HOPS:
                    return None
                if os.path.isabs(link):
                    if not link.startswith(self._root + "/"):
                        return None
                    link, current = link[len(self._root) + 1:], 0
                parts[:0] = [p for p in link.split("/") if p and p != "."]
                continue
            current = child
        return seen

    def _child(self, directory: int, name: str) -> int | None:
        names = self._children.get(directory)
        if names is None:
            names = {self.scan.name(c): c for c in self.scan.children(directory)}
            self._children[directory] = names
        return names.get(name)

    def _readlink(self, path: str) -> str | None:
        try:
            return os.readlink(Path(self._root, path))
        except OSError:
            return None


def symlinks(scan: Scan) -> Iterator[int]:
    """The scan's symlinks, but those under ``conda-meta/`` (package-cache views, which
    the commit rewrites itself)."""
    kinds, paths = scan.kinds, scan.paths
    for index in range(len(scan)):
        if kinds[index] == SYMLINK and not paths[index].startswith("conda-meta/"):
            yield index
