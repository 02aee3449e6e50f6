"""--used-by: real workloads traced on a real prefix keep what they use, and only that."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from treeutil import contents, du_bytes, prefix_python, run_cli

from fixtures.content import dist_info
from shrinkconda import Options, audit, shrink
from shrinkconda.transaction.journal import STATE_DIR

SITE = "lib/python3.11/site-packages"
SPAWN_APP = """\
import multiprocessing

import appdemo

if __name__ == "__main__":
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(appdemo.spawn_target) == 7
"""
FORKSERVER_APP = SPAWN_APP.replace('"spawn"', '"forkserver"')
ENTRY_POINTS = ("from importlib.metadata import entry_points; "
                "assert [e.load()() for e in entry_points(group='appdemo.plugins')] == ['hook ok']")



pytestmark = pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v strace"],
                                               capture_output=True, check=False).returncode != 0,
                                reason="strace is not installed (apt-get install strace)")

#: (workload, paths that must stay, paths that must go), one per way of using a file.
PATHS = {
    "needed-soname-symlink": (
        'python -c "import demopkg; assert demopkg.add(2, 3) == 5"',
        ["lib/libdemo.so.1", "lib/libdemo.so.1.0.0", f"{SITE}/demopkg/_ext.cpython-311-x86_64-linux-gnu.so"],
        ["lib/libdemo.so", "include/demo.h", "bin/demo-tool", f"{SITE}/appdemo"]),
    "dlopen-by-path": (
        'python -c "import appdemo; assert appdemo.answer() == 42"',
        ["lib/appdemo/libplug.so"],
        ["lib/appdemo/libunused.so", "share/appdemo", "lib/libdemo.so.1.0.0"]),
    "data-opened-from-c": (
        'python -c "import appdemo; assert appdemo.table_sum() == 10"',
        ["share/appdemo/table.dat", "lib/appdemo/libplug.so"],
        ["share/appdemo/unused.dat", "share/proj/proj.db"]),
    "console-script-by-subprocess": (
        "python -c \"import subprocess; subprocess.run(['appdemo-cli'], check=True)\"",
        ["bin/appdemo-cli", f"{SITE}/appdemo/clionly.py", "bin/python"],
        ["bin/demo-cli", f"{SITE}/appdemo/spawnonly.py"]),
    "spawn-child-only-importer": (
        "python spawn_app.py",
        [f"{SITE}/appdemo/spawnonly.py"],
        [f"{SITE}/appdemo/clionly.py", f"{SITE}/appdemo/unused.py"]),
    "forkserver-child-only-importer": (
        "python forkserver_app.py",
        [f"{SITE}/appdemo/spawnonly.py"],
        [f"{SITE}/appdemo/clionly.py"]),
    "entry-points-by-metadata": (
        f'python -c "{ENTRY_POINTS}"',
        [f"{SITE}/appdemo/epplugin.py", f"{SITE}/appdemo-1.0.dist-info/entry_points.txt",
         f"{SITE}/appdemo-1.0.dist-info/METADATA"],
        [f"{SITE}/appdemo/unused.py"]),
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The caller's directory, where the workloads run."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "spawn_app.py").write_text(SPAWN_APP)
    (work / "forkserver_app.py").write_text(FORKSERVER_APP)
    monkeypatch.chdir(work)
    return work


@pytest.mark.parametrize("case", list(PATHS))
def test_workload_keeps_what_it_uses(case: str, app_prefix: Path, workdir: Path) -> None:
    workload, stay, go = PATHS[case]
    # The verification's own checks are other tests' business: here the workload reruns.
    report = shrink(app_prefix, Options(used_by=(workload,), strip_mode=None, verify=False))
    assert not report.rolled_back
    missing = [p for p in stay if not _module_or_path(app_prefix, p)]
    assert not missing
    left = [p for p in go if _module_or_path(app_prefix, p)]
    assert not left
    assert os.path.islink(app_prefix / "bin/python")
    assert subprocess.run(["sh", "-c", workload], cwd=workdir, env={
        **os.environ, "PATH": f"{app_prefix}/bin:{os.environ['PATH']}"}, check=False).returncode == 0


def _module_or_path(prefix: Path, path: str) -> bool:
    """``path`` is there; for a module's ``.py``, in either form --used-by leaves code
    in (the ``.py``, or the sourceless ``.pyc`` of its default ``bytecode`` form)."""
    return os.path.lexists(prefix / path) or \
        (path.endswith(".py") and os.path.lexists(prefix / (path + "c")))


def test_unused_packages_lose_every_file(app_prefix: Path, workdir: Path) -> None:
    records = {p.stem: json.loads(p.read_text()) for p in (app_prefix / "conda-meta").glob("*.json")}
    report = shrink(app_prefix, Options(used_by=('python -c "import demopkg"',),
                                        strip_mode=None))
    gone = ("appdemo-1.0-py311_0", "astro-2.0-py311_0", "purepkg-0.1-pyhd8ed1ab_0")
    for name in gone:
        left = [f for f in records[name]["files"] if os.path.lexists(app_prefix / f)]
        assert not left, name
        assert not (app_prefix / "conda-meta" / f"{name}.json").exists()
    assert sorted(report.removed_packages) == ["appdemo", "astro", "purepkg"]
    kept = {p.stem for p in (app_prefix / "conda-meta").glob("*.json")}
    assert {"demopkg-1.0-py311h1a2b3c4_0", "libdemo-1.0.0-h1a2b3c4_0"} <= kept
    assert (app_prefix / f"{SITE}/demopkg-1.0.dist-info/METADATA").is_file()
    assert prefix_python(app_prefix, "import demopkg; print(demopkg.add(1, 1))").stdout == "2\n"


def test_report_counts_bytes_per_package(app_prefix: Path, workdir: Path) -> None:
    report = json.loads(run_cli("audit", "--json", "--no-strip", "--used-by",
                                'python -c "import demopkg"', str(app_prefix)).stdout)
    line = next(s for s in report["strategies"] if s["name"] == "used-by")
    assert sum(report["used_by"].values()) == line["bytes_saved"] > 0
    assert report["used_by"]["appdemo-1.0-py311_0"] > 8000  # two gcc -g libraries
    table = run_cli("audit", "--no-strip", "--used-by", 'python -c "import demopkg"',
                    str(app_prefix)).stdout
    assert "used-by took most from: python-3.11" in table


def test_audit_predicts_the_shrink(app_prefix: Path, workdir: Path) -> None:
    args = ("--json", "--used-by", "python spawn_app.py", "--used-by", "demo-tool 1 2")
    predicted = json.loads(run_cli("audit", *args, str(app_prefix)).stdout)
    done = run_cli("shrink", "-y", *args, str(app_prefix))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert abs(predicted["size_after"] - report["size_after"]) <= 0.01 * report["size_after"]
    lines = {s["name"]: s["bytes_saved"] for s in predicted["strategies"]}
    assert lines == {s["name"]: s["bytes_saved"] for s in report["strategies"]}
    assert predicted["used_by"] == report["used_by"]
    assert du_bytes(app_prefix) == report["size_after"]
    assert "demo-tool 1.0.0: 3" in done.stderr  # the commands' output: stderr, not the JSON


def test_workload_failing_before_changes_nothing(app_prefix: Path, workdir: Path) -> None:
    before = contents(app_prefix)
    result = run_cli("shrink", "-y", "--used-by",
                     "python -c \"import sys; print('no model file', file=sys.stderr); sys.exit(4)\"",
                     str(app_prefix))
    assert result.returncode == 1
    assert "exited with status 4" in result.stderr and "no model file" in result.stderr
    assert contents(app_prefix) == before


@pytest.mark.parametrize(("command", "message"), [
    ("", "empty"),
    ("no-such-command-here", "not found"),
])
def test_bad_command_changes_nothing(command: str, message: str, app_prefix: Path,
                                     workdir: Path) -> None:
    before = contents(app_prefix)
    result = run_cli("audit", "--used-by", command, str(app_prefix))
    assert result.returncode == 1
    assert message in result.stderr
    assert contents(app_prefix) == before


def test_hung_command_is_killed_with_its_children(app_prefix: Path, workdir: Path) -> None:
    before = contents(app_prefix)
    result = run_cli("shrink", "-y", "--used-by-timeout", "2", "--used-by",
                     "sleep 313 & python -c 'import time; time.sleep(313)'", str(app_prefix),
                     timeout=120)
    assert result.returncode == 1
    assert "did not finish within 2s" in result.stderr
    assert contents(app_prefix) == before
    left = subprocess.run(["pgrep", "-f", "sleep.313"], capture_output=True, text=True, check=False)
    assert left.stdout == ""


def test_workload_breaking_after_the_shrink_rolls_back(app_prefix: Path, workdir: Path) -> None:
    # The first run takes a path the second does not: a trace proves only what it saw.
    workload = ("if [ -e ran-once ]; then cat \"$CONDA_PREFIX/share/demo/data.txt\"; "
                "else touch ran-once; fi")
    before = contents(app_prefix)
    result = run_cli("shrink", "-y", "--json", "--used-by", workload, str(app_prefix))
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["rolled_back"] is True
    assert [(b["check"], b["kind"]) for b in report["broken"]] == [(workload, "command")]
    assert any("add a --used-by command" in note for note in report["notes"])
    assert contents(app_prefix) == before
    assert not (app_prefix / STATE_DIR).exists()


def test_strace_missing_is_a_clear_error(app_prefix: Path, workdir: Path) -> None:
    result = run_cli("audit", "--used-by", "true", str(app_prefix),
                     env={**os.environ, "PATH": str(workdir)})
    assert result.returncode == 1
    assert "apt-get install strace" in result.stderr


def test_keep_glob_spares_unused_files(app_prefix: Path, workdir: Path) -> None:
    report = audit(app_prefix, Options(used_by=("true",), keep=("share/proj/*",)))
    assert report.used_by
    report = shrink(app_prefix, Options(used_by=("true",), keep=("share/proj/*",),
                                        strip_mode=None))
    assert (app_prefix / "share/proj/proj.db").is_file()
    assert not (app_prefix / "share/zoneinfo").exists()
    # Whatever the trace's locale, another codec may be the one Python starts with.
    assert _module_or_path(app_prefix, "lib/python3.11/encodings/latin_1.py")
    # Python itself still starts: its startup is traced too.
    assert prefix_python(app_prefix, "import json; print(json.dumps(1))").stdout == "1\n"


def test_pip_installed_distributions_go_by_their_record(app_prefix: Path, workdir: Path) -> None:
    site = app_prefix / SITE
    for name in ("pipused", "pipunused"):  # no conda-meta record owns these: pip put them
        files = {f"{name}/__init__.py": b"VALUE = 1\n"}
        for relpath, content in {**files, **dist_info(name, "1.0", files)}.items():
            (site / relpath).parent.mkdir(parents=True, exist_ok=True)
            (site / relpath).write_bytes(content)
    report = shrink(app_prefix, Options(used_by=('python -c "import pipused"',),
                                        strip_mode=None))
    assert not report.rolled_back, report.broken
    assert (site / "pipused-1.0.dist-info/RECORD").is_file()
    assert not (site / "pipunused-1.0.dist-info").exists()
    assert not (site / "pipunused").exists()
