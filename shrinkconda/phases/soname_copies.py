"""The ``soname-copies`` phase: a wheel cannot hold symlinks, so pip installs a shared
library's names (``libcupti.so``, ``libcupti.so.12``, ``libcupti.so.2025.1.1`` in
triton's wheel) as identical copies, each its own inode. Each copy but the one with the
longest name becomes a relative symlink to it, as the library's own packaging (a conda
package, a Debian one) ships them: every name opens the same bytes, and a process that
loads the library under two names maps it once instead of twice.

Only files no ``conda-meta`` record lists take part (a conda package's paths and their
types are its record's), each with its only link in the same directory as the copy it
points to, of the same size, mode and sha256, and none that an earlier phase replaces.
The bytes of every path stay the same, so neither ``conda-meta`` nor pip's ``RECORD``
changes. The transaction swaps each symlink in as it swaps a stripped copy in, so the
path never goes missing and a rollback puts the file back.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from shrinkconda.phases import dedup
from shrinkconda.phases.base import Link, Outcome, changed
from shrinkconda.scan import FILE, MAGIC_ELF, TEMP_SUFFIX, Problem, Scan
from shrinkconda.transaction import journal
from shrinkconda.units import human

NAME = "soname-copies"
"""The phase's name: a strategy for ``--only``/``--skip`` and profiles."""
_SONAME = re.compile(r"^(lib[^/]*?\.so)(\.[0-9A-Za-z_+-]+)*$")


@dataclass(frozen=True)
class SonamePhase:
    """Identical copies of one shared library's names become symlinks to one of them."""

    name: str = NAME

    def predict(self, scan: Scan, removed: bytearray, earlier: Sequence[Outcome]) -> Outcome:
        """The symlinks a shrink would make among what the removals and earlier phases
        leave."""
        links, problems = find(scan, removed, changed(earlier))
        return Outcome(NAME, linked=links, problems=problems, notes=_notes(scan, links),
                       shown_when_empty=False)

    def make(self, scan: Scan, removed: bytearray, earlier: Sequence[Outcome],
             txn: journal.Transaction) -> Outcome:
        """The symlinks, made in staging, for the transaction to swap in."""
        found, problems = find(scan, removed, changed(earlier))
        if not found:
            return Outcome(NAME, problems=problems, shown_when_empty=False)
        txn.prepare(tuple(d for outcome in earlier for d in outcome.temp_dirs))
        links, failed = make_symlinks(scan, found, str(txn.staging))
        return Outcome(NAME, linked=links, problems=problems + failed,
                       notes=_notes(scan, links), shown_when_empty=False)

    def room(self, scan: Scan, removed: bytearray) -> None:
        """Nothing worth counting: a symlink takes a directory entry and an inode."""
        del scan, removed


def find(scan: Scan, removed: bytearray, changed: Collection[int] = ()
         ) -> tuple[list[Link], list[Problem]]:
    """The copies among the surviving files that ``changed`` (what earlier phases
    replace or link) leaves alone, each with the path its symlink will point to."""
    groups: dict[tuple[int, str, int, int], list[int]] = {}
    for index in range(len(scan)):
        if scan.kinds[index] != FILE or scan.magic[index] != MAGIC_ELF or removed[index] \
                or scan.nlinks[index] != 1 or index in changed \
                or scan.paths[index].startswith(dedup.OUTSIDE_SCOPE):
            continue
        match = _SONAME.match(scan.name(index))
        if match:
            key = (scan.parents[index], match.group(1), scan.sizes[index], scan.modes[index])
            groups.setdefault(key, []).append(index)
    links: list[Link] = []
    problems: list[Problem] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        by_digest: dict[str, list[int]] = {}
        for index in members:
            if scan.owners[index] >= 0:  # read from conda-meta once, on first use
                continue
            try:
                by_digest.setdefault(dedup.fingerprint(scan, index)[0], []).append(index)
            except OSError as exc:
                problems.append(Problem(scan.paths[index],
                                        f"not made a symlink: {exc.strerror or exc}"))
        for same in by_digest.values():
            if len(same) < 2:
                continue
            keeper = max(same, key=lambda i: (len(scan.name(i)), scan.name(i)))
            size = len(scan.name(keeper))  # a symlink's apparent size: its target's
            links += [Link(i, keeper, size=size) for i in same if i != keeper]
    return sorted(links, key=lambda link: link.index), problems


def make_symlinks(scan: Scan, links: Iterable[Link], temp_dir: str
                  ) -> tuple[list[Link], list[Problem]]:
    """Each link's temporary symlink to its target's name, in ``temp_dir`` (the
    transaction's staging, on the prefix's filesystem); named like a stripped copy, so a
    killed run's leftovers go the same way."""
    made: list[Link] = []
    problems: list[Problem] = []
    for link in links:
        temp = os.path.join(temp_dir, f".{scan.name(link.index)}.{secrets.token_hex(4)}"
                                      f"{TEMP_SUFFIX}")
        try:
            os.symlink(scan.name(link.target), temp)
        except OSError as exc:
            problems.append(Problem(scan.paths[link.index],
                                    f"not made a symlink: {exc.strerror or exc}"))
            continue
        made.append(Link(link.index, link.target, temp, link.size))
    return made, problems


def _notes(scan: Scan, links: Sequence[Link]) -> tuple[str, ...]:
    if not links:
        return ()
    freed = sum(scan.sizes[k.index] for k in links)
    targets = sorted({scan.paths[k.target] for k in links})
    copies = "1 copy" if len(links) == 1 else f"{len(links):,} copies"
    libraries = "1 library" if len(targets) == 1 else f"{len(targets):,} libraries"
    return ((f"{copies} of {libraries} ({human(freed)}) that pip installed under several "
             f"names became symlinks to one: "
             f"{', '.join(os.path.basename(t) for t in targets[:4])}"
             f"{' and more' if len(targets) > 4 else ''}"),)
