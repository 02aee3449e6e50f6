"""A real fault mid-way (the disk fills, permission is denied) undoes the shrink in the
same process: one line, exit 1, and the prefix exactly as before, or finished."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultutil import (
    UNPRIVILEGED,
    Paused,
    assert_one_line,
    assert_untouched,
    copy_prefix,
    remove,
    shrunk_tree,
    tmpfs,
    tree,
    without_records,
)
from treeutil import prefix_python, run_cli

from shrinkconda.transaction import faults
from shrinkconda.transaction.journal import STATE_DIR

IMPORTS_OK = "import demopkg, astro, purepkg; assert demopkg.add(2, 3) == 5"


@pytest.fixture
def small_fs() -> Iterator[Path]:
    """A 72 MiB tmpfs with 4,000 inodes: the fixture prefix (57 MiB, 2,300 inodes)
    fits with room for a shrink, and a filler file can take the rest."""
    with tmpfs("72m", 4000) as where:
        yield where


@pytest.fixture(scope="module")
def shrunk_reference(template_prefix: Path, tmp_path_factory: pytest.TempPathFactory
                     ) -> dict[str, tuple[int, int, str]]:
    """The tree of a completed shrink of the fixture prefix, records aside."""
    return shrunk_tree(template_prefix, tmp_path_factory.mktemp("reference") / "prefix")


@pytest.mark.parametrize(("point", "what", "says"), [
    ("strip", "bytes", "while writing a stripped copy"),
    ("journal", "bytes", "while writing the shrink's journal"),
    ("staging", "inodes", "while moving files into the staging directory"),
])
def test_disk_full_mid_way_rolls_back_in_the_same_process(
        template_prefix: Path, small_fs: Path, point: str, what: str, says: str) -> None:
    prefix = copy_prefix(template_prefix, small_fs / "prefix")
    before = tree(prefix)
    env = {**os.environ, "SHRINKCONDA_TEST_FILL_AT": f"{point}:{what}:{small_fs / 'fill'}"}

    result = run_cli("shrink", "-y", str(prefix), env=env, timeout=600)

    assert_one_line(result, 1, "No space left on device", says,
                    "the shrink was rolled back, the prefix is as it was", "and run again")
    assert result.stdout == ""
    assert_untouched(prefix, before)


def test_disk_full_while_compiling_bytecode_changes_nothing_and_says_so(
        template_prefix: Path) -> None:
    """The compiled files are written into staging, before anything in the prefix moves:
    the fault ends the shrink there (it used to keep each module that could not be
    written as source, and commit a half-converted env)."""
    with tmpfs("100m", 6000) as fs:  # room for the bytecode's need, up front
        prefix = copy_prefix(template_prefix, fs / "prefix")
        before = tree(prefix)
        env = {**os.environ, "SHRINKCONDA_TEST_FILL_AT": f"python-code:bytes:{fs / 'fill'}"}

        result = run_cli("shrink", "-y", "--python-code", "bytecode", str(prefix), env=env,
                         timeout=600)

        line = assert_one_line(result, 1, "No space left on device while writing compiled "
                               f"bytecode: {prefix / STATE_DIR}/staging/python-code/",
                               "nothing was changed", "free space on its filesystem")
        assert "kept as source" not in line
        assert result.stdout == ""
        assert_untouched(prefix, before)


def test_disk_full_while_committing_is_finished_by_the_next_run(
        template_prefix: Path, small_fs: Path,
        shrunk_reference: dict[str, tuple[int, int, str]]) -> None:
    prefix = copy_prefix(template_prefix, small_fs / "prefix")
    filler = small_fs / "fill"
    env = {**os.environ, "SHRINKCONDA_TEST_FILL_AT": f"commit:bytes:{filler}"}

    result = run_cli("shrink", "-y", str(prefix), env=env, timeout=600)

    # Verified and committing: it cannot go back, and it could not finish the records.
    assert_one_line(result, 1, "No space left on device while rewriting the conda-meta",
                    f"{prefix / STATE_DIR} keeps what the next run needs", "free space")
    assert prefix_python(prefix, IMPORTS_OK).returncode == 0
    remove(filler)
    rerun = run_cli("shrink", "-y", "--json", str(prefix), timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "finished a verified shrink" in rerun.stdout
    # A plain copy: its scripts still name the template's path.
    assert without_records(tree(prefix, relocated=template_prefix)) == shrunk_reference
    assert not (prefix / STATE_DIR).exists()


def test_permission_denied_mid_way_rolls_back(template_prefix: Path, small_fs: Path) -> None:
    """The directory becomes root's after the check up front, before staging."""
    prefix = copy_prefix(template_prefix, small_fs / "prefix", owner=UNPRIVILEGED)
    package = prefix / "lib/python3.11/site-packages/demopkg"
    before = tree(prefix)
    talk = small_fs / "talk"  # where the paused shrink, not root, writes
    talk.mkdir(mode=0o777)
    talk.chmod(0o777)
    run = Paused(talk, "journal", str(prefix), user=UNPRIVILEGED)
    run.wait_for("journal")
    os.chown(package, 0, 0)
    run.go_on("journal")
    result = run.finish()

    assert_one_line(result, 1, "Permission denied while moving files into the staging",
                    str(package), "the shrink was rolled back, the prefix is as it was",
                    "run shrinkconda as the prefix's owner")
    assert_untouched(prefix, before)


def test_debug_shows_the_traceback_too(template_prefix: Path, small_fs: Path) -> None:
    prefix = copy_prefix(template_prefix, small_fs / "prefix")
    env = {**os.environ, "SHRINKCONDA_TEST_FILL_AT": f"journal:bytes:{small_fs / 'fill'}"}

    result = run_cli("shrink", "-y", "--debug", str(prefix), env=env, timeout=600)

    assert result.returncode == 1
    assert "Traceback" in result.stderr and "OSError: [Errno 28]" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: No space left on device")
    assert not (prefix / STATE_DIR).exists()
    shutil.rmtree(small_fs / "fill")


def test_messages_name_the_operation_the_path_and_what_to_do(tmp_path: Path) -> None:
    journal = tmp_path / STATE_DIR / "journal.tmp"
    said = faults.describe(OSError(errno.EROFS, os.strerror(errno.EROFS), str(journal)),
                           tmp_path)
    assert said == (f"Read-only file system while writing the shrink's journal: {journal}; "
                    "remount the filesystem read-write and run again")
    record = tmp_path / "conda-meta" / "x-1-0.json"
    said = faults.describe(OSError(errno.EIO, os.strerror(errno.EIO), str(record)), tmp_path)
    assert said.startswith("Input/output error while rewriting the conda-meta records")
    assert said.endswith("check it (dmesg) before running again")
