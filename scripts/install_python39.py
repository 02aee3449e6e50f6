#!/usr/bin/env python3
"""Unpack Debian bullseye's CPython 3.9 into a private directory, for the zipapp's tests.

    python3 scripts/install_python39.py /opt/python3.9   # then /opt/python3.9/bin/python3.9

shrinkconda supports Python >= 3.9 and the zipapp runs on a conda environment's own
python, so the tests run it on a real 3.9. Debian 12 ships only 3.11; Debian 11's
``python3.9`` is a real CPython 3.9 build. This script changes nothing in the system:
apt reads a bullseye source list of its own, keeps its lists and downloads in a temporary
directory, and ``dpkg -x`` unpacks the packages into ``DIR`` without installing them (no
dpkg database entry, no file outside ``DIR``). The Debian mirror is the one the
system's own sources name, with the suite changed. Python finds its standard library
from where its binary is, so the unpacked tree runs as it is; ``DIR/bin/python3.9``
puts bullseye's libffi7, libssl1.1 and libmpdec3 (for ``ctypes``, ``ssl``, ``hashlib``,
``decimal``) on the library path; the script checks that every extension module loads.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SUITE = "bullseye"
#: The interpreter, its standard library, and the libraries of it that a bookworm system
#: with python3 may lack (bookworm has no libffi7 nor libssl1.1, and its python3.11
#: does without libmpdec3); the rest (libsqlite3-0, liblzma5, ...) python3 brings.
PACKAGES = ("python3.9-minimal", "libpython3.9-minimal", "libpython3.9-stdlib",
            "libffi7", "libssl1.1", "libmpdec3")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: Loads every extension module of the standard library, so that a missing shared
#: library fails here and not in the middle of a test; prints the version.
CHECK = """\
import glob, importlib, os, sys
for so in glob.glob(os.path.join(sys.base_prefix, "lib/python3.9/lib-dynload/*.so")):
    importlib.import_module(os.path.basename(so).split(".")[0])
print("%d.%d.%d" % sys.version_info[:3])
"""
WRAPPER = """\
#!/bin/sh
# Debian {suite}'s python3.9, unpacked by scripts/install_python39.py; its libffi7,
# libssl1.1 and libmpdec3 are beside it, not in the system.
LD_LIBRARY_PATH="{libs}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" \\
    exec "{root}/usr/bin/python3.9" "$@"
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
        signed = f"[signed-by={KEYRING}] " if KEYRING.exists() else ""
        (work / "sources.list").write_text(f"deb {signed}{debian_mirror()} {SUITE} main\n")
        (work / "parts").mkdir()
        (work / "debs").mkdir()
        apt = ["apt-get", "-qq", "-o", f"Dir::Etc::SourceList={work / 'sources.list'}",
               "-o", f"Dir::Etc::SourceParts={work / 'parts'}",
               "-o", f"Dir::State::Lists={work / 'lists'}",
               "-o", f"Dir::Cache={work / 'cache'}", "-o", "APT::Sandbox::User=root"]
        for sub in ("lists/partial", "cache/archives/partial"):
            (work / sub).mkdir(parents=True)
        _run([*apt, "update"])
        _run([*apt, "download", *PACKAGES], cwd=work / "debs")
        for deb in sorted((work / "debs").glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(root)])
    python = root / "bin" / "python3.9"
    python.parent.mkdir(exist_ok=True)
    libs = sorted({str(lib.parent) for lib in root.glob("usr/lib/*/libffi.so.7")})
    if not libs:
        raise InstallError(f"libffi7 did not unpack a libffi.so.7 under {root}/usr/lib")
    python.write_text(WRAPPER.format(suite=SUITE, root=root, libs=":".join(libs)))
    python.chmod(0o755)
    return _run([str(python), "-c", CHECK]).strip()


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
