"""The command line, in-process through CliRunner and for real through a subprocess."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from treeutil import SHRINKCONDA, du_bytes, run_cli, snapshot

from shrinkconda import __version__
from shrinkconda.cli import main

JSON_KEYS = {"prefix", "dry_run", "size_before", "size_after", "bytes_saved", "strategies",
             "errors"}


def test_version_and_help() -> None:
    runner = CliRunner()
    assert __version__ in runner.invoke(main, ["--version"]).output
    result = runner.invoke(main, ["-h"])
    assert result.exit_code == 0 and "audit" in result.output and "shrink" in result.output


def test_strategies_lists_each_with_a_summary() -> None:
    result = CliRunner().invoke(main, ["strategies"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert names[:5] == ["pkgs-cache", "tests", "static-libs", "bytecode", "docs"]


def test_audit_json_schema_and_nothing_changes(prefix: Path) -> None:
    before = snapshot(prefix)
    result = run_cli("audit", "--json", str(prefix))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert JSON_KEYS <= set(doc) and doc["dry_run"] is True
    assert doc["prefix"] == str(prefix.resolve())
    assert doc["size_before"] == du_bytes(prefix)
    assert {"name", "files", "bytes_saved"} <= set(doc["strategies"][0])
    assert snapshot(prefix) == before


def test_shrink_without_a_terminal_never_asks(prefix: Path) -> None:
    result = run_cli("shrink", str(prefix), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "total" in result.stdout and not (prefix / "share/doc").exists()
    assert "\x1b[" not in result.stdout + result.stderr  # no colour, no bar redraws
    assert "\r" not in result.stderr


def test_prefix_defaults_to_conda_prefix(prefix: Path) -> None:
    env = {**os.environ, "CONDA_PREFIX": str(prefix)}
    result = run_cli("audit", "--json", env=env)
    assert result.returncode == 0 and json.loads(result.stdout)["prefix"] == str(prefix)
    env.pop("CONDA_PREFIX")
    result = run_cli("audit", env=env)
    assert result.returncode == 2 and "CONDA_PREFIX" in result.stderr


@pytest.mark.parametrize("args", [["audit", "/nonexistent/env"], ["audit", "/"],
                                  ["audit", "/usr"]])
def test_bad_prefix_is_one_line_and_status_1(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("Error: ")


def test_usage_errors_are_status_2(prefix: Path) -> None:
    assert run_cli("audit", "--bogus", str(prefix)).returncode == 2
    result = run_cli("audit", "--only", "no-such-strategy", str(prefix))
    assert result.returncode == 2 and "no-such-strategy" in result.stderr


def test_quiet_prints_nothing_on_success(prefix: Path) -> None:
    result = run_cli("shrink", "-q", "-y", "--only", "docs", str(prefix))
    assert result.returncode == 0 and result.stdout == ""


def test_shrink_on_a_terminal_asks_and_no_means_no(prefix: Path) -> None:
    before = snapshot(prefix)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*SHRINKCONDA, "shrink", "--only", "docs", str(prefix)],
                            stdin=follower, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    seen = b""
    while b"Shrink" not in seen:
        seen += os.read(leader, 4096)
    os.write(leader, b"n\n")
    proc.communicate(timeout=60)
    os.close(leader)
    assert proc.returncode == 1
    assert snapshot(prefix) == before
