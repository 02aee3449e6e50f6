"""Real faults for the tests: a small tmpfs, an unprivileged user, a shrink paused at a
named point (``shrinkconda.transaction.testhooks``), and what a prefix must look like afterwards."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from treeutil import SHRINKCONDA

from fixtures.install import copy_tree
from shrinkconda import Options, shrink
from shrinkconda.transaction.journal import STATE_DIR

UNPRIVILEGED = "nobody"
"""The user the permission tests run shrinkconda as (Debian's uid 65534)."""


def require_root(why: str) -> None:
    """Skip the test, saying ``why`` root is needed, unless it runs as root."""
    if os.geteuid() != 0:
        pytest.skip(f"needs root: {why}")


def _existing(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        pytest.skip(f"there is no user {user!r} to run shrinkconda as")


@contextmanager
def tmpfs(size: str, inodes: int) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` with ``inodes`` inodes, anyone may enter; unmounted
    after. Not below pytest's tmp_path: ``/tmp/pytest-of-root`` is private to root."""
    require_root("mounts a small tmpfs to fill it")
    where = Path(tempfile.mkdtemp(prefix="shrinkconda-fs-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o",
                              f"size={size},nr_inodes={inodes},mode=755", "tmpfs", str(where)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def tree(root: Path, relocated: Path | None = None) -> dict[str, tuple[int, int, str]]:
    """Every path below ``root`` -> (mode with type, size, content digest or link
    target). Directory sizes are left out: ext4 never shrinks a directory. The path
    ``relocated`` in a file (the prefix's own, in a shebang) does not count."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if os.path.islink(path):
                out[os.path.relpath(path, root)] = (st.st_mode, st.st_size, os.readlink(path))
            elif os.path.isdir(path):
                out[os.path.relpath(path, root)] = (st.st_mode, 0, "")
            else:
                with open(path, "rb") as f:
                    body = f.read()
                size = st.st_size
                if relocated is not None and os.fsencode(relocated) in body:
                    body = body.replace(os.fsencode(relocated), b"PREFIX")
                    size = len(body)
                out[os.path.relpath(path, root)] = (st.st_mode, size,
                                                    hashlib.sha256(body).hexdigest())
    return out


def without_records(found: dict[str, tuple[int, int, str]]
                    ) -> dict[str, tuple[int, int, str]]:
    """A :func:`tree` with the ``conda-meta`` files' contents left out: they name the
    prefix's own path, and the history its time."""
    return {path: (v if not path.startswith("conda-meta/") else (v[0], 0, ""))
            for path, v in found.items()}


def shrunk_tree(template: Path, where: Path) -> dict[str, tuple[int, int, str]]:
    """:func:`without_records` of a completed shrink of a copy of ``template``."""
    prefix = copy_tree(template, where)
    shrink(prefix, Options())
    found = without_records(tree(prefix, relocated=prefix))
    shutil.rmtree(prefix)
    return found


def assert_one_line(result: subprocess.CompletedProcess[str], status: int,
                    *phrases: str) -> str:
    """The run ended with ``status`` and one line on stderr holding every phrase."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status, result.stderr
    assert len(lines) == 1, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


def assert_untouched(prefix: Path, before: dict[str, tuple[int, int, str]]) -> None:
    """The prefix is exactly as before, and no state of a shrink is left in it."""
    assert not (prefix / STATE_DIR).exists()
    assert tree(prefix) == before


def copy_prefix(template: Path, target: Path, owner: str | None = None) -> Path:
    """``cp -a`` of ``template`` at ``target``, given to ``owner`` if named."""
    subprocess.run(["cp", "-a", str(template), str(target)], check=True)
    if owner is not None:
        require_root(f"gives the prefix to {owner!r}")
        user = _existing(owner)
        subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(target)], check=True)
    return target


# Runs the CLI as another user: root's interpreter lives below /root, which that user
# cannot enter, so this one imports what the CLI needs first and then drops privileges.
_AS_USER = """\
import difflib, encodings.ascii, encodings.latin_1, os, pwd, sys
import shrinkconda.cli, shrinkconda.pipeline
user = pwd.getpwnam(sys.argv[1])
os.setgroups([])
os.setgid(user.pw_gid)
os.setuid(user.pw_uid)
shrinkconda.cli.main(sys.argv[2:], prog_name="shrinkconda")
"""


def run_cli_as(user: str, *args: str, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    """``shrinkconda ARGS`` as ``user``, in a real subprocess."""
    require_root(f"runs shrinkconda as the unprivileged user {user!r}")
    _existing(user)
    return subprocess.run([sys.executable, "-c", _AS_USER, user, *args], check=False,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env=env, cwd="/", timeout=600)


class Paused:
    """A ``shrinkconda shrink`` (or, with ``audit``, ``audit``) subprocess that stops at named points
    (``SHRINKCONDA_TEST_PAUSE_AT``) until it gets a signal or is told to go on."""

    def __init__(self, workdir: Path, points: str, *args: str,
                 user: str | None = None, audit: bool = False) -> None:
        self.announce = workdir / "paused"
        env = {**os.environ, "SHRINKCONDA_TEST_PAUSE_AT": points,
               "SHRINKCONDA_TEST_PAUSE_FILE": str(self.announce)}
        verb = ["audit", "-q"] if audit else ["shrink", "-y", "-q"]
        command = [*SHRINKCONDA, *verb, *args]
        if user is not None:
            command = [sys.executable, "-c", _AS_USER, user, *verb, *args]
        self.proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd="/")

    def wait_for(self, point: str, timeout: float = 120) -> None:
        """Return once the shrink is paused at ``point``."""
        wait_for_file(Path(f"{self.announce}.{point}"), timeout, self.proc)

    def go_on(self, point: str) -> None:
        """Let the shrink paused at ``point`` go on."""
        Path(f"{self.announce}.{point}").unlink()

    def finish(self) -> subprocess.CompletedProcess[str]:
        """Wait for the end; what it said."""
        out, err = self.proc.communicate(timeout=600)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


def wait_for_file(path: Path, timeout: float,
                  proc: subprocess.Popen[str] | None = None) -> None:
    """Poll for ``path`` (an event the process announces, not a guess at timing)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"ended before {path.name}: {proc.returncode}\n{err}")
        assert time.monotonic() < deadline, f"{path.name} never came"
        time.sleep(0.01)


def gone(pid: int, timeout: float = 10) -> bool:
    """Whether process ``pid`` is gone (or a zombie) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def remove(path: Path) -> None:
    """Delete a file or a tree, whatever it is."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
