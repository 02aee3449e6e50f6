#!/usr/bin/env python3
"""Unpack Debian bullseye's CPython 3.9 into a private directory, for the zipapp's tests.

    python3 scripts/install_python39.py /opt/python3.9   # then /opt/python3.9/bin/python3.9

shrinkconda supports Python >= 3.9 and the zipapp runs on a conda environment's own
python, so the tests run it on a real 3.9. Debian 12 ships only 3.11; Debian 11's
``python3.9`` is a real CPython 3.9 build. This script changes nothing in the system:
apt reads a bullseye source list of its own, keeps its lists and downloads in a temporary
directory, and ``dpkg-deb -x`` unpacks the packages into ``DIR`` without installing them
(no dpkg database entry, no file outside ``DIR``). The Debian mirror is the one the
system's own sources name, with the suite changed. Python finds its standard library
from where its binary is, so the unpacked tree runs as it is, once the extension modules
that need bullseye's libffi7, libssl1.1 or libmpdec3 (``ctypes``, ``ssl``, ``hashlib``,
``decimal``) find them beside it: bullseye's ``patchelf``, unpacked in the temporary
directory, sets their RUNPATH. The script then loads every extension module.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SUITE = "bullseye"
#: The interpreter, its standard library with distutils (so that a venv made from it
#: runs pip), and the libraries of it that a bookworm system with python3 lacks: bookworm
#: has no libffi7 nor libssl1.1, and its python3.11 does without libmpdec3.
PACKAGES = ("python3.9-minimal", "libpython3.9-minimal", "libpython3.9-stdlib",
            "python3-distutils", "python3-lib2to3", "libffi7", "libssl1.1", "libmpdec3")
#: The libraries above, which stdlib extension modules find through their RUNPATH.
BESIDE = ("libffi.so.7", "libssl.so.1.1", "libcrypto.so.1.1", "libmpdec.so.3")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: Loads every extension module of the standard library, so that a missing shared
#: library fails here and not in the middle of a test; prints the version.
CHECK = """\
import glob, importlib, os, sys
for so in glob.glob(os.path.join(sys.base_prefix, "lib/python3.9/lib-dynload/*.so")):
    importlib.import_module(os.path.basename(so).split(".")[0])
print("%d.%d.%d" % sys.version_info[:3])
"""


class InstallError(Exception):
    """The interpreter could not be unpacked; the message says why."""


def main(argv: list[str] | None = None) -> int:
    """Unpack the interpreter into the directory given; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="where to unpack it (e.g. /opt/python3.9)")
    root = parser.parse_args(argv).root.resolve()
    try:
        version = install(root)
    except InstallError as exc:
        print(f"install_python39: error: {exc}", file=sys.stderr)
        return 1
    print(f"Python {version} in {root / 'bin' / 'python3.9'}", file=sys.stderr)
    return 0


def install(root: Path) -> str:
    """Download and unpack the packages into ``root``; returns the interpreter's version."""
    with tempfile.TemporaryDirectory(prefix="python39-apt-") as tmp:
        work = Path(tmp)
        apt = private_apt(work, "deb", SUITE)
        (work / "tools").mkdir()
        # pkg/suite: the system's newer python3-distutils would otherwise be the candidate.
        _run([*apt, "download", *(f"{p}/{SUITE}" for p in (*PACKAGES, "patchelf"))],
             cwd=work / "debs")
        for deb in sorted((work / "debs").glob("*.deb")):
            target = work / "tools" if deb.name.startswith("patchelf_") else root
            _run(["dpkg-deb", "-x", str(deb), str(target)])
        link_beside(root, work / "tools" / "usr" / "bin" / "patchelf")
    version = _run([str(root / "usr" / "bin" / "python3.9"), "-c", CHECK]).strip()
    # Last, so that a failed or interrupted run leaves no bin/python3.9 for .ci/run to
    # take as installed. A symlink, not a script: Python finds its prefix through it,
    # and sys.executable (what a venv or a subprocess starts) is the interpreter itself.
    python = root / "bin" / "python3.9"
    python.parent.mkdir(exist_ok=True)
    if python.is_symlink() or python.exists():
        python.unlink()
    python.symlink_to(root / "usr" / "bin" / "python3.9")
    return version


def link_beside(root: Path, patchelf: Path) -> None:
    """Point the RUNPATH of each extension module that needs one of :data:`BESIDE` (and of
    libssl, which needs libcrypto) at the directory the packages unpacked them to."""
    found = {lib.name: lib.parent for name in BESIDE for lib in root.glob(f"usr/lib/*/{name}")}
    if set(found) != set(BESIDE):
        raise InstallError(f"the packages did not unpack {', '.join(set(BESIDE) - set(found))}")
    libs = found["libffi.so.7"]
    objects = [*sorted(root.glob("usr/lib/python3.9/lib-dynload/*.so")), libs / "libssl.so.1.1"]
    for obj in objects:
        needed = _run([str(patchelf), "--print-needed", str(obj)]).split()
        if set(needed) & set(BESIDE):
            rpath = "$ORIGIN/" + os.path.relpath(libs, obj.parent)
            _run([str(patchelf), "--set-rpath", rpath, str(obj)])


def private_apt(work: Path, kind: str, suite: str) -> list[str]:
    """An ``apt-get`` command line whose only source is Debian ``suite`` (``kind``:
    ``deb`` or ``deb-src``) and whose lists and cache live under ``work``, its lists
    updated; ``work/debs`` is made for downloads. The system's apt state is not touched."""
    signed = f"[signed-by={KEYRING}] " if KEYRING.exists() else ""
    (work / "sources.list").write_text(f"{kind} {signed}{debian_mirror()} {suite} main\n")
    for sub in ("parts", "debs", "lists/partial", "cache/archives/partial"):
        (work / sub).mkdir(parents=True)
    apt = ["apt-get", "-qq", "-o", f"Dir::Etc::SourceList={work / 'sources.list'}",
           "-o", f"Dir::Etc::SourceParts={work / 'parts'}",
           "-o", f"Dir::State::Lists={work / 'lists'}",
           "-o", f"Dir::Cache={work / 'cache'}", "-o", "APT::Sandbox::User=root"]
    _run([*apt, "update"])
    return apt


def debian_mirror() -> str:
    """The first Debian mirror the system's apt sources name for its own release."""
    release = _os_release().get("VERSION_CODENAME", "")
    sources = Path("/etc/apt/sources.list")
    candidates = [sources] if sources.exists() else []
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(_deb822_field(line) for line in stanza.splitlines()
                          if ":" in line and not line.startswith(("#", " ")))
            if release in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
    for path in candidates:
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line).split()  # drop [options]
            if len(words) >= 3 and words[0] == "deb" and words[2] == release:
                return words[1]
    raise InstallError(f"no apt source of this system names Debian {release!r}; "
                       "this script needs a Debian system")


def _deb822_field(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip(), value.strip()


def _os_release() -> dict[str, str]:
    text = Path("/etc/os-release").read_text()
    pairs = (line.partition("=") for line in text.splitlines() if "=" in line)
    return {name: value.strip().strip('"') for name, _, value in pairs}


def _run(command: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise InstallError(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    return done.stdout


if __name__ == "__main__":
    sys.exit(main())
