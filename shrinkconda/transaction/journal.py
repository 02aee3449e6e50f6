"""A shrink as a transaction: staged renames, a journal, rollback and crash recovery.

Everything a shrink removes is first renamed into ``PREFIX/.shrinkconda/staging``
(same filesystem, so each rename is atomic), and a stripped copy takes its original's
place only after the original is staged. The journal is written before any rename, so
a run killed at any moment leaves a prefix where each path is either in place or in
staging, and the next run finds the journal and rolls back (nothing was verified yet)
or finishes (the shrink was verified and committing).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NoReturn

from shrinkconda.errors import ShrinkError
from shrinkconda.scan import STATE_DIR, TEMP_SUFFIX, Problem
from shrinkconda.transaction import faults, interrupt, state, testhooks

_CRASH_ENV = "SHRINKCONDA_TEST_CRASH_AFTER"
"""Test hook: SIGKILL this process after that many durable steps (see tests)."""


ADDED = "+"
""":attr:`Step.staged` of a step that adds a path the prefix did not have."""


class LockedError(ShrinkError):
    """Another shrinkconda holds the prefix."""


@contextmanager
def locked(prefix: Path) -> Iterator[None]:
    """Hold an exclusive lock on the prefix; fail at once if another run holds it.

    The lock is ``flock`` on the prefix directory itself: the kernel drops it when the
    holder dies, so a killed run never leaves a stale lock behind.
    """
    testhooks.reached("lock")
    fd = os.open(prefix, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise LockedError(
                f"{prefix}: another shrinkconda is working on this prefix; "
                "wait for it to finish and run again"
            ) from None
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Step:
    """One staged change: ``path`` is renamed to ``staging/<staged>``; or, for a
    stripped or deduplicated file, hard-linked there and then atomically replaced by
    ``replacement`` (a temporary file in staging or beside it, relative to the
    prefix), so the path never goes missing. With ``staged`` empty,
    ``path`` is a directory whose entries were staged one by one, removed at commit.
    With ``staged`` :data:`ADDED`, ``path`` is new: ``replacement`` (a file or a
    directory in staging) is renamed to it, and a rollback removes it again."""

    path: str
    staged: str
    replacement: str = ""


class Transaction:
    """The journal and the staging directory of one shrink of one prefix."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.state_dir = prefix / STATE_DIR
        self.staging = self.state_dir / "staging"
        self.journal = self.state_dir / "journal.json"
        self._steps_done = 0
        crash = os.environ.get(_CRASH_ENV, "")
        self._crash_after = int(crash) if crash.isdigit() else -1

    def prepare(self, temp_dirs: Sequence[str]) -> None:
        """Record where stripped copies are about to be written, so a crash can clean
        them up (they are named ``.*`` + :data:`TEMP_SUFFIX`)."""
        testhooks.reached("prepare")
        self.staging.mkdir(parents=True, exist_ok=True)
        self._write({"state": "preparing", "temp_dirs": list(temp_dirs), "steps": []})
        testhooks.reached("strip")

    def stage(self, steps: Sequence[Step],
              temp_dirs: Sequence[str]) -> list[tuple[Step, str]]:
        """Move every step's path into staging; return the steps that failed, and why.

        A path that cannot move (immutable, gone) stays in place; an error of the whole
        filesystem (:data:`~shrinkconda.transaction.faults.FATAL`: full, read-only, I/O) is raised,
        for the caller to roll back. Signals wait for the step under way to end."""
        self.staging.mkdir(parents=True, exist_ok=True)
        todo = list(steps)
        testhooks.reached("journal")
        self._write_steps("staged", todo, temp_dirs)
        failed = []
        index = 0
        while index < len(todo):
            step = todo[index]
            index += 1
            if not step.staged:
                continue
            original, staged = self.prefix / step.path, self.staging / step.staged
            try:
                with interrupt.shielded():
                    self._move(step, original, staged)
            except OSError as exc:
                if faults.fatal(exc):
                    raise
                if exc.errno == errno.EXDEV and original.is_dir() and not original.is_symlink():
                    # overlayfs (a later Docker RUN) cannot rename a directory of a lower
                    # layer: stage its entries instead and remove it empty at commit.
                    todo[index:index] = _entries_of(step, original)
                    self._write_steps("staged", todo, temp_dirs)
                    continue
                failed.append((step, exc.strerror or str(exc)))
                continue
            self._step()
            if index == 1:
                testhooks.reached("staging")
        return failed

    def _move(self, step: Step, original: Path, staged: Path) -> None:
        if step.staged == ADDED:
            if os.path.lexists(original):  # rename() would replace an empty directory
                raise FileExistsError(errno.EEXIST, "it exists already")
            os.rename(self.prefix / step.replacement, original)
        elif step.replacement:
            os.link(original, staged)
            self._step()
            os.replace(self.prefix / step.replacement, original)
        else:
            os.rename(original, staged)

    def rollback(self) -> None:
        """Put every staged path back where it was and delete temporary files; no
        signal interrupts it."""
        with interrupt.shielded():
            self._rollback()

    def _rollback(self) -> None:
        testhooks.reached("rollback")
        doc = self._read()
        for path, staged, replacement in reversed(doc["steps"]):
            if staged == ADDED:
                self._unadd(path, replacement)
                continue
            source = self.staging / staged
            if staged and os.path.lexists(source):  # else never staged, or already restored
                original = self.prefix / path
                if original.is_dir() and not original.is_symlink():
                    # Re-created since the crash (Python refills __pycache__): the
                    # original wins, the newcomer goes with the staging directory.
                    os.rename(original, self.staging / f"{staged}.recreated")
                # Atomic for a stripped file too: the path is the copy or the original.
                os.replace(source, original)
                self._step()
        self._remove_temps(doc["temp_dirs"])
        self._finish()
        state.rolled_back()

    def _unadd(self, path: str, temp: str) -> None:
        """Take back an added path: only if its temporary is gone, it was renamed in."""
        if os.path.lexists(self.prefix / temp):
            return  # never added (or it failed because the path existed)
        added = self.prefix / path
        if added.is_dir() and not added.is_symlink():
            shutil.rmtree(added, ignore_errors=True)
        elif os.path.lexists(added):
            added.unlink()
        self._step()

    def commit(self, payload: dict[str, Any], apply: Callable[[dict[str, Any]], object]) -> None:
        """Make the shrink final: record ``payload``, ``apply`` it, drop the staging.
        Once begun it ends: a signal meanwhile is raised afterwards, and its message
        says the prefix is shrunk (:mod:`~shrinkconda.transaction.state`)."""
        with interrupt.shielded():
            doc = self._read()
            doc.update(state="committing", payload=payload)
            self._write(doc)
            state.committed()  # recovery finishes it from here on: no way back
            self._complete(doc, apply)

    def recover(self, apply: Callable[[dict[str, Any]], object]) -> str | None:
        """Finish or roll back a transaction a killed run left; say which, or ``None``."""
        with interrupt.shielded():
            return self._recover(apply)

    def _recover(self, apply: Callable[[dict[str, Any]], object]) -> str | None:
        if not self.state_dir.exists():
            return None
        try:
            doc = self._read()
        except (OSError, ValueError):
            # Killed before the first journal write completed: nothing was moved yet.
            shutil.rmtree(self.state_dir, ignore_errors=True)
            state.discarded()
            return "removed the state of a shrink that was killed before it changed anything"
        if doc["state"] == "committing":
            self._complete(doc, apply)
            return "finished a verified shrink that was interrupted while committing"
        self.rollback()
        return f"rolled back a shrink that was interrupted ({doc['state']}); nothing was lost"

    def _complete(self, doc: dict[str, Any], apply: Callable[[dict[str, Any]], object]) -> None:
        # The staged originals go first: on a full disk, their room lets the records
        # be rewritten. Recovery needs only the journal's payload.
        _delete(self.staging)
        testhooks.reached("commit")
        try:
            apply(doc["payload"])
        except OSError as exc:
            _name_and_raise(exc, self.prefix / "conda-meta")
        self._step()
        self._remove_temps(doc["temp_dirs"])
        for path, staged, _replacement in reversed(doc["steps"]):
            if not staged:
                try:
                    os.rmdir(self.prefix / path)
                except OSError:
                    pass  # already gone, or something new inside: leave it
        self._finish()
        state.finished()

    def _remove_temps(self, temp_dirs: Sequence[str]) -> None:
        for directory in temp_dirs:
            try:
                names = os.listdir(self.prefix / directory)
            except OSError:
                continue
            for name in names:
                if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                    (self.prefix / directory / name).unlink(missing_ok=True)

    def _finish(self) -> None:
        _delete(self.staging)
        self._step()
        self.journal.unlink(missing_ok=True)
        self.journal.with_suffix(".tmp").unlink(missing_ok=True)  # a write the disk refused
        try:
            self.state_dir.rmdir()
        except OSError:
            pass

    def _write_steps(self, status: str, steps: Sequence[Step], temp_dirs: Sequence[str]
                     ) -> None:
        self._write({"state": status, "temp_dirs": list(temp_dirs),
                     "steps": [[s.path, s.staged, s.replacement] for s in steps]})

    def _write(self, doc: dict[str, Any]) -> None:
        """Replace the journal atomically and durably; no signal cuts it short."""
        with interrupt.shielded():
            state.changing()  # before it: a half-written journal is this run's to undo
            self._write_durably(doc)

    def _write_durably(self, doc: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        temp = self.journal.with_suffix(".tmp")
        try:
            with open(temp, "w", encoding="utf-8", errors="surrogateescape") as f:
                json.dump(doc, f)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            _name_and_raise(exc, temp)
        os.replace(temp, self.journal)
        _fsync_dir(self.state_dir)
        self._step()

    def _read(self) -> dict[str, Any]:
        with open(self.journal, encoding="utf-8", errors="surrogateescape") as f:
            doc: dict[str, Any] = json.load(f)
        return doc

    def _step(self) -> None:
        self._steps_done += 1
        if self._steps_done == self._crash_after:
            os.kill(os.getpid(), signal.SIGKILL)


def _name_and_raise(exc: OSError, path: Path) -> NoReturn:
    """Raise ``exc``, naming ``path`` if it names no file (a failed ``write``), so the
    message can say where."""
    if exc.filename is not None:
        raise exc
    raise OSError(exc.errno, exc.strerror, str(path)) from exc


def _entries_of(step: Step, directory: Path) -> list[Step]:
    """Steps for each entry of ``directory``, then the step that removes it empty."""
    names = sorted(os.listdir(directory))
    return [Step(f"{step.path}/{name}", f"{step.staged}.{n}") for n, name in enumerate(names)] + [
        Step(step.path, "")]


def problems_for(failed: Sequence[tuple[Step, str]]) -> list[Problem]:
    """Report staging failures (an immutable file, a vanished one, another filesystem)."""
    return [Problem(step.path, f"left in place: it could not be moved into staging ({why})")
            for step, why in failed]


def _delete(directory: Path, jobs: int = 0) -> None:
    """Delete ``directory`` and everything in it, fast: a commit deletes the whole
    removal at once, and ``rm -rf`` in parallel does that in about half the time of
    :func:`shutil.rmtree`, which stays the fallback (and mops up what is left)."""
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return
    rm = shutil.which("rm")
    if rm and entries:
        groups = max(1, min(jobs or os.cpu_count() or 1, len(entries)))
        procs = [subprocess.Popen([rm, "-rf", "--", *entries[n::groups]], cwd=directory,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for n in range(groups)]
        for proc in procs:
            proc.wait()
    shutil.rmtree(directory, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
