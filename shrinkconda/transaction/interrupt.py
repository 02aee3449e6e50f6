"""SIGINT, SIGTERM and SIGHUP during a shrink: stop at the next safe point, never inside
one step of the transaction, and take down the commands the shrink started.

While :func:`handled` is active, a signal raises :class:`~shrinkconda.errors.Interrupted`
in the main thread at once, unless a :func:`shielded` section (a journal write, one
staged rename, a rollback, a commit) is running: then it is remembered and raised when
the outermost section ends. Only the first signal is raised; later ones are remembered
and ignored, so a second Ctrl-C cannot interrupt the rollback the first one started.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from shrinkconda.errors import Interrupted, signal_name
from shrinkconda.transaction import state

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals a shrink turns into a clean stop (``kill -9`` leaves recovery to the next
run, as a power cut does)."""

_received: int | None = None
_count = 0
_raised = False
_depth = 0
_installed = False


def requested() -> int | None:
    """The signal that asked the shrink to stop, or ``None``: loops in worker threads
    (the import checks) end early when it is set."""
    return _received


def received() -> int:
    """How many of :data:`SIGNALS` came so far (the first one and those ignored)."""
    return _count


@contextmanager
def handled() -> Iterator[None]:
    """Turn :data:`SIGNALS` into :class:`Interrupted` for the duration (main thread only;
    elsewhere, and when already active, this does nothing)."""
    global _installed, _received, _raised, _count
    if _installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _handle) for signum in SIGNALS}
    _installed, _received, _raised, _count = True, None, False, 0
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _installed, _received, _raised, _count = False, None, False, 0


@contextmanager
def shielded() -> Iterator[None]:
    """A section no signal may cut short; a signal that came meanwhile is raised at the
    end of the outermost one (unless an exception is already on its way out)."""
    global _depth
    _depth += 1
    try:
        yield
    except BaseException:
        _depth -= 1
        raise
    _depth -= 1
    if _depth == 0:
        _raise_pending()


def name(signum: int) -> str:
    """``SIGTERM`` for 15."""
    return signal_name(signum)


def _handle(signum: int, frame: FrameType | None) -> None:
    global _received, _count
    _count += 1
    if _received is None:
        _received = signum
    if _depth == 0:
        _raise_pending()


def _raise_pending() -> None:
    global _raised
    if _received is None or _raised or not _installed:
        return
    _raised = True
    stop_children()
    # Said now, from what the run did so far; the fault path says it again after any
    # recovery it makes.
    raise Interrupted(_received, f"{name(_received)} received: {state.describe()}")


def stop_children() -> None:
    """SIGKILL every process this one started, directly or not: a command started in a
    session of its own (a ``--used-by`` trace) with its whole process group."""
    own_group = os.getpgrp()
    groups: set[int] = set()
    for pid, pgid in _descendants(os.getpid()):
        try:
            if pgid != own_group:
                if pgid not in groups:
                    groups.add(pgid)
                    os.killpg(pgid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _descendants(root: int) -> list[tuple[int, int]]:
    """``(pid, pgid)`` of every live descendant of ``root``, from ``/proc``."""
    children: dict[int, list[tuple[int, int]]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append((int(entry), int(fields[2])))
    found: list[tuple[int, int]] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child[0])
    return found
