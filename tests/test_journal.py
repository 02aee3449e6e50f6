"""A shrink is a transaction: verified, rolled back on failure, safe when killed."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import tarfile
from pathlib import Path

from condatools import conda_pack
from treeutil import contents, prefix_python, run_cli

from fixtures.install import copy_tree
from shrinkconda import Options, shrink
from shrinkconda.condameta import HISTORY
from shrinkconda.transaction.journal import STATE_DIR

SITE = "lib/python3.11/site-packages"
IMPORTS_OK = "import demopkg, astro, purepkg; assert demopkg.add(2, 3) == 5"


def add_fragile_package(prefix: Path) -> None:
    """A package whose import reads a data file in its tests/: no import names it."""
    pkg = prefix / SITE / "fragile"
    (pkg / "tests").mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "import os\nwith open(os.path.join(os.path.dirname(__file__), 'tests', 'data.txt')) "
        "as f:\n    DATA = f.read()\n")
    (pkg / "tests" / "data.txt").write_text("needed at import time\n")
    dist = prefix / SITE / "fragile-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fragile\nVersion: 1.0\n")
    (dist / "top_level.txt").write_text("fragile\n")


def test_breaking_shrink_is_rolled_back_with_status_3(prefix: Path) -> None:
    add_fragile_package(prefix)
    before = contents(prefix)
    result = run_cli("shrink", "-y", "--json", str(prefix), timeout=600)
    assert result.returncode == 3, result.stderr
    doc = json.loads(result.stdout)
    assert doc["rolled_back"] is True
    assert [b["check"] for b in doc["broken"]] == ["fragile"]
    assert "FileNotFoundError" in doc["broken"][0]["error"]
    assert contents(prefix) == before
    assert not (prefix / STATE_DIR).exists()


def test_table_names_the_broken_module(prefix: Path) -> None:
    add_fragile_package(prefix)
    result = run_cli("shrink", "-y", str(prefix), timeout=600)
    assert result.returncode == 3
    assert "rolled back" in result.stdout and "fragile" in result.stdout


def test_no_verify_commits_without_checking(prefix: Path) -> None:
    add_fragile_package(prefix)
    result = run_cli("shrink", "-y", "--no-verify", str(prefix), timeout=600)
    assert result.returncode == 0
    assert prefix_python(prefix, "import fragile").returncode != 0


def test_verify_command_failure_rolls_back(prefix: Path) -> None:
    before = contents(prefix)
    result = run_cli("shrink", "-y", "--json", "--verify-command", "test -e share/doc",
                     "--verify-command", "demo-tool 2 3", str(prefix), timeout=600,
                     cwd=str(prefix))
    assert result.returncode == 3
    broken = {b["check"] for b in json.loads(result.stdout)["broken"]}
    assert broken == {"test -e share/doc"}
    assert contents(prefix) == before


def test_committed_shrink_keeps_conda_meta_true(prefix: Path) -> None:
    report = shrink(prefix, Options())
    assert not report.rolled_back and report.verified
    for record in (prefix / "conda-meta").glob("*.json"):
        doc = json.loads(record.read_text())
        for path in doc["files"]:
            assert os.path.lexists(prefix / path), (record.name, path)
        for entry in doc["paths_data"]["paths"]:
            target = prefix / entry["_path"]
            assert os.path.lexists(target), entry["_path"]
            # Files with a prefix placeholder were rewritten at install: their recorded
            # size and sha256 are the package's, as conda records them.
            if entry.get("path_type") == "hardlink" and "prefix_placeholder" not in entry:
                assert target.stat().st_size == entry["size_in_bytes"], entry["_path"]
                digest = hashlib.sha256(target.read_bytes()).hexdigest()
                assert digest == entry["sha256"], entry["_path"]
    history = [json.loads(line) for line in
               (prefix / "conda-meta" / HISTORY).read_text().splitlines()]
    assert len(history) == 1
    assert f"{SITE}/demopkg/tests" in history[0]["removed"]["tests"]
    assert "lib/libdemo.so.1.0.0" in history[0]["stripped"]
    assert not (prefix / STATE_DIR).exists()


def test_conda_pack_accepts_the_shrunk_prefix(prefix: Path, tmp_path: Path) -> None:
    shrink(prefix, Options())
    archive = tmp_path / "env.tar.gz"
    packed = conda_pack(prefix, archive)
    assert packed.returncode == 0, packed.stderr
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked)
    result = prefix_python(unpacked, IMPORTS_OK)
    assert result.returncode == 0, result.stderr


def test_second_shrink_at_once_is_refused(prefix: Path) -> None:
    fd = os.open(prefix, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        result = run_cli("shrink", "-y", str(prefix))
    finally:
        os.close(fd)
    assert result.returncode == 1
    assert "another shrinkconda is working on this prefix" in result.stderr
    assert (prefix / "share/doc").exists()


def test_killed_at_any_step_leaves_a_usable_prefix_and_a_rerun_completes(
        template_prefix: Path, tmp_path: Path) -> None:
    """Kill a shrink after step 1, 2, 4, 8, ... until one completes, then find the last
    step by bisection and kill at the final steps too (the commit)."""
    outcomes: set[str] = set()

    def killed_at(step: int) -> bool:
        prefix = copy_tree(template_prefix, tmp_path / f"p{step}")
        env = {**os.environ, "SHRINKCONDA_TEST_CRASH_AFTER": str(step)}
        first = run_cli("shrink", "-y", "-q", str(prefix), env=env, timeout=600)
        usable = prefix_python(prefix, IMPORTS_OK)
        assert usable.returncode == 0, (step, usable.stderr)
        if first.returncode == 0:
            shutil.rmtree(prefix)
            return False
        assert first.returncode == -signal.SIGKILL, (step, first.stderr)
        rerun = run_cli("shrink", "-y", "--json", str(prefix), timeout=600)
        assert rerun.returncode == 0, (step, rerun.stderr)
        notes = json.loads(rerun.stdout)["notes"]
        outcomes.update(n.split(" a ")[0] for n in notes if "interrupted" in n or "killed" in n)
        assert not (prefix / STATE_DIR).exists()
        assert prefix_python(prefix, IMPORTS_OK).returncode == 0
        assert not (prefix / "share/doc").exists()
        shutil.rmtree(prefix)
        return True

    step = 1
    while killed_at(step):
        step *= 2
    low, high = step // 2, step  # killed at low, completed at high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if killed_at(middle) else (low, middle)
    for last in range(low - 1, max(low - 4, 0), -1):  # the commit's own steps
        assert killed_at(last)
    assert {"rolled back", "finished"} <= outcomes, outcomes
