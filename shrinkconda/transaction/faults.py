"""When the filesystem fails a shrink, or a signal stops it: undo it in this very process
and say in one line what happened, where, and what to do."""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from shrinkconda.errors import FilesystemError, Interrupted, ShrinkError
from shrinkconda.scan import STATE_DIR, TEMP_SUFFIX
from shrinkconda.transaction import interrupt, state
from shrinkconda.units import human

FATAL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES})
"""Errors that mean the filesystem fails the whole shrink, not one path: the shrink is
undone instead of leaving that path in place (as for an immutable file, ``EPERM``)."""

_HINTS = {
    errno.ENOSPC: "free space on its filesystem ({free} free) and run again",
    errno.EDQUOT: "raise the disk quota or free space ({free} free) and run again",
    errno.EROFS: "remount the filesystem read-write and run again",
    errno.EACCES: "run shrinkconda as the prefix's owner",
    errno.EPERM: "run shrinkconda as the prefix's owner",
    errno.EIO: "the disk reported an I/O error: check it (dmesg) before running again",
}


def fatal(exc: OSError) -> bool:
    """Whether ``exc`` must undo the whole shrink (see :data:`FATAL`)."""
    return exc.errno in FATAL


def describe(exc: OSError, root: Path | None = None) -> str:
    """One line for a failed file operation: what failed while doing what, the path,
    and what to do."""
    return f"{what_failed(exc, root)}; {hint(exc, root)}".rstrip("; ")


def what_failed(exc: OSError, root: Path | None = None) -> str:
    """``No space left on device while writing the shrink's journal: PATH``."""
    path = _path_of(exc)
    line = f"{exc.strerror or exc} while {_operation(path, root)}"
    if exc.errno in (errno.EACCES, errno.EPERM) and isinstance(exc.filename, (str, bytes)):
        path = os.fsdecode(exc.filename)  # the source's directory is the one refused
    return line + (f": {path}" if path else "")


def hint(exc: OSError, root: Path | None = None) -> str:
    """What to do about ``exc`` (empty if nothing general can be said)."""
    path = _path_of(exc) or str(root or ".")
    if exc.errno == errno.ENOSPC and _no_inodes(path):
        return "delete files on its filesystem (no inodes were left) and run again"
    said = _HINTS.get(exc.errno or 0, "")
    return said.format(free=_free(path)) if "{free}" in said else said


@contextmanager
def undone_on_failure(recover: Callable[[], Sequence[str]], root: Path) -> Iterator[None]:
    """Whatever stops the block (a failed write, a signal, a bug), first finish or roll
    back the transaction with ``recover`` (the prefix's, as a fresh run would), shielded
    from further signals; then raise one error that says which it was."""
    try:
        yield
    except BaseException as exc:
        with interrupt.shielded():
            replacement = _undo(recover, root, exc)
            if replacement is exc:
                raise
            raise replacement from exc


def _undo(recover: Callable[[], Sequence[str]], root: Path, exc: BaseException
          ) -> BaseException:
    # Said before the undoing frees space or inodes: how the filesystem was.
    first = (what_failed(exc, root), hint(exc, root)) if isinstance(exc, OSError) else None
    try:
        notes = recover()
    except OSError as again:
        told = first or (_first(exc), "")
        if not (isinstance(exc, OSError) and again.errno == exc.errno):
            told = (f"{told[0]}; then {what_failed(again, root)}", hint(again, root))
        return FilesystemError(
            f"{told[0]}; the shrink could not be finished or undone, so {root / STATE_DIR} "
            f"keeps what the next run needs to do it: {told[1] or 'fix that'}")
    outcome = state.describe()  # after the recovery, which the state records
    if isinstance(exc, (Interrupted, KeyboardInterrupt)):
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        return Interrupted(signum, f"{interrupt.name(signum)} received: {outcome}")
    if first is not None:
        return FilesystemError("; ".join(p for p in (first[0], outcome, first[1]) if p))
    if isinstance(exc, ShrinkError) and (notes or state.now() != state.UNTOUCHED):
        return type(exc)(f"{exc}; {outcome}")
    return exc


def _first(exc: BaseException) -> str:
    if isinstance(exc, Interrupted):
        return f"{interrupt.name(exc.signum)} received"
    return str(exc) or type(exc).__name__


def _path_of(exc: OSError) -> str:
    # A rename names the source first; the staging side says more about what it was.
    names = [os.fsdecode(n) for n in (exc.filename2, exc.filename)
             if isinstance(n, (str, bytes))]
    staged = [n for n in names if f"/{STATE_DIR}/" in n]
    return (staged or names or [""])[0]


def _operation(path: str, root: Path | None) -> str:
    rel = os.path.relpath(path, root) if root and path.startswith(str(root) + "/") else path
    name = os.path.basename(rel)
    if rel.startswith(f"{STATE_DIR}/journal"):
        return "writing the shrink's journal"
    if name.endswith(TEMP_SUFFIX):
        return "writing a stripped copy"
    if rel.startswith(f"{STATE_DIR}/staging/python-code/"):  # phases.bytecode's _TEMP
        return "writing compiled bytecode"
    if rel.startswith(f"{STATE_DIR}/"):
        return "moving files into the staging directory"
    if rel == STATE_DIR:
        return "creating the staging directory"
    if rel == "conda-meta" or rel.startswith("conda-meta/"):
        return "rewriting the conda-meta records"
    return "changing the prefix" if root and rel != path else "working on a file"


def _free(path: str) -> str:
    st = _statvfs(path)
    if st is None:
        return "unknown"
    return human((st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize)


def _no_inodes(path: str) -> bool:
    st = _statvfs(path)
    return st is not None and st.f_files > 0 and st.f_favail == 0


def _statvfs(path: str) -> os.statvfs_result | None:
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        return os.statvfs(path or ".")
    except OSError:
        return None
