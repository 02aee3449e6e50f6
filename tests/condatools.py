"""Real conda tools run on real prefixes: conda-pack, conda-unpack, and the checks that a
prefix is still a true conda environment."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from fixtures.content import SITE

#: What a working fixture env does: imports (through a stripped C extension and its
#: stripped library, and astro's runtime import of its own `tests`), and entry points
#: found through importlib.metadata.
WORKS = (
    "import demopkg; assert demopkg.add(2, 3) == 5; "
    "from importlib.metadata import entry_points; "
    "eps = entry_points(group='demopkg.plugins'); "
    "assert [ep.load()() for ep in eps], 'no plugin entry point'"
)


def conda_pack(prefix: Path, archive: Path) -> subprocess.CompletedProcess[str]:
    """``conda-pack -p PREFIX -o ARCHIVE``, without flags, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-c", "from conda_pack.cli import main; main()",
         "-p", str(prefix), "-o", str(archive)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)


def unpack(archive: Path, dest: Path) -> Path:
    """Extract a conda-pack archive and run its ``conda-unpack``, as its docs say."""
    dest.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest)
    subprocess.run([str(dest / "bin" / "python"), str(dest / "bin" / "conda-unpack")],
                   check=True, capture_output=True, env=clean_env(dest))
    return dest


def clean_env(prefix: Path) -> dict[str, str]:
    """An environment in which ``prefix`` is the active conda env; Python writes no
    bytecode into it (conda-pack leaves unrecorded ``__pycache__`` out)."""
    return {"PATH": f"{prefix}/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
            "CONDA_PREFIX": str(prefix), "PYTHONDONTWRITEBYTECODE": "1"}


def run_in(prefix: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command with ``prefix/bin`` first on ``PATH``."""
    return subprocess.run(list(argv), capture_output=True, text=True, env=clean_env(prefix),
                          stdin=subprocess.DEVNULL, cwd=prefix, check=False)


def check_works(prefix: Path, also: tuple[str, ...] = ("astro", "purepkg")) -> None:
    """Imports (of demopkg and the modules ``also`` names), entry points, console
    scripts and ``share/`` data all work."""
    code = "; ".join([WORKS, *(f"import {module}" for module in also)])
    result = run_in(prefix, str(prefix / "bin" / "python"), "-c", code)
    assert result.returncode == 0, result.stderr
    cli = run_in(prefix, "demo-cli")  # a console script, found on PATH
    assert cli.returncode == 0 and cli.stdout.strip() == "5", (cli.stdout, cli.stderr)
    assert (prefix / "share" / "demo" / "data.txt").read_text()
    assert (prefix / "share" / "proj" / "proj.db").stat().st_size > 0


def archive_members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {member.name: member for member in tar.getmembers()}


def compare_archive(archive: Path, prefix: Path) -> list[str]:
    """Differences between a conda-pack archive and the prefix it packed.

    Every file, symlink and empty directory of the prefix must be in it with the same
    bytes, except what conda-pack itself rewrites: ``conda-meta`` records (it blanks
    their cache paths) and files that hold the prefix (it relocates those). It adds
    only its own ``bin/conda-unpack`` and activation scripts, and leaves out the
    top-level names it never packs (``pkgs``, ``envs``, ...).
    """
    ours = {"bin/conda-unpack", "bin/conda_unpack_progress.py", "bin/activate",
            "bin/activate.fish", "bin/deactivate"}
    problems = []
    members = archive_members(archive)
    on_disk = {rel: path for rel, path in _entries(prefix)
               if rel.split("/")[0] not in _NEVER_PACKED}
    for name in sorted(set(on_disk) - set(members)):
        problems.append(f"missing from the archive: {name}")
    for name in sorted(set(members) - set(on_disk) - ours):
        if not members[name].isdir():
            problems.append(f"not in the prefix: {name}")
    needle = str(prefix).encode()
    with tarfile.open(archive) as tar:
        for name, path in sorted(on_disk.items()):
            member = members.get(name)
            if member is None:
                continue
            if path.is_symlink():
                if not member.issym() or member.linkname != os.readlink(path):
                    problems.append(f"symlink differs: {name}")
                continue
            if not path.is_file():
                continue
            data = path.read_bytes()
            if name.startswith("conda-meta/") and name.endswith(".json") or needle in data:
                continue
            if not member.isfile() and not member.islnk():
                problems.append(f"not a file in the archive: {name}")
                continue
            got = tar.extractfile(member)
            if got is None or got.read() != data:
                problems.append(f"bytes differ: {name}")
    return problems


_NEVER_PACKED = {"pkgs", "envs", "conda-bld", ".conda_lock", "users", "conda-recipes",
                 ".index", ".unionfs", ".nonadmin", "python.app", "Launcher.app"}
"""Top-level names conda-pack skips (``conda_pack.core.load_files``)."""


def _entries(prefix: Path) -> list[tuple[str, Path]]:
    out = []
    for directory, dirs, files in os.walk(prefix):
        rel = os.path.relpath(directory, prefix)
        names = files + [d for d in dirs if os.path.islink(os.path.join(directory, d))]
        if not dirs and not files and rel != ".":
            out.append((rel, Path(directory)))
        for name in names:
            out.append((os.path.normpath(os.path.join(rel, name)), Path(directory, name)))
    return out


def records_problems(prefix: Path) -> list[str]:
    """Paths the records list that are missing or differ from their recorded size and
    sha256 (``sha256_in_prefix`` for files rewritten at install)."""
    problems = []
    for record in sorted((prefix / "conda-meta").glob("*.json")):
        doc = json.loads(record.read_text())
        for path in doc["files"]:
            if not os.path.lexists(prefix / path):
                problems.append(f"{record.name}: missing {path}")
        for entry in doc["paths_data"]["paths"]:
            target = prefix / entry["_path"]
            if entry.get("path_type") not in ("hardlink", "pyc_file") or not target.is_file():
                continue
            expected = entry.get("sha256_in_prefix") if "prefix_placeholder" in entry \
                else entry.get("sha256")
            if expected and sha256(target) != expected:
                problems.append(f"{record.name}: sha256 of {entry['_path']}")
            if "prefix_placeholder" not in entry and \
                    target.stat().st_size != entry.get("size_in_bytes"):
                problems.append(f"{record.name}: size of {entry['_path']}")
    return problems


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(root: Path) -> dict[str, str]:
    """Path -> sha256 of each file (``link:TARGET`` for symlinks) below ``root``."""
    out = {}
    for rel, path in _entries(root):
        out[rel] = f"link:{os.readlink(path)}" if path.is_symlink() else \
            sha256(path) if path.is_file() else "dir"
    return out


def record_paths(prefix: Path, name: str) -> list[str]:
    """The paths the record of package ``name`` lists."""
    for record in (prefix / "conda-meta").glob(f"{name}-*.json"):
        doc = json.loads(record.read_text())
        if doc["name"] == name:
            return list(doc["files"])
    raise AssertionError(f"no record of {name} in {prefix}")


__all__ = ["SITE", "WORKS", "archive_members", "check_works", "compare_archive", "conda_pack",
           "digests", "record_paths", "records_problems", "run_in", "unpack"]
