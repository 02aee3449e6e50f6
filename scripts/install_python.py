#!/usr/bin/env python3
"""Install a real CPython the tests need into a private directory: 3.9, 3.13 or 3.13t.

    python3 scripts/install_python.py 3.13t /opt/python3.13t   # then bin/python3.13t

Nothing is installed into the system. 3.9 is Debian bullseye's build, unpacked
(``scripts/install_python39.py``). 3.13 and the free-threaded 3.13t are built from the
source package of Debian trixie's ``python3.13`` (the release tarball, checked by apt
against the suite's signed index): trixie's binaries need glibc 2.38 and this system
(Debian 12) has 2.36, and no Debian suite has a free-threaded build nor any 3.12. The
build is CPython's plain ``./configure --enable-shared`` (``--disable-gil`` for 3.13t)
compiled with ``-O1``, laid out as conda-forge's python is (``lib/python3.13t``,
``libpython3.13t.so``), with RUNPATH ``$ORIGIN/../lib``; it takes minutes, so CI keeps it in
``/opt`` and installs it only when it is missing. Apt reads a source list of its own and
keeps its lists and downloads in a temporary directory. The build goes to a staging
directory and is moved into place last, so a failed or interrupted run leaves no
interpreter for ``.ci/run`` to take as installed. The script then loads every extension
module the build made.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import install_python39  # a sibling script, not a package
from install_python39 import InstallError, private_apt

#: Version -> (Debian suite, source package). The source is the same for both 3.13s.
SOURCES = {"3.13": ("trixie", "python3.13"), "3.13t": ("trixie", "python3.13")}
#: Loads every extension module the build made (a missing library fails here, not in a
#: test) and prints the version; a free-threaded build must say so.
CHECK = """\
import glob, importlib, os, sys, sysconfig
for so in glob.glob(os.path.join(sysconfig.get_path("platstdlib"), "lib-dynload/*.so")):
    name = os.path.basename(so).split(".")[0]
    if not name.startswith(("_test", "_xxtest", "xx", "_ctypes_test")):
        importlib.import_module(name)
print("%d.%d.%d%s" % (*sys.version_info[:3], sys.abiflags))
"""


def main(argv: list[str] | None = None) -> int:
    """Install the version given into the directory given; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", choices=("3.9", *SOURCES))
    parser.add_argument("root", type=Path, help="where to put it (e.g. /opt/python3.13t)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        if args.version == "3.9":
            version = install_python39.install(root)
        else:
            version = install(args.version, root)
    except InstallError as exc:
        print(f"install_python: error: {exc}", file=sys.stderr)
        return 1
    print(f"Python {version} in {root / 'bin' / f'python{args.version}'}", file=sys.stderr)
    return 0


def install(version: str, root: Path) -> str:
    """Build ``version`` from Debian's source and install it into ``root``; returns the
    interpreter's version as it reports it (``3.13.5t``)."""
    if root.exists():
        raise InstallError(f"{root} exists: remove it first")
    suite, package = SOURCES[version]
    with tempfile.TemporaryDirectory(prefix="python-src-") as tmp:
        work = Path(tmp)
        tarball = download_source(work, suite, package)
        with tarfile.open(tarball) as tar:
            tar.extractall(work / "src", filter="data")
        source = next((work / "src").iterdir())
        flags = ["--disable-gil"] if version.endswith("t") else []
        jobs = str(os.cpu_count() or 2)
        _run([str(source / "configure"), "-q", f"--prefix={root}", "--enable-shared",
              "--without-ensurepip", *flags], cwd=source)
        # ld takes a RUNPATH from LD_RUN_PATH as it is; through LDFLAGS, $ORIGIN would
        # have to survive configure, make and the shell.
        env = {**os.environ, "LD_RUN_PATH": "$ORIGIN/../lib"}
        # The tests need a real interpreter, not a fast one: -O1 without debug info
        # builds in about half the time of CPython's default -g -O3.
        _run(["make", "-s", f"-j{jobs}", "OPT=-DNDEBUG -O1"], cwd=source, env=env)
        staging = work / "staging"
        _run(["make", "-s", "install", f"DESTDIR={staging}"], cwd=source, env=env)
        built = staging / root.relative_to(root.anchor)
        python = built / "bin" / f"python{version}"
        # Until it is moved, it finds its libpython through RUNPATH, its stdlib through
        # its own location: the check runs it where it is.
        reported = _run([str(python), "-I", "-c", CHECK]).strip()
        root.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(built), str(root))
    return reported


def download_source(work: Path, suite: str, package: str) -> Path:
    """``apt-get source --download-only`` of ``package`` from ``suite``, with apt's own
    lists kept under ``work``; returns the upstream tarball."""
    apt = private_apt(work, "deb-src", suite)
    _run([*apt, "source", "--download-only", f"{package}/{suite}"], cwd=work / "debs")
    found = sorted((work / "debs").glob("*.orig.tar.*z"))
    if not found:
        raise InstallError(f"apt downloaded no upstream tarball of {package}/{suite}")
    return found[0]


def _run(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
         ) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, check=False, capture_output=True,
                          text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-20:])
        raise InstallError(f"{' '.join(command)} failed:\n{tail}")
    return done.stdout


if __name__ == "__main__":
    sys.exit(main())
