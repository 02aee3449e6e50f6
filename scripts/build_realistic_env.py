#!/usr/bin/env python3
"""Build a realistic data-science conda prefix offline: PyPI wheels made into .conda packages.

    .venv/bin/python scripts/build_realistic_env.py DEST [--force] [--with-dev-tools]
        [--full-stdlib] [--pkgs-dir DIR] [--python 3.13]

numpy, scipy, pandas, matplotlib and scikit-learn with their dependencies (pinned cp311
manylinux wheels, test suites and auditwheel's patchelf-rewritten ``*.libs/`` kept) plus
the host CPython as a ``python`` package, indexed into a local channel and installed by
py-rattler into DEST with the package cache at ``DEST/pkgs`` (archives and extracted
packages hard-linked into the env), the way a miniconda base install looks, or with
``--pkgs-dir DIR`` from a cache outside it, as named envs, micromamba and pixi have it.
``--full-stdlib`` packages the stdlib as conda-forge's python package has it (``idlelib``,
``tkinter``, ``turtledemo``, ``ensurepip``, ``lib2to3``, bytecode, ``bin/idle3``) and adds
the ``tk`` package (the host's Tcl/Tk) it depends on. ``--python 3.13`` (or ``3.13t``)
builds it for that interpreter instead of the host's (``scripts/install_python.py``
installs it): its python package, its wheels (cp313), bytecode compiled by it.

Downloads go to ``<fixture cache>/wheels`` and built packages to
``<fixture cache>/packages``; a warm rebuild only installs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from fixtures import pythons
from fixtures.builder import build_recipe, fixture_cache_dir
from fixtures.conda import add_to_channel, index_channel
from fixtures.cpython import python_recipe, tk_recipe
from fixtures.install import install
from fixtures.pythons import Python
from fixtures.wheels import Wheel, cached_wheels, wheel_recipe

#: The workload. Every version has cp311 manylinux x86_64 wheels (or is pure Python).
PINS = (
    "numpy==2.3.5",
    "scipy==1.16.3",
    "pandas==2.3.3",
    "matplotlib==3.10.7",
    "scikit-learn==1.7.2",
    "python-dateutil==2.9.0.post0",
    "pytz==2025.2",
    "tzdata==2025.2",
    "six==1.17.0",
    "contourpy==1.3.3",
    "cycler==0.12.1",
    "fonttools==4.60.1",
    "kiwisolver==1.4.9",
    "packaging==25.0",
    "pillow==12.0.0",
    "pyparsing==3.2.5",
    "joblib==1.5.2",
    "threadpoolctl==3.6.0",
)
#: What the user asks for; the solver brings in the rest from the packages' depends.
SPECS = ("python", "numpy", "scipy", "pandas", "matplotlib", "scikit-learn")
#: With --with-dev-tools: the installers a conda python env normally carries.
DEV_TOOL_PINS = ("pip==24.3.1", "setuptools==75.6.0", "wheel==0.45.1")


def wheels(cache: Path, pins: tuple[str, ...] = PINS, py: Python | None = None
           ) -> list[Wheel]:
    """The pinned wheels for ``py`` (default the host's), downloading only those not
    cached yet."""
    return cached_wheels(pins, cache / "wheels", py)


def channel(cache: Path, archives: list[tuple[str, Path]]) -> Path:
    """A local channel of ``archives``, indexed once and kept in the cache by content."""
    key = hashlib.sha256("\n".join(str(a) for _, a in archives).encode()).hexdigest()[:16]
    final = cache / "channels" / f"realistic-{key}"
    if (final / "linux-64" / "repodata.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".index-") as tmp:
        staged = Path(tmp) / "channel"
        for subdir, archive in archives:
            add_to_channel(staged, archive, subdir)
        index_channel(staged)
        try:
            staged.rename(final)
        except OSError:
            if not final.is_dir():  # a concurrent build of the same channel may have won
                raise
    return final


def summary(dest: Path) -> dict[str, object]:
    """What the prefix holds, for the build log and BENCHMARKS.md."""
    du = subprocess.run(["du", "-sb", str(dest)], capture_output=True, text=True, check=True)
    du_env = subprocess.run(["du", "-sb", "--exclude=./pkgs", "."], cwd=dest,
                            capture_output=True, text=True, check=True)
    entries = sum(1 for _ in dest.rglob("*"))
    records = sorted(p.stem for p in (dest / "conda-meta").glob("*.json"))
    return {"prefix": str(dest), "packages": len(records), "entries": entries,
            "du_sb": int(du.stdout.split()[0]),
            "du_sb_without_pkgs": int(du_env.stdout.split()[0])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path, help="the prefix to create")
    parser.add_argument("--force", action="store_true", help="replace DEST if it exists")
    parser.add_argument("--pkgs-dir", type=Path, default=None,
                        help="the package cache to install from (default: DEST/pkgs, a base "
                             "install; elsewhere, as for conda's envs/, micromamba and pixi)")
    parser.add_argument("--with-dev-tools", action="store_true",
                        help=f"also install {', '.join(DEV_TOOL_PINS)}, as a conda python env "
                             "has them")
    parser.add_argument("--full-stdlib", action="store_true",
                        help="the stdlib as conda-forge's python package has it, with its tk")
    parser.add_argument("--python", default=None, metavar="X.Y[t]",
                        help="build it for this interpreter (scripts/install_python.py), "
                             "not the host's")
    parser.add_argument("--cache", type=Path, default=None,
                        help="fixture cache (default: $SHRINKCONDA_FIXTURE_CACHE or "
                             ".fixture-cache/)")
    args = parser.parse_args(argv)
    dest: Path = args.dest.resolve()
    if dest.exists():
        if not args.force:
            parser.error(f"{dest} exists; pass --force to replace it")
        shutil.rmtree(dest)
    cache = args.cache or fixture_cache_dir()
    py = None
    if args.python:
        py = pythons.find(args.python)
        if py is None:
            parser.error(f"no Python {args.python} at {pythons.location(args.python)}: "
                         f"scripts/install_python.py {args.python} /opt/python{args.python}")
    timings: dict[str, float] = {}

    start = time.perf_counter()
    pins = PINS + (DEV_TOOL_PINS if args.with_dev_tools else ())
    specs = SPECS + (tuple(p.split("==")[0] for p in DEV_TOOL_PINS) if args.with_dev_tools
                     else ())
    found = wheels(cache, pins, py)
    timings["download"] = time.perf_counter() - start

    start = time.perf_counter()
    names = [w.name for w in found]
    interpreter = [python_recipe(full_stdlib=True, python=py), tk_recipe()] \
        if args.full_stdlib else [python_recipe(python=py)]
    recipes = [*interpreter, *(wheel_recipe(w, ["python", *names], py) for w in found)]
    archives = [(r.subdir, build_recipe(r, cache)) for r in recipes]
    timings["packages"] = time.perf_counter() - start

    start = time.perf_counter()
    chan = channel(cache, archives)
    timings["channel"] = time.perf_counter() - start

    start = time.perf_counter()
    install(dest, specs, chan, args.pkgs_dir.resolve() if args.pkgs_dir else dest / "pkgs")
    timings["install"] = time.perf_counter() - start

    info = summary(dest)
    info["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    info["total_s"] = round(sum(timings.values()), 2)
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
