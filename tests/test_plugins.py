"""Third-party strategies: a real plugin distribution, installed, listed and used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from treeutil import run_cli

PLUGIN_MODULE = '''
"""Removes CSS source maps, which no browser in a container will ask for."""
from shrinkconda import Profile, SourceReader, Strategy


def select(scan):
    for index, path in enumerate(scan.paths):
        if path.endswith(".css.map"):
            yield index


STRATEGY = Strategy(name="css-maps", summary="CSS source maps (*.css.map)",
                    select=select, default=False)
PROFILE = Profile(name="lean", summary="only CSS maps, all symbols",
                  strategies=("css-maps",), strip_mode="all", defaults=False)
READER = SourceReader(name="purepkg", reason="purepkg renders its own source as help")
'''


def _install_plugin(where: Path, name: str, entry_points: dict[str, str],
                    module: str, profiles: dict[str, str] | None = None,
                    readers: dict[str, str] | None = None) -> Path:
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
    if profiles:
        with open(src / "pyproject.toml", "a") as f:
            f.write('[project.entry-points."shrinkconda.profiles"]\n'
                    + "".join(f'{k} = "{v}"\n' for k, v in profiles.items()))
    if readers:
        with open(src / "pyproject.toml", "a") as f:
            f.write('[project.entry-points."shrinkconda.source_readers"]\n'
                    + "".join(f'{k} = "{v}"\n' for k, v in readers.items()))
    site = where / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(src)],
                   check=True, capture_output=True)
    return site


def _env_with(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site)}


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _install_plugin(tmp_path_factory.mktemp("plugin"), "shrinkconda_cssmaps",
                           {"css-maps": "shrinkconda_cssmaps:STRATEGY"}, PLUGIN_MODULE,
                           {"lean": "shrinkconda_cssmaps:PROFILE"},
                           {"purepkg": "shrinkconda_cssmaps:READER"})


def test_plugin_is_listed(plugin_site: Path) -> None:
    result = run_cli("strategies", env=_env_with(plugin_site))
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("css-maps"))
    assert "source maps" in line and "shrinkconda_cssmaps:STRATEGY" in line
    assert "(profiles: lean)" in line
    profiles = run_cli("profiles", env=_env_with(plugin_site))
    assert "lean: only CSS maps" in profiles.stdout and "strategies: css-maps;" in profiles.stdout


def test_plugin_runs_like_a_builtin(plugin_site: Path, prefix: Path) -> None:
    bundle = prefix / "share" / "jupyter" / "lab" / "static"
    bundle.mkdir(parents=True)
    (bundle / "main.css").write_text("body {}")
    (bundle / "main.css.map").write_text("{}" * 5000)
    result = run_cli("shrink", "-y", "--only", "css-maps", str(prefix),
                     env=_env_with(plugin_site))
    assert result.returncode == 0, result.stderr
    assert "css-maps" in result.stdout
    assert not (bundle / "main.css.map").exists() and (bundle / "main.css").exists()


def test_plugin_profile_chooses_strategies_and_strip_mode(plugin_site: Path,
                                                          prefix: Path) -> None:
    (prefix / "share" / "site.css.map").write_text("{}" * 5000)
    result = run_cli("audit", "--json", "--profile", "lean", str(prefix),
                     env=_env_with(plugin_site))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [s["name"] for s in doc["strategies"]][:2] == ["css-maps", "strip"]
    assert doc["strategies"][0]["files"] == 1
    unknown = run_cli("audit", "--profile", "nope", str(prefix), env=_env_with(plugin_site))
    assert unknown.returncode == 2 and "lean" in unknown.stderr


def test_a_plugin_source_reader_keeps_that_packages_sources(plugin_site: Path,
                                                           prefix: Path) -> None:
    result = run_cli("audit", "--json", "--python-code", "bytecode", "--no-strip",
                     str(prefix), env=_env_with(plugin_site))
    assert result.returncode == 0, result.stderr
    kept = {k["path"]: k["reason"] for k in json.loads(result.stdout)["kept"]}
    assert kept["lib/python3.11/site-packages/purepkg"] == (
        "purepkg renders its own source as help; --python-code-convert purepkg would "
        "convert it anyway, removing 1 .py file (63 B)")
    without = json.loads(run_cli("audit", "--json", "--python-code", "bytecode",
                                 "--no-strip", str(prefix)).stdout)
    assert "lib/python3.11/site-packages/purepkg" not in {k["path"] for k in without["kept"]}


def test_broken_plugin_is_reported_and_skipped(tmp_path: Path, prefix: Path) -> None:
    site = _install_plugin(tmp_path, "shrinkconda_broken", {"broken": "shrinkconda_broken:X"},
                           "raise ImportError('needs a module that is not installed')\n")
    result = run_cli("audit", str(prefix), env=_env_with(site))
    assert result.returncode == 0
    assert "broken" in result.stdout and "failed to load" in result.stdout
    listing = run_cli("strategies", env=_env_with(site))
    assert listing.returncode == 0 and "failed to load" in listing.stderr


def test_duplicate_name_is_an_error_naming_both(tmp_path: Path, prefix: Path) -> None:
    module = PLUGIN_MODULE.replace('name="css-maps"', 'name="docs"')
    site = _install_plugin(tmp_path, "shrinkconda_dup", {"docs": "shrinkconda_dup:STRATEGY"},
                           module)
    result = run_cli("audit", str(prefix), env=_env_with(site))
    assert result.returncode == 1
    assert "built-in" in result.stderr and "shrinkconda_dup:STRATEGY" in result.stderr
