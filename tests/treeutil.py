"""Helpers the tests share: snapshots of a tree, and what du says about it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

SHRINKCONDA = [sys.executable, "-m", "shrinkconda"]


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path below ``root`` (symlinks not followed) -> (mode, size, mtime_ns)."""
    tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            tree[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return tree


def contents(root: Path) -> dict[str, str]:
    """Path -> sha256 of every file, target of every symlink, 'dir' for directories."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = "-> " + os.readlink(path)
            elif os.path.isdir(path):
                out[rel] = "dir"
            else:
                with open(path, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def file_digests(root: Path, skip: str | None = None) -> dict[str, str]:
    """Path -> sha256 of every regular file (symlinks left out), outside the top-level
    directory ``skip``."""
    out = {}
    for dirpath, _, filenames in os.walk(root):
        if skip is not None and os.path.relpath(dirpath, root).split(os.sep)[0] == skip:
            continue
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def du_bytes(path: Path) -> int:
    """``du -sb``: apparent size, each inode once."""
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def du_allocated(path: Path) -> int:
    """``du -s`` in bytes: allocated blocks, each inode once."""
    return int(subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def run_cli(*args: str, env: dict[str, str] | None = None,
            **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``python -m shrinkconda ARGS`` in a real subprocess, stdin closed."""
    return subprocess.run([*SHRINKCONDA, *args], check=False, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=env, **kwargs)  # type: ignore[call-overload]


def prefix_python(prefix: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with the prefix's own interpreter in a clean environment."""
    env = {"PATH": f"{prefix}/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run([str(prefix / "bin" / "python"), "-c", code], check=False,
                          capture_output=True, text=True, env=env)
