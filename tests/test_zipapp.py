"""shrinkconda.pyz: built by scripts/build_zipapp.py, run by a conda prefix's own python.

Every run here is what a Dockerfile RUN step gets: stdin, stdout and stderr are not
terminals, no environment is activated, and only system directories are on PATH.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import NoReturn

import pytest
from test_plugins import PLUGIN_MODULE, _install_plugin
from treeutil import snapshot

import shrinkconda
from fixtures.builder import build_full_python_prefix
from shrinkconda import strategies

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "scripts" / "build_zipapp.py"
#: A RUN step's environment: no terminal type, no $CONDA_PREFIX, the host Python off PATH.
RUN_ENV = {"PATH": "/usr/bin:/bin"}
BUILTIN = tuple(s.name for s in strategies.BUILTIN)
#: What would betray a progress bar or colour in a build log.
_TERMINAL_NOISE = re.compile(r"\x1b\[|\r|[█▏▎▍▌▋▊▉]|it/s|entries/s")


def build_pyz(output: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run the build script; its own output is returned for the test to judge."""
    return subprocess.run([sys.executable, str(BUILD), "-o", str(output), *options],
                          check=False, capture_output=True, text=True)


def run_pyz(python: Path | str, pyz: Path, *args: str | Path, flags: tuple[str, ...] = (),
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python [FLAGS] shrinkconda.pyz ARGS`` as a RUN step runs it (stdin is /dev/null),
    with ``env`` added to the step's environment."""
    return subprocess.run([str(python), *flags, str(pyz), *map(str, args)],
                          env={**RUN_ENV, **(env or {})}, check=False,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)


def assert_plain(done: subprocess.CompletedProcess[str]) -> None:
    """Nothing in the output that only makes sense on a terminal."""
    for name, text in (("stdout", done.stdout), ("stderr", done.stderr)):
        match = _TERMINAL_NOISE.search(text)
        assert match is None, f"{name} has terminal output {match.group()!r}:\n{text}"


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zipapp of the installed dependencies: no network, runs on the fixture's 3.11."""
    output = tmp_path_factory.mktemp("pyz") / "shrinkconda.pyz"
    done = build_pyz(output, "--offline")
    assert done.returncode == 0, done.stderr
    return output


def test_archive_holds_shrinkconda_and_its_dependencies(pyz: Path) -> None:
    with zipfile.ZipFile(pyz) as archive:
        names = archive.namelist()
        main = archive.read("__main__.py").decode()
    for required in ("__main__.py", "shrinkconda/cli.py", "shrinkconda/strategies/base.py",
                     "click/__init__.py", "tqdm/__init__.py"):
        assert required in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # The editable install's metadata would describe the developer's checkout.
    assert not [n for n in names if n.startswith("shrinkconda-")]
    assert "dont_write_bytecode = True" in main
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")


def test_same_sources_build_the_same_bytes(pyz: Path, tmp_path: Path) -> None:
    # A byte-identical zipapp keeps a Dockerfile's `COPY shrinkconda.pyz` layer cached.
    again = tmp_path / "again.pyz"
    assert build_pyz(again, "--offline").returncode == 0
    assert again.read_bytes() == pyz.read_bytes()


def test_version_and_strategies_work_from_the_zipapp(pyz: Path, prefix: Path) -> None:
    # A copy: the interpreter writes its start-up modules' bytecode into its stdlib, which
    # would change what later audits of the shared template find.
    python = prefix / "bin" / "python"
    version = run_pyz(python, pyz, "--version")
    assert version.returncode == 0, version.stderr
    assert shrinkconda.__version__ in version.stdout
    listed = run_pyz(python, pyz, "strategies")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == list(BUILTIN)


def test_audit_then_shrink_with_the_prefix_python(pyz: Path, prefix: Path) -> None:
    python = prefix / "bin" / "python"
    audit = run_pyz(python, pyz, "audit", prefix)
    assert audit.returncode == 0, audit.stderr
    assert audit.stdout.startswith(f"shrinkconda audit (dry run, nothing changed): {prefix}\n")
    assert re.search(r"^pkgs-cache +[\d,]+ +[\d.]+ [KMG]iB$", audit.stdout, re.MULTILINE)
    assert re.search(r"^would free +[\d.]+ [KMG]iB", audit.stdout, re.MULTILINE)
    assert audit.stderr == ""
    assert_plain(audit)
    assert (prefix / "pkgs" / "urls.txt").exists()

    shrink = run_pyz(python, pyz, "shrink", "-y", prefix)
    assert shrink.returncode == 0, shrink.stderr
    assert shrink.stdout.startswith(f"shrinkconda shrink: {prefix}\n")
    assert re.search(r"^total +[\d,]+ +[\d.]+ [KMG]iB$", shrink.stdout, re.MULTILINE)
    assert re.search(r"^freed +[\d.]+ [KMG]iB", shrink.stdout, re.MULTILINE)
    assert shrink.stderr == ""
    assert_plain(shrink)
    assert os.listdir(prefix / "pkgs") == []
    still = subprocess.run([str(python), "-c", "import demopkg; print(demopkg.add(2, 3))"],
                           env=RUN_ENV, check=False, capture_output=True, text=True)
    assert still.stdout.strip() == "5", still.stderr


def test_a_run_leaves_no_bytecode_in_the_prefix(pyz: Path, prefix: Path) -> None:
    # The interpreter compiles what it imports while starting; the shrink removes that,
    # and the zipapp must not put any back while it finishes.
    done = run_pyz(prefix / "bin" / "python", pyz, "shrink", "-y", "-q", prefix)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert not list(prefix.rglob("__pycache__"))


def test_shrink_without_yes_never_waits_for_an_answer(pyz: Path, prefix: Path) -> None:
    done = run_pyz(prefix / "bin" / "python", pyz, "shrink", "--json", prefix)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no preview, no confirmation question
    assert_plain(done)
    report = json.loads(done.stdout)
    assert report["dry_run"] is False
    assert report["bytes_saved"] > 0


def test_a_failure_stops_the_build(pyz: Path, prefix: Path, tmp_path: Path) -> None:
    done = run_pyz(prefix / "bin" / "python", pyz, "shrink", "-y", tmp_path / "nope")
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.startswith("Error: ")
    assert_plain(done)


#: Where .ci/run unpacks Debian's CPython 3.9 (scripts/install_python39.py).
PYTHON39 = Path("/opt/python3.9/bin/python3.9")
#: Pythons older than the host's that the zipapp must run on: 3.9, the floor, which CI
#: installs, and 3.10 where the machine has one (pyenv's): no package registry the
#: machines reach ships a 3.10, so without one those tests skip, in CI too.
OLD_PYTHONS = ("3.9", "3.10")


def old_interpreter(version: str) -> str | None:
    """A CPython ``version`` (``3.9``): .ci/run's, on PATH or from pyenv, if there is one."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    pattern = os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")
    candidates = [str(PYTHON39) if version == "3.9" else None, shutil.which(f"python{version}"),
                  *sorted(glob.glob(pattern))]
    wanted = str(tuple(int(n) for n in version.split(".")))
    for candidate in filter(None, candidates):
        if not os.access(candidate, os.X_OK):
            continue
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                               check=False, capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == wanted:
            return candidate
    return None


def missing(reason: str) -> NoReturn:
    """CI installs what the 3.9 tests need, so there a missing piece fails; elsewhere the
    tests say what is missing and skip."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; .ci/run should have provided it")
    pytest.skip(reason)


@pytest.fixture(scope="module", params=OLD_PYTHONS)
def old_python(request: pytest.FixtureRequest) -> str:
    """A real CPython older than the host's: 3.9, the oldest shrinkconda supports, or 3.10."""
    version: str = request.param
    found = old_interpreter(version)
    if found is None and version == "3.9":
        missing("no Python 3.9 interpreter on this machine "
                f"(python3 scripts/install_python39.py {PYTHON39.parents[1]})")
    if found is None:
        pytest.skip(f"no Python {version} interpreter on this machine (pyenv's would do)")
    return found


@pytest.fixture(scope="module")
def pyz39(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default build: pip fetches dependency versions that still run on Python 3.9."""
    output = tmp_path_factory.mktemp("pyz39") / "shrinkconda.pyz"
    built = build_pyz(output)
    if built.returncode != 0 and "pip could not fetch" in built.stderr:
        missing(f"no package index reachable for 3.9-compatible wheels: {built.stderr}")
    assert built.returncode == 0, built.stderr
    assert "runs on Python >= 3.9" in built.stderr
    return output


def test_audit_and_shrink_run_on_an_old_python(old_python: str, pyz39: Path, prefix: Path) -> None:
    audit = run_pyz(old_python, pyz39, "audit", prefix)
    assert audit.returncode == 0, audit.stderr
    assert audit.stderr == ""
    assert re.search(r"^would free +[\d.]+ [KMG]iB", audit.stdout, re.MULTILINE)
    assert (prefix / "pkgs" / "urls.txt").exists()
    shrink = run_pyz(old_python, pyz39, "shrink", "-y", "--json", prefix)
    assert shrink.returncode == 0, shrink.stderr
    assert shrink.stderr == ""
    assert_plain(shrink)
    report = json.loads(shrink.stdout)
    # Verification ran the prefix's own python (3.11 here), started by an older one.
    assert report["verified"] is True and report["bytes_saved"] > 0
    assert os.listdir(prefix / "pkgs") == []
    assert not list(prefix.rglob("__pycache__"))
    still = subprocess.run([str(prefix / "bin" / "python"), "-c",
                            "import demopkg; print(demopkg.add(2, 3))"],
                           env=RUN_ENV, check=False, capture_output=True, text=True)
    assert still.stdout.strip() == "5", still.stderr


#: One config file with keys of every kind (value, list, flag, number), and the same
#: options on the command line.
CONFIG_39 = """\
profile = "aggressive"
skip = ["type-stubs", "headers"]
keep = ["share/doc/libdemo/*"]
keep-locale = ["de"]
strip-mode = "unneeded"
jobs = 1
by = "package"
json = true
quiet = true
verify-command = ["python -c 'import demopkg'"]
"""
OPTIONS_39 = ("--profile", "aggressive", "--skip", "type-stubs", "--skip", "headers",
              "--keep", "share/doc/libdemo/*", "--keep-locale", "de", "--strip-mode",
              "unneeded", "--jobs", "1", "--by", "package", "--json", "--quiet")


def test_a_config_file_on_an_old_python_gives_what_the_options_give_on_311(
        old_python: str, pyz39: Path, prefix: Path, tmp_path: Path) -> None:
    config = tmp_path / "shrinkconda.toml"
    config.write_text(CONFIG_39)
    before = snapshot(prefix)
    from_file = run_pyz(old_python, pyz39, "audit", "--config", config, prefix)
    assert from_file.returncode == 0, from_file.stderr
    # The prefix's python is the host's 3.11, which reads TOML with tomllib; -B, or its
    # start-up would write bytecode into the prefix being measured.
    assert sys.version_info[:2] >= (3, 11)
    from_options = run_pyz(prefix / "bin" / "python", pyz39, "audit", *OPTIONS_39, prefix,
                           flags=("-B",))
    assert from_options.returncode == 0, from_options.stderr
    assert from_file.stderr == from_options.stderr == ""
    assert from_file.stdout.splitlines() == from_options.stdout.splitlines()
    # Pythons before 3.11 have no tomllib: the old one read the file with vendored tomli.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from shrinkconda import config; "
            "print(config.tomllib.__name__)")
    reader = subprocess.run([old_python, "-c", code, str(pyz39)], env=RUN_ENV, check=False,
                            capture_output=True, text=True)
    assert reader.stdout.strip() == "shrinkconda._vendor.tomli", reader.stderr
    report = json.loads(from_file.stdout)
    names = [s["name"] for s in report["strategies"]]
    assert "sources" in names and "headers" not in names and "type-stubs" not in names
    assert report["bytes_saved"] > 0
    assert snapshot(prefix) == before


@pytest.mark.parametrize(("text", "message"), [
    ('profile = "safe"\nstrip_mode = "all"\n', "unknown key 'strip_mode'"),
    ('keep-locale = "de"\n', "key 'keep-locale' must be a list"),
    ("jobs = true\n", "key 'jobs' must be a string or a number"),
], ids=["unknown-key", "wrong-type", "flag-for-number"])
def test_a_bad_config_on_an_old_python_names_the_key_and_changes_nothing(
        old_python: str, pyz39: Path, prefix: Path, tmp_path: Path, text: str,
        message: str) -> None:
    config = tmp_path / "shrinkconda.toml"
    config.write_text(text)
    before = snapshot(prefix)
    done = run_pyz(old_python, pyz39, "shrink", "-y", "--config", config, prefix)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in errors[0] and str(config) in errors[0], done.stderr
    assert snapshot(prefix) == before


@pytest.fixture(scope="module")
def full_python_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prefix whose python has the whole stdlib with tkinter, and the tk package; only
    audited here, which changes nothing."""
    return build_full_python_prefix(tmp_path_factory.mktemp("full") / "prefix", ("demopkg",))


@pytest.mark.parametrize(("layout", "args"), [
    ("opt_in_prefix", ("--profile", "aggressive", "--by", "package", "--conda-pack-views",
                       "--keep-locale", "de", "--html", "{html}")),
    ("app_prefix", ("--used-by", "appdemo-cli", "--no-strip")),
    ("full_python_prefix", ("--profile", "aggressive", "--by", "package")),
], ids=["every-strategy", "used-by", "tcl-tk"])
def test_an_audit_on_an_old_python_prints_what_it_prints_on_311(
        old_python: str, pyz39: Path, layout: str, args: tuple[str, ...],
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    # Every strategy, the per-package table, the HTML page, the conda-pack views, a
    # traced app, and dev-tools reading ELF headers to take Tcl/Tk: what runs on 3.11
    # must give the same bytes on 3.9 and 3.10. Both interpreters are outside the prefix
    # (-S keeps the test venv's packages off the host's path), as --used-by keeps what
    # the running interpreter loaded from the prefix.
    if "--used-by" in args and shutil.which("strace") is None:
        missing("strace is not installed (apt-get install strace)")
    prefix = request.getfixturevalue(layout)
    outputs = []
    for name, python, flags in (("old", old_python, ()), ("host", sys.executable, ("-S",))):
        html = tmp_path / f"{name}.html"
        done = run_pyz(python, pyz39, "audit", "--json",
                       *(a.replace("{html}", str(html)) for a in args), prefix,
                       flags=(*flags, "-B"))
        assert done.returncode == 0, done.stderr
        outputs.append((done.stdout, done.stderr, html.read_bytes() if html.exists() else b""))
    assert outputs[0] == outputs[1]
    report = json.loads(outputs[0][0])
    assert report["bytes_saved"] > 0
    if layout == "full_python_prefix":
        # Nothing else needs libtcl/libtk: tk's files go (its record stays, with no
        # files: python depends on tk).
        tk = next(p for p in report["packages"] if p["name"] == "tk")
        assert "dev-tools" in tk["strategies"] and tk["bytes_saved"] > 0.99 * tk["size"]


def test_an_offline_build_says_which_pythons_it_runs_on(old_python: str,
                                                        tmp_path: Path) -> None:
    # --offline bundles the installed click: when that needs 3.10 (click 8.2 and later),
    # a real 3.9 gets the zipapp's one-line refusal, not a traceback from inside click,
    # and a 3.10 runs it.
    output = tmp_path / "offline.pyz"
    built = build_pyz(output, "--offline")
    assert built.returncode == 0, built.stderr
    floor = re.search(r"runs on Python >= 3\.(\d+) \(([^)]*)\)", built.stderr)
    assert floor is not None, built.stderr
    minor = subprocess.run([old_python, "-c", "import sys; print(sys.version_info[1])"],
                           check=True, capture_output=True, text=True).stdout.strip()
    done = run_pyz(old_python, output, "--version")
    if int(floor.group(1)) <= int(minor):
        assert done.returncode == 0 and shrinkconda.__version__ in done.stdout, done.stderr
    else:
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith(f"shrinkconda.pyz needs Python >= 3.{floor.group(1)} "
                                      f"({floor.group(2)}); this is 3.{minor}."), done.stderr
        assert done.stderr.count("\n") == 1


def test_a_plugin_twice_on_the_path_loads_once_on_an_old_python(
        old_python: str, pyz39: Path, tmp_path: Path) -> None:
    # Python 3.9's entry_points() yields a distribution once per sys.path entry that holds
    # it; 3.10 and later keep the first, the copy Python imports.
    site = _install_plugin(tmp_path, "shrinkconda_cssmaps",
                           {"css-maps": "shrinkconda_cssmaps:STRATEGY"}, PLUGIN_MODULE,
                           {"lean": "shrinkconda_cssmaps:PROFILE"})
    again = shutil.copytree(site, tmp_path / "again")
    env = {"PYTHONPATH": f"{site}:{again}"}
    listed = run_pyz(old_python, pyz39, "strategies", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [ln.split()[0] for ln in listed.stdout.splitlines()] == [*BUILTIN, "css-maps"]
    profiles = run_pyz(old_python, pyz39, "profiles", env=env)
    assert profiles.returncode == 0, profiles.stderr
    assert profiles.stdout.count("lean: only CSS maps") == 1


def test_a_config_file_works_from_the_zipapp(pyz: Path, prefix: Path, tmp_path: Path) -> None:
    config = tmp_path / "shrinkconda.toml"
    config.write_text('profile = "aggressive"\nskip = ["strip"]\njson = true\n')
    done = run_pyz(prefix / "bin" / "python", pyz, "audit", "--config", config, prefix)
    assert done.returncode == 0, done.stderr
    names = [s["name"] for s in json.loads(done.stdout)["strategies"]]
    assert "headers" in names and "strip" not in names
    # Pythons before 3.11 have no tomllib: the zipapp's own reader parses the same file.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from shrinkconda._vendor import tomli; "
            "print(tomli.load(open(sys.argv[2], 'rb')))")
    vendored = subprocess.run([str(prefix / "bin" / "python"), "-c", code, str(pyz), str(config)],
                              env=RUN_ENV, check=False, capture_output=True, text=True)
    assert vendored.returncode == 0, vendored.stderr
    assert vendored.stdout.strip() == str({"profile": "aggressive", "skip": ["strip"],
                                           "json": True})
