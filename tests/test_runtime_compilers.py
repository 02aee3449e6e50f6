"""Runtime compilers under the aggressive profile: what a package compiles against at
run time stays (real cffi, pip-installed, compiling a C extension against Python's
headers after the shrink), and the table names it in the report."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.builder import fixture_cache_dir
from fixtures.gpu import cffi_wheels, pip_install
from fixtures.install import copy_tree
from shrinkconda import Options, shrink
from shrinkconda import runtime_compilers as rc
from shrinkconda.scan import scan

SITE = "lib/python3.11/site-packages"
#: cffi's API mode: builds ``_demo`` with gcc against include/python3.11 and cffi's headers.
COMPILE = """\
import sys, tempfile
from cffi import FFI
ffi = FFI()
ffi.cdef("int twice(int);")
ffi.set_source("_demo", "static int twice(int x) { return 2 * x; }")
out = tempfile.mkdtemp()
ffi.compile(tmpdir=out)
sys.path.insert(0, out)
import _demo
assert _demo.lib.twice(21) == 42
"""


@pytest.fixture(scope="module")
def template_cffi_prefix(template_app_prefix: Path,
                         tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app prefix with cffi pip-installed; do not modify."""
    prefix = copy_tree(template_app_prefix, tmp_path_factory.mktemp("cffi") / "prefix")
    pip_install(prefix, *cffi_wheels(fixture_cache_dir() / "wheels"))
    return prefix


@pytest.fixture
def cffi_prefix(template_cffi_prefix: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of `template_cffi_prefix`."""
    yield copy_tree(template_cffi_prefix, tmp_path / "prefix")


def _compiles(prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(prefix / "bin/python"), "-c", COMPILE], capture_output=True,
                          text=True, check=False, cwd=prefix.parent)


def test_cffi_still_compiles_after_an_aggressive_shrink(cffi_prefix: Path) -> None:
    assert _compiles(cffi_prefix).returncode == 0  # it works before
    report = shrink(cffi_prefix, Options(profile="aggressive", strip_mode=None))
    assert not report.rolled_back, report.broken
    done = _compiles(cffi_prefix)
    assert done.returncode == 0, done.stderr[-2000:]
    kept = {k.path: k.reason for k in report.kept}
    assert "cffi" in kept["include/python3.11"]
    assert any(p.startswith(f"{SITE}/cffi/") and p.endswith(".h") for p in kept)
    # what no compiler needs still goes
    assert not (cffi_prefix / "include/demo.h").exists()


def test_the_table_finds_compilers_by_their_presence(template_cffi_prefix: Path,
                                                      template_app_prefix: Path) -> None:
    assert [c.name for c in rc.present(scan(template_cffi_prefix))] == ["cffi"]
    assert rc.present(scan(template_app_prefix)) == []
    needed = {scan(template_cffi_prefix).paths[i] for i, _ in rc.needed(
        scan(template_cffi_prefix))}
    assert "include/python3.11" in needed
    assert rc.needed_distributions(scan(template_cffi_prefix)) == {
        "setuptools": "cffi's ffi.compile() builds C, importing setuptools"}


def test_a_check_that_fails_after_the_shrink_is_reported(tmp_path: Path,
                                                         template_app_prefix: Path) -> None:
    """The check runner: the same check passes while its file is there, fails without."""
    marker = tmp_path / "marker.txt"
    marker.write_text("x")
    compiler = rc.RuntimeCompiler("demo", "marker.txt", "demo compiles", (),
                                  check=f"import os, sys; sys.exit(0 if os.path.exists("
                                        f"{str(marker)!r}) else 'gone')")
    python = template_app_prefix / "bin/python"
    assert rc._run(python, compiler) is None
    marker.unlink()
    assert rc._run(python, compiler) == "gone"
