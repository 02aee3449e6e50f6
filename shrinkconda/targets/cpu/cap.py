"""The files that cap a dispatcher at the target's level where the env runs: a ``.pth``
hook for every Python process (no activation needed: Lambda and ``docker run`` do not
activate envs), and activation scripts for shells."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shrinkconda.phases.base import Added, Outcome, Replacement
from shrinkconda.scan import DIR, FILE, Scan
from shrinkconda.targets.cpu.select import CAP_NAME, Dispatch
from shrinkconda.transaction import journal
from shrinkconda.transaction.preflight import Need

PHASE = "cpu-cap"
"""The phase's line in the report."""
NAME = CAP_NAME
"""The added files' name (``.pth`` in site-packages, ``.sh`` in activate.d)."""
ACTIVATE = f"etc/conda/activate.d/{NAME}.sh"
DEACTIVATE = f"etc/conda/deactivate.d/{NAME}.sh"
_BLOCK = 4096
_MARK = "_SHRINKCONDA_CPU_CAP"
"""Set by the activation script to the variables it set, so deactivation unsets only
those."""


@dataclass(frozen=True)
class CapFile:
    """A file the shrink adds to the prefix."""

    path: str
    """Relative to the prefix."""
    content: bytes
    source: str
    """A path of the package the cap serves (its dispatcher): ``conda-meta`` lists the
    file in the record that lists this one; "" when no record does."""
    mode: int = 0o644


@dataclass(frozen=True)
class CapPhase:
    """Adds the cap files (or rewrites those an earlier shrink added) through the
    transaction, so a rollback takes them back and ``conda-meta`` records them."""

    dispatch: Dispatch
    name: str = PHASE

    def predict(self, scan: Scan, removed: bytearray, earlier: Sequence[Outcome]) -> Outcome:
        """The files the cap adds, sized, unwritten."""
        return _outcome(scan, files(scan, self.dispatch), None)

    def make(self, scan: Scan, removed: bytearray, earlier: Sequence[Outcome],
             txn: journal.Transaction) -> Outcome:
        """The files written into ``txn``'s staging, for the transaction to rename in."""
        return _outcome(scan, files(scan, self.dispatch), txn.staging / PHASE)

    def room(self, scan: Scan, removed: bytearray) -> Need:
        """A few small files, and the directories they may need."""
        wanted = files(scan, self.dispatch)
        paths = tuple(c.path for c in wanted)
        return Need(PHASE, "the dispatch cap's files",
                    sum(_blocks(len(c.content)) + _BLOCK for c in wanted), 2 * len(wanted),
                    dirs=tuple(sorted({os.path.dirname(p) for p in paths})), steps=paths)


def phases(dispatch: Dispatch) -> list[CapPhase]:
    """The cap phase when ``dispatch`` caps anything, else none."""
    return [CapPhase(dispatch)] if dispatch.caps and dispatch.target is not None else []


def _outcome(scan: Scan, wanted: Sequence[CapFile], out: Path | None) -> Outcome:
    """Each file under its topmost missing directory (one added path per such tree), or
    a replacement of the file an earlier shrink added."""
    replaced: list[Replacement] = []
    trees: dict[str, list[CapFile]] = {}
    for cap in wanted:
        index = scan.find(cap.path)
        if index is not None and scan.kinds[index] == FILE:
            temp = _write(out / f"r{len(replaced)}", cap) if out else ""
            replaced.append(Replacement(index, len(cap.content), _blocks(len(cap.content)),
                                        temp))
        elif index is None:
            trees.setdefault(_top_missing(scan, cap.path), []).append(cap)
    added = []
    for n, (top, caps) in enumerate(trees.items()):
        temp = ""
        if out is not None:
            temp = str(out / f"a{n}")
            for cap in caps:
                _write(Path(temp, os.path.relpath(cap.path, top)) if cap.path != top
                       else Path(temp), cap)
        parents = {os.path.dirname(c.path) for c in caps if c.path != top}
        dirs = {d for parent in parents for d in _up_to(parent, top)}
        size = sum(len(c.content) for c in caps) + _BLOCK * len(dirs)
        allocated = sum(_blocks(len(c.content)) for c in caps) + _BLOCK * len(dirs)
        added.append(Added(top, size, allocated, temp,
                           tuple((c.path, len(c.content), c.source) for c in caps)))
    return Outcome(PHASE, replaced=replaced, added=added)


def _top_missing(scan: Scan, path: str) -> str:
    """The topmost ancestor of ``path`` (or itself) that the prefix does not have."""
    parts = path.split("/")
    for depth in range(1, len(parts) + 1):
        head = "/".join(parts[:depth])
        if scan.find(head) is None:
            return head
    return path


def _up_to(directory: str, top: str) -> list[str]:
    """``directory`` and its ancestors up to and including ``top``."""
    out = []
    while directory and directory != os.path.dirname(top):
        out.append(directory)
        if directory == top:
            break
        directory = os.path.dirname(directory)
    return out


def _write(dest: Path, cap: CapFile) -> str:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(cap.content)
    os.chmod(dest, cap.mode)
    return str(dest)


def _blocks(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def files(scan: Scan, dispatch: Dispatch) -> tuple[CapFile, ...]:
    """The cap files ``dispatch`` needs (none when it removed nothing above a cap)."""
    if not dispatch.caps or dispatch.target is None:
        return ()
    anchors = sorted(i for f in dispatch.found if f.family.variable in dispatch.caps
                     for i in f.indices(f.family.anchors[:1]))
    source = next((scan.paths[i] for i in anchors if scan.owners[i] >= 0), "")
    why = (f"Added by shrinkconda --target-cpu {dispatch.target.level}: the kernels above "
           "this cap were removed from the env.")
    out = [CapFile(f"{site}/{NAME}.pth", pth(dispatch.caps, why), source)
           for site in _site_packages(scan)]
    out.append(CapFile(ACTIVATE, activate(dispatch.caps, why), source))
    out.append(CapFile(DEACTIVATE, deactivate(why), source))
    return tuple(out)


def pth(caps: Mapping[str, str], why: str) -> bytes:
    """A ``.pth`` whose ``import`` line sets each variable unless the user set it;
    ``site`` runs it in every interpreter start (``-I`` too, not ``-S``)."""
    pairs = ", ".join(f"({k!r}, {v!r})" for k, v in sorted(caps.items()))
    return (f"# {why}\n"
            f"import os; [os.environ.setdefault(k, v) for k, v in ({pairs},)]\n").encode()


def activate(caps: Mapping[str, str], why: str) -> bytes:
    """A POSIX shell script for ``etc/conda/activate.d``."""
    lines = [f"# {why}", f"{_MARK}="]
    for key, value in sorted(caps.items()):
        lines.append(f'if [ -z "${{{key}+x}}" ]; then export {key}={value}; '
                     f'{_MARK}="${_MARK} {key}"; fi')
    lines.append(f"export {_MARK}")
    return ("\n".join(lines) + "\n").encode()


def deactivate(why: str) -> bytes:
    """Unset what the activation script set, and nothing the user set."""
    return (f"# {why}\n"
            f"for _shrinkconda_var in ${_MARK}; do unset \"$_shrinkconda_var\"; done\n"
            f"unset {_MARK} _shrinkconda_var\n").encode()


def _site_packages(scan: Scan) -> list[str]:
    lib = scan.find("lib")
    if lib is None:
        return []
    found = []
    for child in scan.children(lib):
        if scan.name(child).startswith("python") and scan.kinds[child] == DIR:
            site = scan.find(f"{scan.paths[child]}/site-packages")
            if site is not None and scan.kinds[site] == DIR:
                found.append(scan.paths[site])
    return found
