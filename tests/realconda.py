"""The real conda, for tests: where it is, what ``conda doctor`` finds, what ``conda list``
says, and a prefix with the packages that trip them.

conda is not on PyPI; ``../shared/tools/install-conda VENV`` installs it from the
vendored sources. ``.ci/run`` puts it in ``.conda-venv`` with shrinkconda installed
into it (the ``conda shrink`` plugin registers through that install);
``$SHRINKCONDA_CONDA_VENV`` names another one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fixtures.builder import APP_SPECS, build_channel, build_fixture_prefix
from fixtures.doctor import DOCTOR_SPECS, doctor_recipes

REPO = Path(__file__).resolve().parents[1]
VENV_VAR = "SHRINKCONDA_CONDA_VENV"
INSTALL_CONDA = REPO.parent / "shared" / "tools" / "install-conda"
CHECKS = ("missing-files", "altered-files", "consistency")
"""The checks ``conda doctor`` runs offline (``requests-ca-bundle`` needs the network)."""


def conda_venv() -> Path:
    """``$SHRINKCONDA_CONDA_VENV``, else ``.conda-venv`` at the repository root."""
    return Path(os.environ.get(VENV_VAR) or REPO / ".conda-venv")


def conda_python(with_plugin: bool = False) -> Path:
    """The python of a venv with the real conda (and shrinkconda, ``with_plugin``);
    skips the test when there is none and ``../shared`` cannot make one."""
    venv = conda_venv()
    python = venv / "bin" / "python"
    if not _has(python, "conda"):
        if not INSTALL_CONDA.exists():
            pytest.skip(f"no real conda in {venv}: run ../shared/tools/install-conda {venv} "
                        f"(or .ci/run), or set ${VENV_VAR}")
        subprocess.run([str(INSTALL_CONDA), str(venv)], check=True, capture_output=True)
    if with_plugin and not _plugin_here(python):
        # An editable install: the plugin's entry point, this checkout's code (conda's
        # venv has setuptools and tqdm; no isolated build, which would fetch setuptools).
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "wheel", "click>=8.0"], check=True, capture_output=True)
        subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-e", str(REPO)],
                       check=True, capture_output=True)
    return python


def installed_conda() -> Path | None:
    """The python of the conda venv if it is already there (nothing is installed)."""
    python = conda_venv() / "bin" / "python"
    return python if _has(python, "conda") else None


def _has(python: Path, module: str) -> bool:
    return python.exists() and subprocess.run(
        [str(python), "-c", f"import {module}"], capture_output=True, check=False
    ).returncode == 0


def _plugin_here(python: Path) -> bool:
    """shrinkconda is installed into that venv from this checkout, with its plugin's
    entry point (``-I``: not merely importable from the current directory)."""
    code = ("import shrinkconda, importlib.metadata as m; "
            "assert m.entry_points(group='conda', name='shrinkconda'); "
            "print(shrinkconda.__file__)")
    found = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True,
                           check=False)
    return found.returncode == 0 and Path(found.stdout.strip()).parent.parent == REPO


def conda(python: Path, *args: str, scratch: Path, env: dict[str, str] | None = None,
          ) -> subprocess.CompletedProcess[str]:
    """``python -m conda ARGS``, with its package cache in ``scratch`` and no active env."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONDA")}
    base.update(CONDA_PKGS_DIRS=str(scratch / "pkgs"), HOME=str(scratch), **(env or {}))
    return subprocess.run([str(python), "-m", "conda", *args], capture_output=True, text=True,
                          env=base, stdin=subprocess.DEVNULL, check=False)


def doctor(python: Path, prefix: Path, scratch: Path) -> set[tuple[str, ...]]:
    """What ``conda doctor -v -p PREFIX missing-files altered-files consistency`` finds,
    one tuple per finding: (check, package, path) for files; for consistency, the
    package and each missing or mismatched dependency."""
    run = conda(python, "doctor", "-v", "-p", str(prefix), *CHECKS, scratch=scratch)
    assert run.returncode == 0, run.stderr
    return findings(run.stdout)


def findings(report: str) -> set[tuple[str, ...]]:
    """The findings of a ``conda doctor -v`` report (see :func:`doctor`)."""
    found: set[tuple[str, ...]] = set()
    check = ""
    keys: list[tuple[int, str]] = []
    for line in report.splitlines():
        if line.startswith(("❌", "✅")):
            check, keys = line[1:].strip().rstrip(":."), []
            if line.startswith("❌"):
                found.add((check,))
            continue
        text = line.strip()
        if not text or not check:
            continue
        depth = len(line) - len(line.lstrip())
        keys = [(d, k) for d, k in keys if d < depth or (d == depth and text.startswith("- "))]
        if text.endswith(":"):
            keys.append((depth, text[:-1]))
        else:
            found.add((check, *(k for _, k in keys), text.removeprefix("- ")))
    return found


def conda_list(python: Path, prefix: Path, scratch: Path) -> list[str]:
    """``conda list -p PREFIX``: one ``name version build`` per package."""
    run = conda(python, "list", "-p", str(prefix), scratch=scratch)
    assert run.returncode == 0, run.stderr
    return [" ".join(line.split()[:3]) for line in run.stdout.splitlines()
            if line.strip() and not line.startswith("#")]


def build_doctor_prefix(dest: Path) -> Path:
    """The app prefix (``fixtures.usedby``) plus ``fixtures.doctor``'s packages."""
    return build_fixture_prefix(dest, build_channel(extra=doctor_recipes()),
                                (*APP_SPECS, *DOCTOR_SPECS))
