"""``conda shrink``, run by the real conda: the plugin registered through the ``conda``
entry-point group of shrinkconda installed into conda's env, conda's conventions for
naming the env, and shrinkconda's own options and output."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.install import copy_tree
from shrinkconda import cli
from tests.realconda import conda, conda_python
from tests.treeutil import contents, run_cli


@pytest.fixture(scope="module")
def python() -> Path:
    return conda_python(with_plugin=True)


@pytest.fixture(scope="module")
def template(template_doctor_prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Named ``demo`` in an envs dir of its own (``CONDA_ENVS_PATH``); do not modify."""
    envs = tmp_path_factory.mktemp("plugin") / "envs"
    envs.mkdir()
    return copy_tree(template_doctor_prefix, envs / "demo")


@pytest.fixture
def prefix(template: Path, tmp_path: Path) -> Iterator[Path]:
    copy = copy_tree(template, tmp_path / "prefix")
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


def test_help_lists_conda_and_shrinkconda_options(python: Path, tmp_path: Path) -> None:
    run = conda(python, "shrink", "--help", scratch=tmp_path)
    assert run.returncode == 0, run.stderr
    for conda_style in ("-n ENVIRONMENT, --name ENVIRONMENT", "-p PATH, --prefix PATH",
                        "-d, --dry-run", "--json", "-y, --yes"):
        assert conda_style in run.stdout
    for option in cli.shrink.params:
        assert all(name in run.stdout for name in option.opts if name.startswith("--"))
    listed = conda(python, "--help", scratch=tmp_path)
    assert "shrink" in listed.stdout and "shrinkconda" in listed.stdout


def test_dry_run_json_is_the_audit(python: Path, template: Path, tmp_path: Path) -> None:
    before = contents(template)
    run = conda(python, "shrink", "-p", str(template), "--dry-run", "--json", scratch=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == run_cli("audit", str(template), "--json").stdout
    assert json.loads(run.stdout)["dry_run"] is True
    assert contents(template) == before


@pytest.mark.parametrize("how", ["name", "active"])
def test_the_env_by_name_or_active(how: str, python: Path, template: Path,
                                   tmp_path: Path) -> None:
    env = {"CONDA_ENVS_PATH": str(template.parent)}
    args = ["-n", template.name] if how == "name" else []
    if how == "active":
        env["CONDA_PREFIX"] = str(template)
    run = conda(python, "shrink", *args, "-d", "--json", "--only", "docs", scratch=tmp_path,
                env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["prefix"] == str(template)


def test_shrink_with_shrinkconda_options(python: Path, prefix: Path, tmp_path: Path) -> None:
    run = conda(python, "shrink", "-p", str(prefix), "-y", "--json", "--only", "docs",
                "--only", "static-libs", "--no-strip", "--keep", "share/man/*", scratch=tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert (report["dry_run"], report["rolled_back"], report["verified"]) == (False, False, True)
    assert [s["name"] for s in report["strategies"]] == ["static-libs", "docs", "conda-meta"]
    assert not (prefix / "share/doc").exists() and not os.path.lexists(prefix / "lib/libfoo.a")
    assert (prefix / "share/man/man1/demo-tool.1").is_file()
    assert (prefix / "pkgs").is_dir() and (prefix / "lib/python3.11/test").is_dir()


@pytest.mark.parametrize(("args", "status", "message"), [
    (["-n", "demo", "-p", "{prefix}"], 2,
     "conda shrink: error: argument -p/--prefix: not allowed with argument -n/--name"),
    (["-n", "no-such-env"], 1,
     ("EnvironmentNameNotFound: Could not find conda environment: no-such-env "
     "(conda info --envs lists them)")),
    ([], 2, ("ArgumentError: no active environment to shrink: activate one, or name it "
            "with -n ENVIRONMENT or -p PATH")),
    (["-p", "{prefix}", "--jobs", "0"], 2,
     "conda shrink: error: Invalid value for '--jobs': 0 is not in the range x>=1."),
])
def test_bad_input_is_one_line_and_changes_nothing(args: list[str], status: int, message: str,
                                                   python: Path, template: Path,
                                                   tmp_path: Path) -> None:
    before = contents(template)
    argv = [a.replace("{prefix}", str(template)) for a in args]
    run = conda(python, "shrink", *argv, "-y", scratch=tmp_path,
                env={"CONDA_ENVS_PATH": str(template.parent)})
    assert run.returncode == status, (run.stdout, run.stderr)
    assert [line for line in run.stderr.splitlines() if line.strip()][-1] == message
    assert contents(template) == before


def test_a_rolled_back_shrink_exits_3(python: Path, prefix: Path, tmp_path: Path) -> None:
    before = contents(prefix)
    run = conda(python, "shrink", "-p", str(prefix), "-y", "-q", "--no-strip",
                "--verify-command", "false", scratch=tmp_path)
    assert run.returncode == 3, (run.stdout, run.stderr)
    assert "broken: false: exit status 1" in run.stderr
    assert contents(prefix) == before
