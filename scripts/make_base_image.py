#!/usr/bin/env python3
"""Make a tiny local base image that can run a conda prefix built on this machine.

    python scripts/make_base_image.py PREFIX [PREFIX ...]

prints the image's name, ``localhost/shrinkconda-base:<digest>``. The image holds only
``/bin/sh``, a few coreutils, GNU strip and the host libraries that they and the ELF
files of the prefixes load (found with ``ldd``), laid out as on the host (merged ``/usr``). No
registry is involved, building it takes a second, and its few megabytes let a
prefix's bytes dominate the size of every image built on it.

The name's digest covers every file put in the image, so it is made once per set of
host libraries: when an image of that name exists the script only prints it. This is
for the tests: the fixture prefix's python is the host's CPython, made relocatable,
so the host's libraries are exactly the ones it was linked against.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: What the Dockerfiles' RUN steps use besides the prefix's own python; shrinkconda's
#: strip phase runs GNU strip (binutils).
TOOLS = ("sh", "cp", "rm", "mkdir", "cat", "ls", "du", "env", "true", "strip")
#: glibc loads this one with dlopen (thread cancellation, unwinding), so ldd misses it.
DLOPENED = ("libgcc_s.so.1",)
REPOSITORY = "localhost/shrinkconda-base"
#: ``libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`` or ``/lib64/ld-linux... (0x...)``
_LDD_LINE = re.compile(r"^\s*(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$")
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


class ImageError(Exception):
    """The base image cannot be made; the message says why."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="+", type=Path, metavar="PREFIX",
                        help="a prefix whose ELF files must be able to run in the image")
    parser.add_argument("--repository", default=REPOSITORY,
                        help=f"the image's name without the tag (default: {REPOSITORY})")
    parser.add_argument("--tool", action="append", default=[], metavar="NAME",
                        help="also put /bin/NAME in the image, with its libraries "
                             "(repeatable; e.g. strace for --used-by)")
    args = parser.parse_args(argv)
    try:
        print(make_base_image(args.prefixes, args.repository, (*TOOLS, *args.tool)))
    except ImageError as exc:
        print(f"make_base_image: error: {exc}", file=sys.stderr)
        return 1
    return 0


def make_base_image(prefixes: list[Path], repository: str = REPOSITORY,
                    tools: tuple[str, ...] = TOOLS) -> str:
    """The name of a local image that runs ``prefixes``, imported if not there yet."""
    if shutil.which("podman") is None:
        raise ImageError("podman is not installed (apt-get install podman)")
    host_paths = needed_host_paths(prefixes, tools)
    with tempfile.TemporaryDirectory(prefix="shrinkconda-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        make_rootfs(root, host_paths)
        name = f"{repository}:{rootfs_digest(root)[:16]}"
        exists = subprocess.run(["podman", "image", "exists", name], check=False,
                                capture_output=True)
        if exists.returncode != 0:
            _import(root, name)
    return name


def needed_host_paths(prefixes: list[Path], wanted: tuple[str, ...] = TOOLS) -> list[str]:
    """The tools, plus every library outside the prefixes that ``ldd`` says they load."""
    tools = []
    for tool in wanted:
        path = f"/bin/{tool}"
        if not os.path.exists(path):
            raise ImageError(f"{path} is missing on this machine (strip: apt-get install "
                             "binutils)")
        tools.append(path)
    elves = tools + [str(p) for prefix in prefixes for p in elf_files(prefix)]
    # A prefix library that ldd finds on the host instead (through a RUNPATH that
    # still names the build machine) is the prefix's own once the prefix is moved.
    provided = {name for prefix in prefixes for _, _, names in os.walk(prefix)
                for name in names}
    inside = tuple(str(p.resolve()) + os.sep for p in prefixes)
    needed = set(tools)
    for elf in elves:
        for library in _ldd(elf):
            if not (os.path.realpath(library).startswith(inside)
                    or os.path.basename(library) in provided):
                needed.add(library)
    # Look for the dlopened ones where the loaded libraries are: right architecture.
    library_dirs = {os.path.dirname(p) for p in needed - set(tools)}
    needed.update(os.path.join(d, name) for d in library_dirs for name in DLOPENED
                  if os.path.exists(os.path.join(d, name)))
    return sorted(needed)


def elf_files(prefix: Path) -> list[Path]:
    """One path per ELF inode in the prefix (hard links of a package cache count once)."""
    seen: set[tuple[int, int]] = set()
    found = []
    for dirpath, _, filenames in os.walk(prefix):
        for name in filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            if not path.is_file() or path.is_symlink() or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with open(path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def make_rootfs(root: Path, host_paths: list[str]) -> None:
    """Lay ``host_paths`` out under ``root`` as the host has them, plus the bare minimum
    of directories and account files a RUN step expects."""
    for path in host_paths:
        add_host_path(path, root)
    for name in ("dev", "proc", "sys", "root", "etc", "opt"):
        (root / name).mkdir(exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc/passwd").write_text(_PASSWD)
    (root / "etc/group").write_text(_GROUP)


def add_host_path(path: str, root: Path) -> None:
    """Copy host ``path`` into ``root``; each symlink on the way stays a symlink
    (``/lib64 -> usr/lib64``), and what it points to is copied too."""
    parts = Path(path).parts
    for depth in range(2, len(parts) + 1):
        host = Path(*parts[:depth])
        if host.is_symlink():
            inside = root.joinpath(*parts[1:depth])
            if not os.path.lexists(inside):
                inside.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(os.readlink(host), inside)
            add_host_path(os.path.realpath(host), root)
            if depth < len(parts):
                add_host_path(os.path.join(os.path.realpath(host), *parts[depth:]), root)
            return
    inside = root.joinpath(*parts[1:])
    if os.path.isdir(path):
        inside.mkdir(parents=True, exist_ok=True)
    elif not inside.exists():
        inside.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, inside)


def rootfs_digest(root: Path) -> str:
    """A digest of every entry's path, mode and content (or link target)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            what = os.readlink(path)
        elif path.is_file():
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            what = ""
        mode = path.lstat().st_mode
        digest.update(f"{path.relative_to(root)}\0{mode:o}\0{what}\n".encode())
    return digest.hexdigest()


def _ldd(elf: str) -> list[str]:
    # ldd fails on static or relocatable ELF files; they load nothing, so that is fine.
    done = subprocess.run(["ldd", elf], check=False, capture_output=True, text=True)
    return [m.group(1) for m in map(_LDD_LINE.match, done.stdout.splitlines()) if m]


def _import(root: Path, name: str) -> None:
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."],
                           stdout=subprocess.PIPE)
    done = subprocess.run(["podman", "import", "--quiet", "-", name], stdin=tar.stdout,
                          check=False, capture_output=True, text=True)
    assert tar.stdout is not None
    tar.stdout.close()
    if tar.wait() != 0 or done.returncode != 0:
        raise ImageError(f"podman import {name} failed: {done.stderr.strip()}")


if __name__ == "__main__":
    sys.exit(main())
