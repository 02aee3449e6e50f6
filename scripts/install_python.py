#!/usr/bin/env python3
"""Install the real CPythons the tests need into private directories: 3.9, 3.13, 3.13t.

    python3 scripts/install_python.py 3.13 /opt/python3.13 3.13t /opt/python3.13t

Nothing is installed into the system. 3.9 is Debian bullseye's build, unpacked
(``scripts/install_python39.py``). 3.13 and the free-threaded 3.13t are built from the
source package of Debian trixie's ``python3.13`` (the release tarball, checked by apt
against the suite's signed index): trixie's binaries need glibc 2.38 and this system
(Debian 12) has 2.36, and no Debian suite has a free-threaded build nor any 3.12. The
build is CPython's plain ``configure --enable-shared`` (``--disable-gil`` for 3.13t)
compiled with ``-O1``, laid out as conda-forge's python is (``lib/python3.13t``,
``libpython3.13t.so``), with RUNPATH ``$ORIGIN/../lib``; it takes minutes, so CI keeps it in
``/opt`` and installs it only when it is missing. Versions given together that build from
the same source share one download and one unpacked tree, and build at the same time,
each in a build directory of its own. ``make install`` byte-compiles the stdlib at the
three optimization levels, as conda-forge's python ships it, except CPython's own test
suite (``test/``, ``idlelib/idle_test/``) beyond what conda-forge keeps of it
(``test/__init__.py``, ``test/support``): two thirds of the bytecode, which no test here
loads. Apt reads a source list of its own and keeps its lists and downloads in a temporary
directory. Each build goes to a staging directory and is moved into place last, so a
failed or interrupted run leaves no interpreter for ``.ci/run`` to take as installed. The
script then loads every extension module the build made.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
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
#: What CPython's Makefile keeps from its stdlib byte-compilation (``compileall -x``), and
#: what it keeps here: also the test suite, but for conda-forge's slice of it.
COMPILEALL_SKIP = "-x 'bad_coding|badsyntax|site-packages'"
COMPILEALL_SKIP_TESTS = ("-x 'bad_coding|badsyntax|site-packages"
                         "|/lib/python3[.][0-9]+t?/(test/(?!__init__[.]|support/)|idlelib/idle_test/)'")


def main(argv: list[str] | None = None) -> int:
    """Install each version given into the directory given after it; returns the exit
    status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", metavar="VERSION ROOT",
                        help=f"a version ({', '.join(('3.9', *SOURCES))}) and where to put it "
                             "(e.g. 3.13t /opt/python3.13t); more pairs may follow")
    args = parser.parse_args(argv)
    if len(args.pairs) % 2:
        parser.error("give a ROOT after each VERSION")
    pairs = [(v, Path(r).resolve()) for v, r in zip(args.pairs[::2], args.pairs[1::2])]
    for version, _ in pairs:
        if version not in ("3.9", *SOURCES):
            parser.error(f"unknown version {version!r}")
    unpacked = [(v, root) for v, root in pairs if v == "3.9"]
    built = [(v, root) for v, root in pairs if v != "3.9"]
    try:
        versions = [install_python39.install(root) for _, root in unpacked]
        versions += install_all(built)
    except InstallError as exc:
        print(f"install_python: error: {exc}", file=sys.stderr)
        return 1
    for reported, (version, root) in zip(versions, [*unpacked, *built]):
        print(f"Python {reported} in {root / 'bin' / f'python{version}'}", file=sys.stderr)
    return 0


def install(version: str, root: Path) -> str:
    """Build ``version`` from Debian's source and install it into ``root``; returns the
    interpreter's version as it reports it (``3.13.5t``)."""
    return install_all([(version, root)])[0]


def install_all(pairs: Sequence[tuple[str, Path]]) -> list[str]:
    """Build each (version, root) of ``pairs`` and install it there, those of one source
    from one unpacked tree and at the same time; returns the versions as the interpreters
    report them, in the order of ``pairs``."""
    for _, root in pairs:
        if root.exists():
            raise InstallError(f"{root} exists: remove it first")
    reported: dict[Path, str] = {}
    for source_package in sorted({SOURCES[version] for version, _ in pairs}):
        group = [(v, root) for v, root in pairs if SOURCES[v] == source_package]
        with tempfile.TemporaryDirectory(prefix="python-src-") as tmp:
            work = Path(tmp)
            tarball = download_source(work, *source_package)
            with tarfile.open(tarball) as tar:
                tar.extractall(work / "src", filter="data")
            source = next((work / "src").iterdir())
            # Two builds on two cores finish sooner side by side than one after the
            # other: one's serial steps (configure, linking, installing) leave the other
            # the cores.
            with ThreadPoolExecutor(max_workers=len(group)) as pool:
                done = pool.map(_build, repeat(source), repeat(work), *zip(*group))
                reported.update(zip((root for _, root in group), done))
    return [reported[root] for _, root in pairs]


def _build(source: Path, work: Path, version: str, root: Path) -> str:
    """Configure, compile and install ``version`` out of the tree ``source`` into
    ``root``, through a staging directory under ``work``; returns its reported version."""
    build = work / f"build-{version}"
    build.mkdir()
    flags = ["--disable-gil"] if version.endswith("t") else []
    jobs = str(os.cpu_count() or 2)
    _run([str(source / "configure"), "-q", f"--prefix={root}", "--enable-shared",
          "--without-ensurepip", *flags], cwd=build)
    _skip_test_bytecode(build / "Makefile")
    # ld takes a RUNPATH from LD_RUN_PATH as it is; through LDFLAGS, $ORIGIN would
    # have to survive configure, make and the shell.
    env = {**os.environ, "LD_RUN_PATH": "$ORIGIN/../lib"}
    # The tests need a real interpreter, not a fast one: -O1 without debug info
    # builds in about half the time of CPython's default -g -O3.
    _run(["make", "-s", f"-j{jobs}", "OPT=-DNDEBUG -O1"], cwd=build, env=env)
    staging = work / f"staging-{version}"
    _run(["make", "-s", "install", f"DESTDIR={staging}"], cwd=build, env=env)
    built = staging / root.relative_to(root.anchor)
    python = built / "bin" / f"python{version}"
    # Until it is moved, it finds its libpython through RUNPATH, its stdlib through
    # its own location: the check runs it where it is.
    reported = _run([str(python), "-I", "-c", CHECK]).strip()
    root.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), str(root))
    return reported


def _skip_test_bytecode(makefile: Path) -> None:
    """Make ``make install`` leave the test suite uncompiled (:data:`COMPILEALL_SKIP_TESTS`):
    the regex is written into the Makefile's command, which no make variable reaches."""
    text = makefile.read_text()
    if text.count(COMPILEALL_SKIP) != 1:
        raise InstallError(f"{makefile} does not byte-compile the stdlib with "
                           f"{COMPILEALL_SKIP} once: has the Makefile changed?")
    makefile.write_text(text.replace(COMPILEALL_SKIP, COMPILEALL_SKIP_TESTS))


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
