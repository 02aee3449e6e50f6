"""``pixi shrink``: the ``pixi-shrink`` executable pixi runs for it, on an env in pixi's
layout (``<project>/.pixi/envs/<name>``, the package cache elsewhere)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fixtures import DEFAULT_SPECS, copy_tree, install
from shrinkconda.frontends.pixi import main
from tests.treeutil import contents, run_cli

PIXI_SHRINK = Path(sys.executable).parent / "pixi-shrink"


@pytest.fixture(scope="module")
def template_env(fixture_channel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An env installed as pixi installs one, its cache outside; do not modify."""
    root = tmp_path_factory.mktemp("pixi")
    env = root / "project" / ".pixi" / "envs" / "default"
    install(env, DEFAULT_SPECS, fixture_channel, root / "rattler-cache", conda_cache_layout=False)
    return env


def project(tmp_path: Path, template_env: Path, manifest: str = "pixi.toml",
            env: str = "default") -> Path:
    """A pixi project in ``tmp_path/project`` with a copy of the env as ``env``."""
    root = tmp_path / "project"
    (root / ".pixi" / "envs").mkdir(parents=True)
    text = '[project]\nname = "demo"\n' if manifest == "pixi.toml" else \
        '[project]\nname = "demo"\n\n[tool.pixi.project]\nchannels = []\n'
    (root / manifest).write_text(text)
    copy_tree(template_env, root / ".pixi" / "envs" / env)
    return root


def pixi_shrink(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``pixi shrink ARGS`` as pixi runs it: the executable, in the user's directory."""
    return subprocess.run([str(PIXI_SHRINK), *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)


def test_shrinks_the_env_of_the_project_above(template_env: Path, tmp_path: Path) -> None:
    root = project(tmp_path, template_env)
    (root / "src" / "deep").mkdir(parents=True)
    run = pixi_shrink("-y", "--json", "--no-strip", cwd=root / "src" / "deep")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    env = root / ".pixi" / "envs" / "default"
    assert (report["prefix"], report["dry_run"], report["rolled_back"]) == (
        str(env), False, False)
    assert report["bytes_saved"] > 0 and not (env / "share" / "doc").exists()
    assert (root / "pixi.toml").is_file()


def test_environment_option_and_dry_run(template_env: Path, tmp_path: Path) -> None:
    root = project(tmp_path, template_env, manifest="pyproject.toml", env="test")
    env = root / ".pixi" / "envs" / "test"
    before = contents(env)
    run = pixi_shrink("-e", "test", "--dry-run", "--json", "--profile", "aggressive",
                      cwd=root)
    assert run.returncode == 0, run.stderr
    assert run.stdout == run_cli("audit", "--json", "--profile", "aggressive", str(env)).stdout
    explicit = pixi_shrink(str(env), "--dry-run", "--json", "--profile", "aggressive",
                           cwd=tmp_path)
    assert explicit.stdout == run.stdout
    assert contents(env) == before


@pytest.mark.parametrize(("args", "where", "message"), [
    ([], "nowhere", "no pixi project (pixi.toml, or pyproject.toml with [tool.pixi]) in"),
    (["-e", "lint"], "project", "the environment 'lint' of"),
    (["-e", "default", "{env}"], "project", "give a PREFIX, or -e/--environment"),
])
def test_bad_input_changes_nothing(args: list[str], where: str, message: str,
                                   template_env: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path, template_env)
    env = root / ".pixi" / "envs" / "default"
    (tmp_path / "nowhere").mkdir()
    monkeypatch.chdir(tmp_path / where)
    before = contents(env)
    result = CliRunner().invoke(main, [a.replace("{env}", str(env)) for a in args] + ["-y"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert contents(env) == before
