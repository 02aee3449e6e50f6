"""The real conda agrees: ``conda doctor`` finds nothing after a shrink that it did not
find before (missing files, altered files, consistency), and ``conda list`` lists the
same packages, after a default, an aggressive and an app-aware (``--used-by``) shrink,
and with ``--python-code both``.

The fixture env has the traps: a static archive reached through two symlinks
(``fixtures.doctor.libfoo``), and a dependency chain ``chaintop -> chainmid ->
chainbase`` whose middle and bottom the app never touches. rattler, which installed it,
records a symlink's ``sha256_in_prefix`` as the hash of its target's path, which conda
reads as an altered file: those findings are there before, and are not new after.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.install import copy_tree
from shrinkconda import Options, shrink
from tests.condatools import records_problems
from tests.realconda import conda_list, conda_python, doctor

WORKLOAD = 'python -c "import chaintop, demopkg"'
#: aggressive and --used-by also turn the code into bytecode (--python-code bytecode).
KINDS = {
    "default": Options(),
    "aggressive": Options(profile="aggressive"),
    "used-by": Options(used_by=(WORKLOAD,)),
    "python-code-both": Options(python_code="both"),
}


@pytest.fixture(scope="module")
def python() -> Path:
    return conda_python()


@pytest.fixture(scope="module")
def template(template_doctor_prefix: Path) -> Path:
    return template_doctor_prefix


@pytest.fixture(scope="module")
def before(python: Path, template: Path,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[set[tuple[str, ...]], list[str]]:
    """What conda doctor and conda list say of the template (and so of each copy)."""
    scratch = tmp_path_factory.mktemp("conda")
    return doctor(python, template, scratch), conda_list(python, template, scratch)


@pytest.fixture
def prefix(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    copy = copy_tree(template, tmp_path / "prefix")
    monkeypatch.chdir(tmp_path)
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


@pytest.mark.parametrize("kind", list(KINDS))
def test_doctor_finds_nothing_new(kind: str, python: Path, prefix: Path, tmp_path: Path,
                                  before: tuple[set[tuple[str, ...]], list[str]]) -> None:
    if kind == "used-by" and shutil.which("strace") is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    found, listed = before
    report = shrink(prefix, KINDS[kind])
    assert not report.rolled_back, report.broken
    assert doctor(python, prefix, tmp_path) - found == set()
    gone = set(report.removed_packages)
    assert conda_list(python, prefix, tmp_path) == [
        line for line in listed if line.split()[0] not in gone]
    assert records_problems(prefix) == []  # sizes and sha256 of what stays are true
    if kind == "used-by":
        assert sorted(gone) == ["appdemo", "astro", "libfoo", "purepkg"]
        # Emptied, and kept because a kept package depends on them: no files listed.
        for name in ("chainmid", "chainbase"):
            record = json.loads(next((prefix / "conda-meta").glob(f"{name}-*.json")).read_text())
            assert (record["files"], record["paths_data"]["paths"]) == ([], [])
    else:
        assert gone == set()
        assert not os.path.lexists(prefix / "lib/libfoo.a")


def test_doctor_sees_what_a_careless_shrink_does(
        python: Path, prefix: Path, tmp_path: Path,
        before: tuple[set[tuple[str, ...]], list[str]]) -> None:
    """What the comparison above would catch: a removed archive behind a link, and a
    dropped record that another depends on."""
    assert before[0]  # rattler's symlink hashes, see above
    (prefix / "lib/libfoo-1.a").unlink()
    next((prefix / "conda-meta").glob("chainmid-*.json")).unlink()
    new = doctor(python, prefix, tmp_path) - before[0]
    missing = {f for f in new if f[0] == "Missing Files" and len(f) > 1}
    assert missing == {("Missing Files", "libfoo-1.0-h0f0f0f0_0", p) for p in (
        "lib/libfoo-1.a", "lib/libfoo.a", "lib/libfoo_static.a")}
    assert ("The environment is not consistent", "chaintop", "missing", "chainmid=2") in new
