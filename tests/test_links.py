"""No shrink leaves a symlink dangling that resolved before: a link whose target goes,
goes with it in the same line, or the target stays; the audit predicts it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.install import copy_tree
from shrinkconda import Options, audit, shrink
from shrinkconda.render.report import Report


@pytest.fixture(scope="module")
def template(template_doctor_prefix: Path) -> Path:
    return template_doctor_prefix


@pytest.fixture
def prefix(template: Path, tmp_path: Path) -> Iterator[Path]:
    copy = copy_tree(template, tmp_path / "prefix")
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


def resolving(prefix: Path) -> set[str]:
    """The symlinks of the prefix that lead to something."""
    return {os.path.relpath(os.path.join(d, n), prefix) for d, dirs, files in os.walk(prefix)
            for n in dirs + files
            if os.path.islink(os.path.join(d, n)) and os.path.exists(os.path.join(d, n))}


def dangling(prefix: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, n), prefix) for d, dirs, files in os.walk(prefix)
            for n in dirs + files
            if os.path.islink(os.path.join(d, n)) and not os.path.exists(os.path.join(d, n))}


def removed_by(report: Report, name: str) -> int:
    """How many files and symlinks the report's line ``name`` removes."""
    return next(line.saving.files for line in report.lines if line.name == name)


def test_links_go_with_their_targets(prefix: Path) -> None:
    before = resolving(prefix)
    predicted = audit(prefix, Options(strip_mode=None))
    report = shrink(prefix, Options(strip_mode=None, verify=False))
    assert not dangling(prefix)
    # The archive and both links to it (one through the other) go in one line.
    for path in ("lib/libfoo-1.a", "lib/libfoo.a", "lib/libfoo_static.a"):
        assert not os.path.lexists(prefix / path)
    assert removed_by(predicted, "static-libs") == 4  # and libdemo.a
    assert removed_by(report, "static-libs") == 4
    assert os.path.exists(prefix / "lib/foo/current")
    gone = {p for p in before - resolving(prefix) if not p.startswith("pkgs/")}  # pkgs-cache
    assert gone == {"lib/libfoo.a", "lib/libfoo_static.a"}


def test_a_link_that_must_stay_keeps_its_target(prefix: Path) -> None:
    report = shrink(prefix, Options(keep=("lib/libfoo_static.a",), strip_mode=None,
                                    verify=False))
    assert not dangling(prefix)
    assert os.path.islink(prefix / "lib/libfoo.a")  # on the way
    assert (prefix / "lib/libfoo-1.a").read_bytes().startswith(b"!<arch>")
    assert ("lib/libfoo-1.a", "the target of lib/libfoo_static.a, which stays") in {
        (k.path, k.reason) for k in report.kept}
    assert not (prefix / "lib/libdemo.a").exists()


def test_used_by_leaves_no_link_dangling(prefix: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    monkeypatch.chdir(tmp_path)
    # Reads the archive by its own name only: both links to it go, it stays.
    shrink(prefix, Options(used_by=("cat $CONDA_PREFIX/lib/libfoo-1.a > /dev/null",),
                           strip_mode=None, verify=False))
    assert not dangling(prefix)
    assert (prefix / "lib/libfoo-1.a").is_file()
    assert not os.path.lexists(prefix / "lib/libfoo.a")
