"""Third-party strategies: a real plugin distribution, installed, listed and used."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from treeutil import run_cli

PLUGIN_MODULE = '''
"""Removes JavaScript source maps, which no browser in a container will ask for."""
from shrinkconda import Strategy


def select(scan):
    for index, path in enumerate(scan.paths):
        if path.endswith(".js.map"):
            yield index


STRATEGY = Strategy(name="js-maps", summary="JavaScript source maps (*.js.map)",
                    select=select)
'''


def _install_plugin(where: Path, name: str, entry_points: dict[str, str],
                    module: str) -> Path:
    """Build and install a plugin distribution into ``where/site`` with pip."""
    src = where / f"{name}-src"
    (src / name).mkdir(parents=True)
    (src / name / "__init__.py").write_text(module)
    eps = "\n".join(f'{k} = "{v}"' for k, v in entry_points.items())
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name}"
        version = "0.1"

        [project.entry-points."shrinkconda.strategies"]
        """) + eps + "\n")
    site = where / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(src)],
                   check=True, capture_output=True)
    return site


def _env_with(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site)}


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _install_plugin(tmp_path_factory.mktemp("plugin"), "shrinkconda_jsmaps",
                           {"js-maps": "shrinkconda_jsmaps:STRATEGY"}, PLUGIN_MODULE)


def test_plugin_is_listed(plugin_site: Path) -> None:
    result = run_cli("strategies", env=_env_with(plugin_site))
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("js-maps"))
    assert "source maps" in line and "shrinkconda_jsmaps:STRATEGY" in line


def test_plugin_runs_like_a_builtin(plugin_site: Path, prefix: Path) -> None:
    bundle = prefix / "share" / "jupyter" / "lab" / "static"
    bundle.mkdir(parents=True)
    (bundle / "main.js").write_text("console.log(1)")
    (bundle / "main.js.map").write_text("{}" * 5000)
    result = run_cli("shrink", "-y", "--only", "js-maps", str(prefix),
                     env=_env_with(plugin_site))
    assert result.returncode == 0, result.stderr
    assert "js-maps" in result.stdout
    assert not (bundle / "main.js.map").exists() and (bundle / "main.js").exists()


def test_broken_plugin_is_reported_and_skipped(tmp_path: Path, prefix: Path) -> None:
    site = _install_plugin(tmp_path, "shrinkconda_broken", {"broken": "shrinkconda_broken:X"},
                           "raise ImportError('needs a module that is not installed')\n")
    result = run_cli("audit", str(prefix), env=_env_with(site))
    assert result.returncode == 0
    assert "broken" in result.stdout and "failed to load" in result.stdout
    listing = run_cli("strategies", env=_env_with(site))
    assert listing.returncode == 0 and "failed to load" in listing.stderr


def test_duplicate_name_is_an_error_naming_both(tmp_path: Path, prefix: Path) -> None:
    module = PLUGIN_MODULE.replace('name="js-maps"', 'name="docs"')
    site = _install_plugin(tmp_path, "shrinkconda_dup", {"docs": "shrinkconda_dup:STRATEGY"},
                           module)
    result = run_cli("audit", str(prefix), env=_env_with(site))
    assert result.returncode == 1
    assert "built-in" in result.stderr and "shrinkconda_dup:STRATEGY" in result.stderr
