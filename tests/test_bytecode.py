"""``--python-code``: Python code as source, sourceless bytecode, or both, on real prefixes
with real bytecode compiled by the fixture's own python."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from condatools import check_works, conda_pack, records_problems, unpack
from faultutil import Paused
from treeutil import contents, run_cli

from fixtures import DEFAULT_SPECS, build_channel, copy_tree, install
from fixtures.content import SITE
from fixtures.pycode import SPEC, pycodedemo_recipe
from shrinkconda import Options, audit, shrink
from shrinkconda.phases import bytecode, pycompile
from shrinkconda.transaction.journal import ADDED, STATE_DIR

BYTECODE = Options(python_code="bytecode", strip_mode=None)
BOTH = Options(python_code="both", strip_mode=None)
TAG = f"cpython-{SITE.split('python')[1].split('/')[0].replace('.', '')}"
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("pycode") / "prefix"
    channel = build_channel(extra=[pycodedemo_recipe()])
    install(dest, (*DEFAULT_SPECS, SPEC), channel, dest / "pkgs")
    return dest


@pytest.fixture
def prefix(template: Path, tmp_path: Path) -> Iterator[Path]:
    copy = copy_tree(template, tmp_path / "prefix")
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


def _python(prefix: Path, code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(prefix / "bin/python"), *flags, "-c", code], check=False,
                          capture_output=True, text=True, env=ENV, cwd="/")


def _pyc_header(path: Path) -> tuple[bytes, int]:
    head = path.read_bytes()[:16]
    return head[:4], int.from_bytes(head[4:8], "little")


def test_bytecode_leaves_sourceless_modules_that_import_and_name_their_paths(
        prefix: Path) -> None:
    site = prefix / SITE
    predicted = audit(prefix, BYTECODE)

    report = shrink(prefix, BYTECODE)

    assert report.verified and not report.rolled_back
    for module in ("tbdemo/__init__", "tbdemo/sub/__init__", "libuser/__init__",
                   "purepkg/__init__", "newsyntax/__init__"):
        assert not (site / f"{module}.py").exists(), module
        assert (site / f"{module}.pyc").is_file(), module
    # Compiled by the env's python: its magic number, a plain (timestamp) header.
    magic = _python(prefix, "import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())")
    assert _pyc_header(site / "tbdemo/__init__.pyc")[0].hex() == magic.stdout.strip()
    assert not list(site.rglob("__pycache__/tbdemo*")) and not (site / "tbdemo/__pycache__").exists()
    run = _python(prefix, "import tbdemo.sub, purepkg, demopkg; print(purepkg.greet())")
    assert run.stdout.strip() == "hi", run.stderr
    # A traceback names the module's path in the prefix (no source line to show).
    raised = _python(prefix, "import tbdemo; tbdemo.boom()")
    assert f'File "{site}/tbdemo/__init__.py", line 2, in boom' in raised.stderr, raised.stderr
    assert "ValueError: boom from tbdemo" in raised.stderr
    # What reads its own sources keeps them, with the reason, and a fresh pyc.
    kept = {k.path: k.reason for k in report.kept}
    assert "getsource" in kept[f"{SITE}/srcreader"]
    assert (site / "srcreader/__init__.py").is_file()
    assert _pyc_header(site / f"srcreader/__pycache__/__init__.{TAG}.pyc")[1] == 0b01
    assert "return inspect.getsource" in _python(
        prefix, "import srcreader; print(srcreader.describe())").stdout
    # A module this Python cannot compile keeps its .py, listed under problems.
    assert (site / "newsyntax/future.py").is_file()
    assert not (site / "newsyntax/future.pyc").exists()
    assert any(e.path == f"{SITE}/newsyntax/future.py" and "does not compile" in e.message
               for e in report.errors)
    # The audit predicted it; conda-meta lists the pycs, sizes and sha256 true.
    assert abs(report.size_after - predicted.size_after) <= report.size_after // 100
    assert records_problems(prefix) == []
    record = next((prefix / "conda-meta").glob("pycodedemo-*.json"))
    doc = json.loads(record.read_text())
    assert f"{SITE}/tbdemo/__init__.pyc" in doc["files"]
    assert f"{SITE}/tbdemo/__init__.py" not in doc["files"]
    entry = next(e for e in doc["paths_data"]["paths"]
                 if e["_path"] == f"{SITE}/tbdemo/__init__.pyc")
    assert entry["path_type"] == "pyc_file"
    check_works(prefix)


def test_both_compiles_what_a_noarch_package_lacked_and_survives_reset_mtimes(
        prefix: Path) -> None:
    site = prefix / SITE
    assert not (site / "purepkg/__pycache__").exists()  # rattler compiles nothing
    before = contents(prefix / "bin")
    predicted = audit(prefix, BOTH)

    report = shrink(prefix, BOTH)

    assert report.verified and not report.rolled_back
    assert report.size_after == predicted.size_after
    pyc = site / f"purepkg/__pycache__/__init__.{TAG}.pyc"
    assert _pyc_header(pyc)[1] == 0b01  # PEP 552 hash-based, unchecked
    assert (site / "purepkg/__init__.py").is_file()
    assert contents(prefix / "bin") == before
    # As a packager's zip leaves it: every mtime 1980. The pyc still loads, nothing is
    # compiled (python -v names the pyc it loads, or the .py it compiles).
    for path in site.rglob("*"):
        os.utime(path, (315532800, 315532800), follow_symlinks=False)
    verbose = _python(prefix, "import purepkg, tbdemo", "-v")
    assert f"code object from '{pyc}'" in verbose.stderr
    assert f"code object from {site}/purepkg/__init__.py" not in verbose.stderr
    assert f"code object from {site}/tbdemo/__init__.py" not in verbose.stderr
    assert records_problems(prefix) == []
    doc = json.loads(next((prefix / "conda-meta").glob("purepkg-*.json")).read_text())
    assert f"{SITE}/purepkg/__pycache__/__init__.{TAG}.pyc" in doc["files"]
    check_works(prefix)


@pytest.mark.parametrize("form", ["bytecode", "both"])
def test_conda_pack_and_unpack_keep_each_form_working(prefix: Path, tmp_path: Path,
                                                      form: str) -> None:
    report = shrink(prefix, Options(python_code=form, strip_mode=None))
    assert report.verified and not report.rolled_back
    archive = tmp_path / "env.tar.gz"
    packed = conda_pack(prefix, archive)
    assert packed.returncode == 0, packed.stderr
    moved = unpack(archive, tmp_path / "moved")
    check_works(moved)
    run = _python(moved, "import tbdemo.sub, libuser, srcreader; print(srcreader.describe())")
    assert "getsource" in run.stdout, run.stderr
    compiled = "tbdemo/__init__.pyc" if form == "bytecode" else \
        f"tbdemo/__pycache__/__init__.{TAG}.pyc"
    assert (moved / SITE / compiled).is_file()


def test_safe_keeps_source_and_aggressive_converts(prefix: Path) -> None:
    safe = audit(prefix, Options())
    aggressive = audit(prefix, Options(profile="aggressive"))
    assert "bytecode" in [ln.name for ln in safe.lines]
    assert "python-code" not in [ln.name for ln in safe.lines]
    assert "python-code" in [ln.name for ln in aggressive.lines]
    assert "bytecode" not in [ln.name for ln in aggressive.lines]
    skipped = audit(prefix, Options(profile="aggressive", skip=("python-code",)))
    assert "python-code" not in [ln.name for ln in skipped.lines]


def test_another_pythons_tree_is_left_alone_with_a_note(prefix: Path) -> None:
    old = prefix / "lib/python3.10/site-packages"
    old.mkdir(parents=True)
    (old / "leftover.py").write_text("X = 1\n")
    report = shrink(prefix, BYTECODE)
    assert (old / "leftover.py").read_text() == "X = 1\n"
    assert not (old / "leftover.pyc").exists()
    assert any("lib/python3.10" in note and "another Python" in note for note in report.notes)


def test_a_python_that_does_not_run_refuses_bytecode_and_changes_nothing(
        prefix: Path) -> None:
    python = prefix / "bin/python"
    real = os.path.realpath(python)
    python.unlink()
    python.write_text("#!/bin/sh\necho 'cannot start' >&2\nexit 3\n")
    python.chmod(0o755)
    before = contents(prefix)
    result = run_cli("shrink", "-y", "--python-code", "bytecode", str(prefix))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "does not run" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert contents(prefix) == before
    # source needs no python of the env at all.
    assert run_cli("audit", "--python-code", "source", "--no-strip", str(prefix)).returncode == 0
    assert os.path.exists(real)


def test_an_env_without_python_has_no_code_to_convert(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "share/doc/tool").mkdir(parents=True)
    (prefix / "share/doc/tool/README").write_text("docs\n")
    report = shrink(prefix, Options(profile="aggressive", strip_mode=None))
    assert not (prefix / "share/doc/tool").exists()
    assert any("no lib/pythonX.Y" in note for note in report.notes)


def test_an_unknown_form_is_a_usage_error(prefix: Path) -> None:
    before = contents(prefix)
    result = run_cli("shrink", "-y", "--python-code", "pyz", str(prefix))
    assert result.returncode == 2
    assert "'pyz' is not one of 'source', 'bytecode', 'both'" in result.stderr
    assert contents(prefix) == before


def test_compile_all_reports_a_failure_per_module(prefix: Path, tmp_path: Path) -> None:
    python = pycompile.probe(prefix)
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text("x = 1\n")
    bad.write_text("def f(:\n")
    jobs = [pycompile.Job(str(p), str(p), pycompile.SOURCELESS) for p in (good, bad)]
    done = pycompile.compile_all(python, jobs, workers=2)
    assert done[0].error is None and done[0].size > 16
    assert done[1].error is not None and done[1].error.startswith("SyntaxError")


def test_used_by_keeps_the_sources_a_workload_reads_and_converts_the_rest(
        prefix: Path) -> None:
    site = prefix / SITE
    workload = ('python -c "import inspect, libuser, tbdemo; '
                'print(inspect.getsource(libuser.func))"')
    report = shrink(prefix, Options(used_by=(workload,), strip_mode=None))
    assert report.verified and not report.rolled_back, report.broken
    kept = {k.path: k.reason for k in report.kept}
    assert kept[f"{SITE}/libuser/__init__.py"] == "opened for reading by a --used-by command"
    assert (site / "libuser/__init__.py").is_file()
    assert not (site / "tbdemo/__init__.py").exists()
    assert (site / "tbdemo/__init__.pyc").is_file()
    run = subprocess.run(workload.replace("python", str(prefix / "bin/python"), 1), shell=True,
                         check=False, capture_output=True, text=True, env=ENV)
    assert "return 'libuser'" in run.stdout, run.stderr
    assert records_problems(prefix) == []
    # Its python now has only the stdlib the workload loaded: a second shrink still
    # compiles with it (nothing left to convert, and nothing breaks).
    again = shrink(prefix, Options(used_by=(workload,), strip_mode=None))
    assert again.verified and not again.rolled_back, again.broken


@pytest.fixture(scope="module")
def staged_steps(template: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> list[list[str]]:
    """The steps a bytecode shrink of the template stages, read from its journal while it
    is paused at the first staged path (a signal then rolls that shrink back)."""
    work = tmp_path_factory.mktemp("journal")
    copy = copy_tree(template, work / "prefix")
    run = Paused(work, "staging", *_KILLED, str(copy))
    run.wait_for("staging")
    steps: list[list[str]] = json.loads((copy / STATE_DIR / "journal.json").read_text())["steps"]
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish().returncode == 143
    shutil.rmtree(copy)
    return steps


_KILLED = ("--python-code", "bytecode", "--no-strip")
"""The shrink the kill tests run: no strip phase, so the staging journal is the first
journal write."""


def _durable_steps(steps: list[list[str]]) -> list[int]:
    """After each journal step, how many durable steps the transaction has taken (what
    ``SHRINKCONDA_TEST_CRASH_AFTER`` counts): the staging journal's write, then one per
    rename, two per stripped or rewritten file (a link into staging, then the swap)."""
    done, after = 1, []
    for _path, staged, replacement in steps:
        if staged:
            done += 2 if replacement and staged != ADDED else 1
        after.append(done)
    return after


@pytest.mark.parametrize("where", ["first step", "first added __pycache__", "all staged"])
def test_a_shrink_killed_while_adding_bytecode_is_undone_by_the_next_run(
        prefix: Path, staged_steps: list[list[str]], where: str) -> None:
    added = [n for n, (path, staged, _) in enumerate(staged_steps)
             if staged == ADDED and path.endswith("/__pycache__")]
    assert added, "no module kept as source gets a new __pycache__: nothing to take back"
    n = {"first step": 0, "first added __pycache__": added[0],
         "all staged": len(staged_steps) - 1}[where]
    before = contents(prefix)
    env = {**os.environ, "SHRINKCONDA_TEST_CRASH_AFTER": str(_durable_steps(staged_steps)[n])}
    killed = run_cli("shrink", "-y", "-q", *_KILLED, str(prefix), env=env)
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    # It died where it was meant to: after step n, not yet committing.
    new = prefix / staged_steps[added[0]][0]
    assert new.is_dir() == (n >= added[0]), new
    assert json.loads((prefix / STATE_DIR / "journal.json").read_text())["state"] == "staged"
    recovered = run_cli("audit", "--json", "--python-code", "bytecode", str(prefix))
    assert recovered.returncode == 0, recovered.stderr
    notes = json.loads(recovered.stdout)["notes"]
    assert any("rolled back a shrink that was interrupted" in n for n in notes), notes
    assert contents(prefix) == before  # what was added went again


@pytest.mark.parametrize("source, reads", [
    (b"import inspect\ndef f():\n    return inspect.getsource(f)\n", True),
    (b"from inspect import getsourcelines as g, getsource\ngetsource(len)\n", True),
    (b"import linecache\nline = linecache.getline(__file__, 1)\n", True),
    (b"try:\n    inspect.getsource(f)\nexcept OSError:\n    pass\n", False),
    (b"try:\n    s = inspect.findsource(f)\nexcept:\n    s = None\n", False),
    (b"try:\n    inspect.getsource(f)\nexcept (TypeError, Exception):\n    pass\n", False),
    (b"try:\n    inspect.getsource(f)\nexcept ValueError:\n    pass\n", True),
    (b"try:\n    pass\nexcept OSError:\n    inspect.getsource(f)\n", True),
    (b"def getsource_like():\n    return cache.getline(1)\n", False),
    (b"inspect.getsource(\n", True),  # does not parse: assume it reads
])
def test_a_source_read_counts_unless_its_failure_is_caught(source: bytes, reads: bool) -> None:
    assert (bytecode._unguarded_read(source) is not None) == reads


def test_a_module_a_symlink_points_at_keeps_its_source(prefix: Path) -> None:
    link = prefix / "bin/tbtool"
    link.symlink_to(f"../{SITE}/tbdemo/__init__.py")
    report = shrink(prefix, BYTECODE)
    assert link.resolve().is_file(), "the shrink left bin/tbtool dangling"
    kept = {k.path: k.reason for k in report.kept}
    assert kept[f"{SITE}/tbdemo/__init__.py"] == "the target of the symlink bin/tbtool"
    assert (prefix / SITE / "libuser/__init__.pyc").is_file()  # the others still convert
