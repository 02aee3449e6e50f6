"""The parts that depend on the interpreter, on the CPythons besides the host's 3.11:
3.13 and the free-threaded 3.13t (`fixtures.pythons.EXTRA_VERSIONS`), each a real build
(scripts/install_python.py), with a prefix of its own python and a package built for it
(`fixtures.versioned`). The host's 3.11 runs the whole suite; this is the slice per
other version: default and aggressive shrinks with the stdlib strategies, both
``--python-code`` forms with their magic numbers and cache tags, conda-pack, ``--used-by``,
verification, a prefix that an upgrade left with two interpreters' trees, and a
free-threaded prefix with an extension that needs the GIL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from condatools import conda_pack, records_problems, run_in, unpack

from fixtures import pythons
from fixtures.install import copy_tree
from fixtures.pythons import Python
from fixtures.versioned import WORKS, build_versioned_prefix
from shrinkconda import Options, shrink

BYTECODE = Options(python_code="bytecode", strip_mode=None)
BOTH = Options(python_code="both", strip_mode=None)
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
#: The warning a free-threaded CPython gives when it imports an extension module that
#: did not declare it can run without the GIL.
GIL_WARNING = "The global interpreter lock (GIL) has been enabled to load module"


@pytest.fixture(scope="module", params=pythons.EXTRA_VERSIONS)
def py(request: pytest.FixtureRequest) -> Python:
    label = str(request.param)
    found = pythons.find(label)
    if found is None:
        pytest.skip(f"no Python {label} at {pythons.location(label)}: "
                    f"python3 scripts/install_python.py {label} /opt/python{label}")
    return found


@pytest.fixture(scope="module")
def template(py: Python, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_versioned_prefix(tmp_path_factory.mktemp(f"py{py.label}") / "prefix", py)


@pytest.fixture
def prefix(template: Path, tmp_path: Path) -> Iterator[Path]:
    copy = copy_tree(template, tmp_path / "prefix")
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


def _python(prefix: Path, code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(prefix / "bin/python"), *flags, "-c", code], check=False,
                          capture_output=True, text=True, env=ENV, cwd="/")


def _works(prefix: Path) -> None:
    run = _python(prefix, WORKS)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
    cli = run_in(prefix, "verdemo-cli", "2", "3")  # on PATH, as in an activated env
    assert cli.stdout.strip() == "5", cli.stderr


def _magic(prefix: Path) -> str:
    run = _python(prefix, "import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())")
    return run.stdout.strip()


def test_the_prefix_is_that_interpreter(py: Python, template: Path) -> None:
    lib = template / "lib" / py.name
    assert (lib / "os.py").is_file() and (template / "bin" / py.name).is_file()
    said = _python(template, "import sys, sysconfig; print(sys.prefix, repr(sys.abiflags), "
                   "sysconfig.get_config_var('EXT_SUFFIX'))").stdout.split()
    assert said == [str(template), repr(py.abiflags), py.ext_suffix]
    assert (lib / "site-packages" / "verdemo" / f"_ext{py.ext_suffix}").is_file()
    assert (lib / "site-packages/verdemo/__pycache__" / f"__init__.{py.cache_tag}.pyc").is_file()
    _works(template)


def test_default_and_aggressive_shrinks_keep_it_working(py: Python, prefix: Path) -> None:
    lib = prefix / "lib" / py.name
    report = shrink(prefix, Options())
    assert report.verified and not report.rolled_back, report.broken
    assert not (lib / "site-packages/verdemo/tests").exists()
    _works(prefix)

    report = shrink(prefix, Options(profile="aggressive"))

    assert report.verified and not report.rolled_back, report.broken
    # dev-tools: the components this stdlib has go, with their scripts; lib2to3 and
    # its 2to3 script were never there on 3.13.
    # (idlelib's test data keeps a stub that type-stubs finds is its module's only copy.)
    for gone in ("idlelib", "ensurepip", "turtledemo", "pydoc_data"):
        assert not (lib / gone / "__init__.py").exists(), gone
    assert not (lib / "lib2to3").exists() and not (prefix / "bin/2to3").exists()
    assert not (prefix / "bin" / f"idle{py.version}").exists()
    # aggressive converts to bytecode: compiled by this interpreter.
    assert not (lib / "site-packages/verdemo/__init__.py").exists()
    assert (lib / "site-packages/verdemo/__init__.pyc").read_bytes()[:4].hex() == _magic(prefix)
    assert not (prefix / "include" / py.name).exists()
    _works(prefix)
    assert records_problems(prefix) == []


def test_bytecode_form_compiles_with_its_own_magic_and_names_paths(
        py: Python, prefix: Path) -> None:
    site = prefix / py.site
    report = shrink(prefix, BYTECODE)

    assert report.verified and not report.rolled_back, report.broken
    assert not (site / "verdemo/__init__.py").exists()
    pyc = (site / "verdemo/__init__.pyc").read_bytes()
    assert pyc[:4].hex() == _magic(prefix)
    assert int.from_bytes(pyc[4:8], "little") == 0  # a plain (timestamp) header
    # The stdlib too, in this interpreter's lib/pythonX.Y[t].
    assert (prefix / "lib" / py.name / "os.pyc").is_file()
    assert not (prefix / "lib" / py.name / "os.py").exists()
    raised = _python(prefix, "import verdemo; verdemo.boom()")
    assert f'File "{site}/verdemo/__init__.py", line 6, in boom' in raised.stderr, raised.stderr
    _works(prefix)
    assert records_problems(prefix) == []


def test_both_form_writes_unchecked_pycs_under_its_cache_tag(py: Python, prefix: Path) -> None:
    site = prefix / py.site
    report = shrink(prefix, BOTH)

    assert report.verified and not report.rolled_back, report.broken
    pyc = site / f"verdemo/__pycache__/cli.{py.cache_tag}.pyc"
    head = pyc.read_bytes()[:16]
    assert head[:4].hex() == _magic(prefix) and int.from_bytes(head[4:8], "little") == 0b01
    # As a packager's zip leaves it: every mtime 1980. The pyc still loads (python -v
    # names the pyc it loads, or the .py it compiles).
    for path in site.rglob("*"):
        os.utime(path, (315532800, 315532800), follow_symlinks=False)
    verbose = _python(prefix, "import verdemo.cli", "-v")
    assert f"code object from '{pyc}'" in verbose.stderr, verbose.stderr[-2000:]
    assert (site / "verdemo/cli.py").is_file()
    _works(prefix)
    assert records_problems(prefix) == []


def test_conda_pack_carries_the_bytecode_form(py: Python, prefix: Path, tmp_path: Path) -> None:
    assert shrink(prefix, BYTECODE).verified
    archive = tmp_path / "env.tar.gz"
    packed = conda_pack(prefix, archive)
    assert packed.returncode == 0, packed.stderr
    moved = unpack(archive, tmp_path / "moved")
    _works(moved)
    assert (moved / py.site / "verdemo/__init__.pyc").is_file()


def test_used_by_keeps_what_the_app_loaded(py: Python, prefix: Path) -> None:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    lib = prefix / "lib" / py.name
    report = shrink(prefix, Options(used_by=("verdemo-cli 2 3",)))

    assert report.verified and not report.rolled_back, report.broken
    assert (lib / "site-packages/verdemo/cli.pyc").is_file()
    assert not (lib / "tkinter").exists() and not (lib / "idlelib").exists()
    cli = run_in(prefix, "verdemo-cli", "2", "3")
    assert cli.stdout.strip() == "5", cli.stderr


def test_only_the_active_interpreters_tree_is_converted(py: Python, prefix: Path) -> None:
    # What an upgrade leaves: the previous Python's tree, with its own bytecode.
    stale = {"3.13": "python3.11", "3.13t": "python3.13"}[py.label]
    old = prefix / "lib" / stale / "site-packages"
    # (without its tests, which the default tests strategy removes from any tree)
    shutil.copytree(prefix / py.site / "verdemo", old / "verdemo",
                    ignore=shutil.ignore_patterns("tests"))
    before = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}

    report = shrink(prefix, BYTECODE)

    assert report.verified and not report.rolled_back, report.broken
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file()} == before
    assert [n for n in report.notes if f"lib/{stale}" in n and "another Python" in n], \
        report.notes
    assert (prefix / py.site / "verdemo/__init__.pyc").is_file()


@pytest.mark.parametrize("py", ["3.13t"], indirect=True)
def test_a_gil_only_extension_still_imports_on_a_free_threaded_python(
        py: Python, prefix: Path) -> None:
    assert py.free_threaded
    before = _python(prefix, "import sys, verdemo; print(sys._is_gil_enabled())")
    assert GIL_WARNING in before.stderr and before.stdout.strip() == "True", before.stderr

    report = shrink(prefix, Options())

    assert report.verified and not report.rolled_back and not report.broken
    after = _python(prefix, "import sys, verdemo; print(sys._is_gil_enabled(), verdemo.add(1, 1))")
    assert GIL_WARNING in after.stderr and after.stdout.split() == ["True", "2"], after.stderr


@pytest.mark.parametrize("py", ["3.13t"], indirect=True)
def test_conda_doctor_finds_nothing_new(py: Python, prefix: Path, tmp_path: Path) -> None:
    from tests.realconda import conda_python, doctor

    conda = conda_python()
    found = doctor(conda, prefix, tmp_path)

    report = shrink(prefix, Options())

    assert report.verified and not report.rolled_back, report.broken
    assert doctor(conda, prefix, tmp_path) - found == set()
