"""Strip ELF objects in a prefix: hard-link safe, validated, in parallel.

Stripping is two steps so that a transaction can stage the originals in between:
:func:`make_stripped` writes a validated stripped copy beside each file, and
:func:`install` renames the copies over the originals. :func:`predict` says what the
two would save, from the section headers alone.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable, TypeVar

from shrinkconda.errors import ElfError, ShrinkError, StripToolMissing
from shrinkconda.phases import elf
from shrinkconda.phases.base import Replacement
from shrinkconda.scan import FILE, MAGIC_ELF, Problem, Progress, Scan
from shrinkconda.transaction import TEMP_SUFFIX

#: The ``strip`` option for each mode.
FLAGS = {"debug": "--strip-debug", "unneeded": "--strip-unneeded", "all": "--strip-all"}
DH = "dh"
"""The per-file mode: as Debian's ``dh_strip``, ``all`` for executables and ``unneeded``
for shared libraries (see :func:`elf.dh_mode`)."""
#: What ``--strip-mode`` accepts.
MODES = (*FLAGS, DH)

_BLOCK = 4096
"""Allocation unit assumed when predicting a stripped file's on-disk size."""

_EMPTY_LOAD = ("a load segment holds no section (patchelf leaves these); GNU strip 2.40 "
               "misaligns such segments, and shrink keeps the original when it does")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Candidates:
    """The ELF files of a prefix the strip phase may rewrite, and those it must not."""

    indices: tuple[int, ...]
    """Scan indices of ELF files that stay in the prefix and may be replaced."""
    linked_inside: tuple[int, ...]
    """ELF files whose inode has another surviving link inside the prefix: replacing one
    link would keep the old inode and add a new one, so they are left alone."""


def candidates(scan: Scan, removed: bytearray) -> Candidates:
    """The ELF files (by magic bytes) that survive the removals in ``removed`` (1 = gone).

    A file hard-linked from outside the prefix is a candidate: the prefix gets smaller
    and the outside link keeps the original intact. A file with another link inside the
    prefix that survives (``pkgs/`` kept with ``--skip pkgs-cache``) is not.
    """
    kinds, magic, nlinks, devs, inos = scan.kinds, scan.magic, scan.nlinks, scan.devs, scan.inos
    elf_files = [i for i in range(len(scan))
                 if kinds[i] == FILE and magic[i] == MAGIC_ELF and not removed[i]]
    shared = {(devs[i], inos[i]) for i in elf_files if nlinks[i] > 1}
    survivors: dict[tuple[int, int], int] = {}
    if shared:
        for i in range(len(scan)):
            if nlinks[i] > 1 and kinds[i] == FILE and not removed[i]:
                key = (devs[i], inos[i])
                if key in shared:
                    survivors[key] = survivors.get(key, 0) + 1
    chosen: list[int] = []
    linked: list[int] = []
    for i in elf_files:
        (linked if survivors.get((devs[i], inos[i]), 1) > 1 else chosen).append(i)
    return Candidates(tuple(chosen), tuple(linked))


def predict(scan: Scan, indices: Iterable[int], mode: str,
            progress: Progress = None) -> tuple[list[Replacement], list[Problem]]:
    """What stripping the files at ``indices`` would leave, from their headers; no strip runs.

    Files with nothing to remove for ``mode`` and objects that are not executables or
    shared libraries (``.o``, kernel modules, core dumps) are left out, and so are files
    strip is expected to damage (:func:`elf.empty_loads`), which are reported instead.
    """
    _check_mode(mode)

    def one(index: int) -> Replacement | Problem | None:
        path = os.path.join(scan.prefix, scan.paths[index])
        try:
            header, removed, _ = _removable(path, mode)
            if not removed:
                return None
            if elf.empty_loads(header):
                return Problem(scan.paths[index], f"probably not strippable: {_EMPTY_LOAD}")
            size = elf.predicted_size(header, removed,
                                      elf.dropped_symbol_bytes(path, header, removed))
        except (OSError, ElfError) as exc:
            return Problem(scan.paths[index], f"not stripped: {_why(exc)}")
        if size >= header.file_size:
            return None  # as make_stripped does with a copy that is not smaller
        return Replacement(index, size, -(-size // _BLOCK) * _BLOCK)

    return _collect(_serial(one, indices, progress))


def strippable(scan: Scan, indices: Iterable[int], mode: str) -> list[int]:
    """Those of ``indices`` that have something to remove for ``mode``, from their headers."""
    _check_mode(mode)

    def one(index: int) -> int | None:
        try:
            _, removed, _ = _removable(os.path.join(scan.prefix, scan.paths[index]), mode)
        except (OSError, ElfError):
            return None
        return index if removed else None

    return sorted(i for i in _serial(one, indices, None) if i is not None)


def make_stripped(scan: Scan, indices: Iterable[int], mode: str, jobs: int | None = None,
                  tool: str = "strip", progress: Progress = None, temp_dir: str | None = None
                  ) -> tuple[list[Replacement], list[Problem]]:
    """Write a validated stripped copy of each file at ``indices`` beside it (or in
    ``temp_dir``, on the same filesystem); touch no original.

    One ``strip <flag> -o COPY FILE`` per file, ``jobs`` at a time (default: the CPU
    count). Files with nothing to remove spawn no process. A copy that fails
    :func:`elf.check_stripped` or would not be smaller is deleted, the former reported.
    Raises :class:`StripToolMissing` before doing anything if ``tool`` is not found.
    """
    _check_mode(mode)
    program = find_tool(tool)
    written: list[Replacement] = []

    def one(index: int) -> Replacement | Problem | None:
        try:
            result = _strip_one(scan, index, mode, program, temp_dir)
        except (OSError, ElfError) as exc:
            return Problem(scan.paths[index], f"not stripped: {_why(exc)}")
        if isinstance(result, Replacement):
            written.append(result)
        return result

    try:
        return _collect(_parallel(one, indices, jobs, progress))
    except BaseException:
        discard(written)  # an interrupted run leaves no stray copies behind
        raise


def install(scan: Scan, stripped: Sequence[Replacement], progress: Progress = None
            ) -> tuple[list[Replacement], list[Problem]]:
    """Rename each stripped copy over its original; return what was installed and what not.

    A rename gives the path a new inode, so other hard links to the original (a package
    cache, a sibling environment) keep the unstripped bytes.
    """
    done: list[Replacement] = []
    problems: list[Problem] = []
    for n, item in enumerate(stripped, 1):
        try:
            os.replace(item.temp, os.path.join(scan.prefix, scan.paths[item.index]))
            done.append(item)
        except OSError as exc:
            _unlink(item.temp)
            problems.append(Problem(scan.paths[item.index], f"not stripped: {_why(exc)}"))
        if progress is not None and (n % 64 == 0 or n == len(stripped)):
            progress(64 if n % 64 == 0 else n % 64)
    return done, problems


def discard(stripped: Iterable[Replacement]) -> None:
    """Delete stripped copies that will not be installed (an aborted transaction)."""
    for item in stripped:
        _unlink(item.temp)


def flag(path: str, mode: str) -> str:
    """The ``strip`` option for the file at ``path`` in ``mode`` (``dh`` decides per file)."""
    _check_mode(mode)
    resolved = _removable(path, mode)[2] if mode == DH else mode
    return FLAGS.get(resolved, FLAGS["debug"])  # dh on an unlinked object: nothing to do


def find_tool(tool: str = "strip") -> str:
    """The path of the ``strip`` program, or :class:`StripToolMissing` saying how to get it."""
    found = shutil.which(tool)
    if found is None:
        raise StripToolMissing(
            f"GNU strip ({tool!r}, from binutils) was not found on PATH, so nothing is "
            "stripped; install binutils with the system's package manager (Debian/Ubuntu: "
            "apt-get install binutils; Fedora/RHEL: dnf install binutils; Alpine: apk add "
            "binutils) or pass --no-strip")
    return found


def linked_inside_note(count: int) -> str:
    """The report's note for files left unstripped because of hard links in the prefix."""
    return (f"{count} ELF file(s) not stripped: another hard link to the same file stays in "
            "the prefix (e.g. pkgs/ kept), so stripping would add a copy, not save space")


def _strip_one(scan: Scan, index: int, mode: str, program: str,
               temp_dir: str | None = None) -> Replacement | Problem | None:
    relpath = scan.paths[index]
    path = os.path.join(scan.prefix, relpath)
    original, removed, mode = _removable(path, mode)
    if not removed:
        return None
    directory, name = os.path.split(path)
    # In temp_dir (on the prefix's filesystem), the copies add no entries to the
    # original's directory, which would grow it for good (ext4 never shrinks one).
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMP_SUFFIX,
                                dir=temp_dir or directory)
    os.close(fd)
    try:
        # -o writes a new file: GNU strip rewrites the inode in place when it strips a
        # file that has other hard links, which would corrupt the package cache.
        run = subprocess.run([program, FLAGS[mode], "-o", temp, path], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        if run.returncode != 0:
            output = run.stdout.decode("utf-8", "replace").strip().splitlines()
            return _reject(temp, relpath, f"strip exited with status {run.returncode}"
                           + (f": {output[-1]}" if output else ""))
        _copy_owner_and_mode(path, temp)
        reasons = elf.check_stripped(original, elf.read(temp))
        if reasons:
            return _reject(temp, relpath, "the stripped copy is unsafe, original kept: "
                           + "; ".join(reasons))
        st = os.stat(temp)
        if st.st_size >= original.file_size:
            _unlink(temp)
            return None
        return Replacement(index, st.st_size, st.st_blocks * 512, temp)
    except BaseException:
        _unlink(temp)
        raise


def _removable(path: str, mode: str) -> tuple[elf.Elf, list[int], str]:
    """The file's headers, the sections strip would remove (none unless linked), and the
    mode for this file (``dh`` resolved)."""
    header = elf.read(path)
    if header.type not in (elf.ET_EXEC, elf.ET_DYN):
        return header, [], mode
    if mode == DH:
        mode = elf.dh_mode(header)
    return header, elf.removable(header, mode), mode


def _copy_owner_and_mode(source: str, target: str) -> None:
    st = os.stat(source)
    if os.geteuid() == 0:
        os.chown(target, st.st_uid, st.st_gid)
    # After chown, which clears set-user-ID and set-group-ID bits.
    os.chmod(target, stat.S_IMODE(st.st_mode))


def _reject(temp: str, relpath: str, message: str) -> Problem:
    _unlink(temp)
    return Problem(relpath, f"not stripped: {message}")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f" ({exc.filename})" if exc.filename else "")
    return str(exc)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ShrinkError(f"unknown strip mode {mode!r}; use one of {', '.join(MODES)}")


def _serial(work: Callable[[T], R], items: Iterable[T], progress: Progress) -> list[R]:
    """``work`` over ``items`` here: header reads are pure Python, and threads would only
    contend for the GIL (they made the audit's prediction 2.5 times slower)."""
    results = []
    for item in items:
        results.append(work(item))
        if progress is not None:
            progress(1)
    return results


def _parallel(work: Callable[[T], R], items: Iterable[T], jobs: int | None,
              progress: Progress) -> list[R]:
    """``work`` over ``items`` on ``jobs`` threads; progress is told from this thread."""
    items = list(items)
    if not items:
        return []
    workers = max(1, min(jobs or os.cpu_count() or 1, len(items)))
    results: list[R] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(work, item) for item in items]
        try:
            for future in as_completed(futures):
                results.append(future.result())
                if progress is not None:
                    progress(1)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results


def _collect(results: Sequence[Replacement | Problem | None]
             ) -> tuple[list[Replacement], list[Problem]]:
    done = sorted((r for r in results if isinstance(r, Replacement)), key=lambda r: r.index)
    problems = sorted((r for r in results if isinstance(r, Problem)), key=lambda p: p.path)
    return done, problems
