#!/usr/bin/env python3
"""Build ``shrinkconda.pyz``: shrinkconda and its pure-Python dependencies in one file.

    python scripts/build_zipapp.py -o dist/shrinkconda.pyz

Any Python from the oldest one shrinkconda supports runs the result, including a conda
environment's own ``bin/python``, so a Dockerfile can run shrinkconda without
installing anything into the environment it shrinks::

    RUN ... && /opt/env/bin/python shrinkconda.pyz shrink -y /opt/env && rm shrinkconda.pyz

The dependencies (click, tqdm) are copied from this interpreter's installed
distributions when those run on that oldest Python (``--min-python``, by default the
floor of ``requires-python``); otherwise pip downloads wheels that do. pip honours its
usual configuration, so ``PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR`` builds from a local
wheelhouse. ``--offline`` never downloads: it bundles what is installed and raises the
zipapp's floor to what those distributions need.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipapp
import zipfile
from importlib import metadata
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11: pip carries the same parser
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]
try:
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
except ImportError:  # not installed on its own; pip carries it
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment]
    from pip._vendor.packaging.specifiers import SpecifierSet  # type: ignore[assignment]

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "shrinkconda"
#: The shebang, so that ``./shrinkconda.pyz`` works where ``python3`` is on PATH.
INTERPRETER = "/usr/bin/env python3"
#: dist-info files worth shipping: licences and what ``importlib.metadata`` reads.
#: RECORD and INSTALLER describe an installation the zipapp is not.
_DIST_INFO_SKIP = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
#: Every archive member gets this time (1980-01-01, the zip epoch) unless
#: SOURCE_DATE_EPOCH says otherwise, so equal inputs give a byte-identical zipapp and
#: a Dockerfile's COPY of it stays cached.
_ZIP_EPOCH = 315532800

MAIN = '''\
# The entry point of shrinkconda.pyz, written by scripts/build_zipapp.py.
import sys

if sys.version_info < {floor!r}:
    sys.exit("shrinkconda.pyz needs Python >= {floor_text} ({why}); this is %s"
             % sys.version.split()[0])
# From inside a zip Python could only write bytecode into the environment being
# shrunk, putting back the __pycache__ directories a shrink has just removed.
sys.dont_write_bytecode = True

from shrinkconda.cli import main

main()
'''


class BuildError(Exception):
    """The zipapp cannot be built as asked; the message says what to do instead."""


def main(argv: list[str] | None = None) -> int:
    """Build the zipapp; returns the exit status."""
    args = _parser().parse_args(argv)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    floor = _parse_floor(args.min_python) if args.min_python else lowest_python(
        [SpecifierSet(project["requires-python"])], (3, 0))
    requirements = [Requirement(r) for r in project["dependencies"]]
    try:
        floor, bundled, why = build(args.output, requirements, floor, args.offline)
    except BuildError as exc:
        print(f"build_zipapp: error: {exc}", file=sys.stderr)
        return 1
    size = args.output.stat().st_size
    print(f"wrote {args.output} ({size / 1024:.0f} KiB): shrinkconda {project['version']}, "
          f"{', '.join(bundled)}; runs on Python >= {_text(floor)} ({why})", file=sys.stderr)
    return 0


def build(output: Path, requirements: list[Requirement], floor: tuple[int, int],
          offline: bool) -> tuple[tuple[int, int], list[str], str]:
    """Write the zipapp to ``output``; returns (its Python floor, bundled "name version"s,
    why that floor)."""
    with tempfile.TemporaryDirectory(prefix="shrinkconda-pyz-") as tmp:
        staging = Path(tmp) / "app"
        shutil.copytree(PACKAGE, staging / PACKAGE.name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        try:
            installed = installed_closure(requirements, floor)
            needs = lowest_python([_requires_python(d) for d in installed], floor)
        except BuildError:
            if offline:
                raise
            installed, needs = [], None  # not installed here: fetch them
        if installed and (needs == floor or offline):
            assert needs is not None
            dists = [copy_installed(d, staging) for d in installed]
        else:
            dists = download(requirements, floor, staging, Path(tmp) / "wheels")
            needs = lowest_python([_requires_python(d) for d in dists], floor)
            if needs != floor:
                raise BuildError(f"pip fetched distributions that need Python >= "
                                 f"{_text(needs)}, not {_text(floor)}")
        why = _why(dists, needs) if needs != floor else "shrinkconda's own floor"
        (staging / "__main__.py").write_text(
            MAIN.format(floor=needs, floor_text=_text(needs), why=why))
        _pin_times(staging)
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(f".{output.name}.partial")
        zipapp.create_archive(staging, partial, interpreter=INTERPRETER, compressed=True)
        os.replace(partial, output)
        bundled = [f"{d.metadata['Name']} {d.version}" for d in dists]
    return needs, bundled, why


def installed_closure(requirements: list[Requirement],
                      floor: tuple[int, int]) -> list[metadata.Distribution]:
    """The installed distributions the requirements need, dependencies included, with
    environment markers evaluated for the floor Python on this platform."""
    marker_env = {"python_version": _text(floor), "python_full_version": f"{_text(floor)}.0",
                  "extra": ""}
    found: dict[str, metadata.Distribution] = {}
    todo = list(requirements)
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate(marker_env):
            continue
        key = req.name.lower().replace("_", "-")
        if key in found:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise BuildError(f"{req.name} is not installed for {sys.executable}, and "
                             "--offline bundles only what is installed") from None
        if not req.specifier.contains(dist.version, prereleases=True):
            raise BuildError(f"installed {req.name} {dist.version} does not match {req}")
        found[key] = dist
        todo += [Requirement(r) for r in dist.requires or ()]
    return sorted(found.values(), key=lambda d: d.metadata["Name"].lower())


def copy_installed(dist: metadata.Distribution, staging: Path) -> metadata.Distribution:
    """Copy an installed distribution's importable files and dist-info into ``staging``."""
    for file in dist.files or ():
        parts = file.parts
        if parts[0] == ".." or "__pycache__" in parts or file.suffix == ".pyc":
            continue  # console scripts live outside site-packages; bytecode is per-version
        if parts[0].endswith(".dist-info") and file.name in _DIST_INFO_SKIP:
            continue
        target = staging.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(str(dist.locate_file(file)), target)
    return metadata.PathDistribution(staging / _dist_info_name(dist))


def download(requirements: list[Requirement], floor: tuple[int, int], staging: Path,
             wheels: Path) -> list[metadata.Distribution]:
    """Have pip fetch pure-Python wheels that run on ``floor`` and unpack them."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
               "--python-version", _text(floor), "--dest", str(wheels),
               *(str(r) for r in requirements)]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(
            f"pip could not fetch {', '.join(r.name for r in requirements)} for Python "
            f"{_text(floor)}:\n{done.stderr.strip()}\nUse a wheelhouse "
            "(PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR), or --offline to bundle the installed "
            "versions and accept the Python floor they need."
        )
    dists = []
    for wheel in sorted(wheels.glob("*.whl")):
        if not wheel.name.endswith("-none-any.whl"):
            raise BuildError(f"{wheel.name} is not pure Python; a zipapp cannot carry it")
        dists.append(_unpack_wheel(wheel, staging))
    return dists


def lowest_python(specifiers: list[SpecifierSet], floor: tuple[int, int]) -> tuple[int, int]:
    """The lowest Python 3.x, from ``floor`` up, that every specifier admits."""
    for minor in range(floor[1], 100):
        if all(spec.contains(f"3.{minor}", prereleases=True) for spec in specifiers):
            return (3, minor)
    raise BuildError(f"no Python 3 satisfies {', '.join(map(str, specifiers))}")


def _unpack_wheel(wheel: Path, staging: Path) -> metadata.Distribution:
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            parts = member.filename.split("/")
            if member.is_dir() or "__pycache__" in parts:
                continue
            if parts[0].endswith(".data"):
                # Only library files belong in the zipapp, not scripts or headers.
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue
                parts = parts[2:]
            if parts[0].endswith(".dist-info") and parts[-1] in _DIST_INFO_SKIP:
                continue
            target = staging.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(member))
    name, version = wheel.name.split("-")[:2]
    return metadata.PathDistribution(staging / f"{name}-{version}.dist-info")


def _dist_info_name(dist: metadata.Distribution) -> str:
    for file in dist.files or ():
        if file.parts[0].endswith(".dist-info"):
            return file.parts[0]
    raise BuildError(f"{dist.metadata['Name']} has no .dist-info in its RECORD")


def _requires_python(dist: metadata.Distribution) -> SpecifierSet:
    return SpecifierSet(dist.metadata["Requires-Python"] or "")


def _why(dists: list[metadata.Distribution], needs: tuple[int, int]) -> str:
    culprits = [f"{d.metadata['Name']} {d.version}" for d in dists
                if not _requires_python(d).contains(f"3.{needs[1] - 1}", prereleases=True)]
    return f"its bundled {', '.join(culprits)} {'does' if len(culprits) == 1 else 'do'}"


def _pin_times(root: Path) -> None:
    stamp = int(os.environ.get("SOURCE_DATE_EPOCH", _ZIP_EPOCH))
    for path in root.rglob("*"):
        os.utime(path, (stamp, stamp))


def _parse_floor(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    if major != "3" or not minor.isdigit():
        raise SystemExit(f"build_zipapp: error: --min-python wants 3.N, not {text!r}")
    return (3, int(minor))


def _text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Build shrinkconda.pyz, a single-file shrinkconda for any Python >= 3.9.")
    parser.add_argument("-o", "--output", type=Path, default=REPO / "dist" / "shrinkconda.pyz",
                        help="where to write the zipapp (default: dist/shrinkconda.pyz)")
    parser.add_argument("--min-python", metavar="3.N",
                        help="oldest Python the zipapp must run on "
                             "(default: the floor of requires-python)")
    parser.add_argument("--offline", action="store_true",
                        help="never download: bundle the installed dependencies, raising the "
                             "zipapp's Python floor to what they need")
    return parser


if __name__ == "__main__":
    sys.exit(main())
