"""pip inside conda: after a shrink, the ``RECORD`` of a distribution pip installed stays
true (every line's file is there with the hash it lists), and pip's own commands and
``importlib.metadata`` keep working on it, uninstall included."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.builder import fixture_cache_dir
from fixtures.gpu import FAKEDNN, FAKEDNN_LIB, fakednn_wheel, pip_install, pip_wheel
from fixtures.install import copy_tree
from shrinkconda import Options, shrink
from shrinkconda.piprecord import rewrite

SITE = "lib/python3.11/site-packages"
DIST = "nvidia-fakednn-cu13"


@pytest.fixture(scope="module")
def template_pip_prefix(template_app_prefix: Path,
                        tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app prefix with the fake cuDNN wheel pip-installed; do not modify."""
    root = tmp_path_factory.mktemp("pip")
    prefix = copy_tree(template_app_prefix, root / "prefix")
    pip_install(prefix, fakednn_wheel(root), *pip_wheel(fixture_cache_dir() / "wheels"))
    return prefix


@pytest.fixture
def pip_prefix(template_pip_prefix: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of `template_pip_prefix`."""
    yield copy_tree(template_pip_prefix, tmp_path / "prefix")


def _record(prefix: Path) -> Path:
    return prefix / SITE / f"{FAKEDNN}-9.0.dist-info" / "RECORD"


def _untrue_lines(prefix: Path) -> list[str]:
    """The RECORD lines whose file is missing or has another hash or size."""
    bad = []
    site = prefix / SITE
    for row in csv.reader(io.StringIO(_record(prefix).read_text())):
        if not row or not row[1]:
            continue
        path = site / row[0]
        if not path.is_file():
            bad.append(f"{row[0]}: missing")
            continue
        data = path.read_bytes()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if row[1] != f"sha256={digest}" or row[2] != str(len(data)):
            bad.append(f"{row[0]}: hash or size")
    return bad


def _pip(prefix: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The prefix's own pip (pip-installed into it, as a conda env has one)."""
    env = {"PATH": f"{prefix}/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}
    return subprocess.run([str(prefix / "bin/python"), "-m", "pip", *args], env=env,
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("profile", ["safe", "aggressive"])
def test_record_stays_true_after_a_shrink(pip_prefix: Path, profile: str) -> None:
    assert _untrue_lines(pip_prefix) == []
    report = shrink(pip_prefix, Options(profile=profile))
    assert not report.rolled_back, report.broken
    assert not (pip_prefix / SITE / "fakednn/tests").exists()  # the shrink did remove files
    assert _untrue_lines(pip_prefix) == []
    checked = _pip(pip_prefix, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    shown = _pip(pip_prefix, "show", "-f", DIST)
    assert shown.returncode == 0 and "tests/test_version.py" not in shown.stdout, shown.stderr
    assert f"{FAKEDNN_LIB}/libcudnn.so.9" in shown.stdout
    files = subprocess.run(
        [str(pip_prefix / "bin/python"), "-c",
         (f"from importlib.metadata import files; print(all(f.locate().exists() for f in "
          f"files({DIST!r})))")], capture_output=True, text=True, check=False)
    assert files.stdout.strip() == "True", files.stderr


def test_pip_uninstall_after_a_shrink_leaves_what_it_leaves_unshrunk(
        pip_prefix: Path, template_pip_prefix: Path, tmp_path: Path) -> None:
    unshrunk = copy_tree(template_pip_prefix, tmp_path / "unshrunk")
    report = shrink(pip_prefix, Options(profile="aggressive"))
    assert not report.rolled_back, report.broken
    for prefix in (pip_prefix, unshrunk):
        done = _pip(prefix, "uninstall", "-y", DIST)
        assert done.returncode == 0, done.stderr
    assert not (pip_prefix / SITE / "fakednn").exists()
    assert not list((pip_prefix / SITE).glob(f"{FAKEDNN}-*"))
    assert _left(pip_prefix) == _left(unshrunk)  # pip leaves namespace dirs (nvidia/cudnn)


def _left(prefix: Path) -> set[str]:
    return {str(p.relative_to(prefix / SITE)) for p in (prefix / SITE).glob("nvidia/**/*")}


def test_rewrite_drops_removed_updates_rewritten_and_lists_added() -> None:
    text = ("pkg/__init__.py,sha256=AAAA,10\n"
            "pkg/tests/test_a.py,sha256=BBBB,5\n"
            "pkg/_x.so,sha256=CCCC,100\n"
            "pkg-1.0.dist-info/RECORD,,\n")
    site = "lib/python3.11/site-packages"
    new = rewrite(text, site, {f"{site}/pkg/tests", f"{site}/pkg/__init__.py"},
                  {f"{site}/pkg/_x.so": [60, "00" * 32]},
                  {f"{site}/pkg/__init__.py": [(f"{site}/pkg/__init__.pyc", 7, "11" * 32)]})
    lines = new.splitlines()
    assert lines[0].startswith("pkg/__init__.pyc,sha256=ERERE") and lines[0].endswith(",7")
    assert "pkg/tests/test_a.py" not in new and "pkg/__init__.py," not in new
    assert lines[1] == "pkg/_x.so,sha256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA,60"
    assert lines[-1] == "pkg-1.0.dist-info/RECORD,,"
    # idempotent, as recovery may apply it twice
    assert rewrite(new, site, {f"{site}/pkg/tests"}, {f"{site}/pkg/_x.so": [60, "00" * 32]},
                   {}) == new
