"""A package is a unit under --used-by: real traces of workloads that use one part of a
package, then the lazily imported parts called after the shrink; a package only
probed goes whole."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from treeutil import prefix_python

from fixtures.builder import UNIT_SPECS, build_fixture_prefix
from fixtures.install import copy_tree
from shrinkconda import Options, shrink
from shrinkconda.appaware import packages, used_by
from shrinkconda.render.report import Report

pytestmark = pytest.mark.skipif(shutil.which("strace") is None,
                                reason="strace is not installed (apt-get install strace)")

SITE = "lib/python3.11/site-packages"
STDLIB = "lib/python3.11"
#: Each uses one part of a package; none touches what the tests call afterwards.
WORKLOADS = (
    'python -c "import multiprocessing, logging, ctypes; logging.getLogger().info(1)"',
    ("python -c \"import lazydemo; assert lazydemo.fast.VALUE == 1; "
     "assert lazydemo.zone('Europe/Paris') == 'paris'\""),
    # As torch probes for networkx: optional, so still fine once it is gone.
    ("python -c \"import importlib.util as u, importlib.metadata as m; "
     "u.find_spec('probedemo') and m.version('probedemo')\""),
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, fixture_channel: Path) -> Path:
    """The app prefix plus `lazydemo` and `probedemo`; do not modify."""
    return build_fixture_prefix(tmp_path_factory.mktemp("units") / "prefix", fixture_channel,
                                UNIT_SPECS)


@pytest.fixture(scope="module")
def shrunk(template: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Path, Report]]:
    """A copy of ``template`` shrunk, verified, with :data:`WORKLOADS` (one shrink for
    the module: it traces and verifies real runs)."""
    copy = copy_tree(template, tmp_path_factory.mktemp("shrunk") / "prefix")
    report = shrink(copy, Options(used_by=WORKLOADS, strip_mode=None))
    yield copy, report
    shutil.rmtree(copy, ignore_errors=True)


def test_the_shrink_is_verified_and_kept(shrunk: tuple[Path, Report]) -> None:
    _, report = shrunk
    assert not report.rolled_back, report.broken
    assert report.verified


def test_a_stdlib_package_keeps_its_lazily_imported_modules(shrunk: tuple[Path, Report]
                                                            ) -> None:
    prefix, _ = shrunk
    # The workload imported multiprocessing but started no process: its start-method
    # modules (multiprocessing.popen_fork) are imported only when a pool starts.
    pool = ("import multiprocessing as m\n"
            "with m.get_context('fork').Pool(2) as p: print(sum(p.map(abs, [-1, -2])))")
    assert prefix_python(prefix, pool).stdout == "3\n"
    assert prefix_python(prefix, "import logging.handlers; print('ok')").stdout == "ok\n"
    # importlib.metadata (traced for the metadata) imports email: email.mime comes along.
    assert prefix_python(prefix, "import email.mime.text; print('ok')").stdout == "ok\n"
    # A stdlib package nothing imported still goes, and so do the test suites of those
    # that stay whole.
    assert not (prefix / STDLIB / "xmlrpc").exists()
    assert (prefix / STDLIB / "ctypes" / "util.pyc").is_file()
    assert not (prefix / STDLIB / "ctypes" / "test").exists()


def test_lazily_announced_submodules_survive(shrunk: tuple[Path, Report]) -> None:
    prefix, report = shrunk
    assert prefix_python(prefix, "import lazydemo; print(lazydemo.slow.VALUE)").stdout == "2\n"
    # What its __all__ names: "from lazydemo import *" imports it.
    assert prefix_python(prefix, "from lazydemo import *; print(star.NAME)").stdout == "star\n"
    # Another request names another time zone.
    assert prefix_python(prefix, "import lazydemo; print(lazydemo.zone('Asia/Tokyo'))"
                         ).stdout == "tokyo\n"
    # What the package does not announce, and nothing imported, goes, and the report
    # says so: the verification does not import it.
    # Nor a private table's entries (PIL's _plugins), and the report says so.
    assert not list((prefix / SITE / "lazydemo").glob("orphan.py*"))
    assert not list((prefix / SITE / "lazydemo").glob("plugin_b.py*"))
    note = next(n for n in report.notes if "public submodule" in n)
    assert note.endswith(": lazydemo.orphan, lazydemo.plugin_a, lazydemo.plugin_b")


def test_a_package_only_probed_goes_whole(shrunk: tuple[Path, Report], template: Path) -> None:
    prefix, report = shrunk
    assert (template / SITE / "probedemo").is_dir()
    assert not (prefix / SITE / "probedemo").exists()
    assert not (prefix / SITE / "probedemo-1.0.dist-info").exists()
    assert "probedemo" in report.removed_packages
    assert not list((prefix / "conda-meta").glob("probedemo-*.json"))
    found = prefix_python(prefix, "import importlib.util as u; print(u.find_spec('probedemo'))")
    assert found.stdout == "None\n"


def test_an_optional_dependency_only_the_expansion_loaded_goes_whole(
        shrunk: tuple[Path, Report], template: Path) -> None:
    prefix, report = shrunk
    # lazydemo announces accel, which imports optdemo when it is there (as torch._inductor
    # imports triton); no workload imported either, and accel imports without optdemo.
    accel = "import lazydemo.accel as a; print(a.HAVE_BACKEND)"
    assert prefix_python(template, accel).stdout == "True\n"
    assert prefix_python(prefix, accel).stdout == "False\n"
    assert not (prefix / SITE / "optdemo").exists()
    assert not (prefix / SITE / "optdemo-1.0.dist-info").exists()
    assert not list((prefix / "conda-meta").glob("optdemo-*.json"))
    note = next(n for n in report.notes if "removed optdemo:" in n)
    assert "imports as well without it (checked)" in note
    # lazydemo.needs cannot import without needdemo: it stays, whole.
    assert prefix_python(prefix, "import lazydemo.needs as n; print(n.VALUE)").stdout == "5\n"
    assert (prefix / SITE / "needdemo").is_dir()
    assert "needdemo" not in report.removed_packages


def test_optional_checks_each_candidate(template: Path, tmp_path: Path) -> None:
    python = template / "bin" / "python"
    argv, out = packages.expander(python, tmp_path, [], ["lazydemo"])
    subprocess.run(argv, check=True)
    expanded = packages.read_expanded(out)
    assert {"lazydemo.accel", "lazydemo.needs"} <= expanded
    found = packages.optional(python, tmp_path, [], ["lazydemo"], expanded,
                              {"optdemo", "needdemo"}, 60)
    assert found == {"optdemo"}
    assert packages.optional(python, tmp_path, [], ["lazydemo"], expanded, {"needdemo"},
                             60) == frozenset()


def test_the_expansion_is_traced_and_verified(template: Path) -> None:
    usage = used_by.trace_workloads(template, WORKLOADS[:2], 120, None)
    assert usage is not None
    assert {"multiprocessing.popen_fork", "logging.handlers", "lazydemo.slow",
            "lazydemo.star", "encodings.euc_jp"} <= usage.expanded
    assert not any(m.startswith(("lazydemo.orphan", "lazydemo.plugin", "probedemo"))
                   or ".test" in m for m in usage.expanded)
    # What the expansion imported stays: its lib-dynload parts too.
    assert any(p.startswith(f"{STDLIB}/lib-dynload/_codecs_jp") for p in usage.paths)
    # probedemo was never opened by the runs: it is not a module the checks import.
    assert "probedemo" not in usage.modules


@pytest.mark.parametrize(("opened", "stdlib", "third"), [
    ([f"{STDLIB}/multiprocessing/__pycache__/pool.cpython-311.pyc"],
     ["encodings", "multiprocessing"], []),
    ([f"{STDLIB}/json/__init__.py", f"{STDLIB}/tkinter/__init__.py", f"{STDLIB}/os.py"],
     ["encodings", "json"], []),
    ([f"{SITE}/scipy/__init__.py", f"{SITE}/scipy/stats/__pycache__/__init__.cpython-311.pyc",
      f"{SITE}/scipy/stats/_stats.cpython-311-x86_64-linux-gnu.so"],
     ["encodings"], ["scipy", "scipy.stats"]),
])
def test_imported_packages(opened: list[str], stdlib: list[str], third: list[str]) -> None:
    assert packages.imported_packages(opened) == (stdlib, third)


def test_expanded_modules_are_read_back(tmp_path: Path) -> None:
    (tmp_path / "expanded.json").write_text(json.dumps(["a.b", 3, "c"]))
    assert packages.read_expanded(tmp_path / "expanded.json") == {"a.b", "c"}
    assert packages.read_expanded(tmp_path / "missing.json") == frozenset()

