"""A shrink that cannot succeed is refused before it changes anything: no room on the
filesystem, a read-only mount, directories the user may not write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultutil import (
    UNPRIVILEGED,
    Paused,
    assert_one_line,
    assert_untouched,
    copy_prefix,
    run_cli_as,
    tmpfs,
    tree,
)
from treeutil import prefix_python, run_cli

from shrinkconda import Options, pipeline
from shrinkconda.phases import bytecode, strip_phase
from shrinkconda.scan import TEMP_SUFFIX
from shrinkconda.transaction import preflight
from shrinkconda.transaction.testhooks import fill_filesystem

MiB = 1 << 20


@pytest.fixture
def small_fs() -> Iterator[Path]:
    """A 72 MiB tmpfs: the fixture prefix (57 MiB) and a filler file."""
    with tmpfs("72m", 4000) as where:
        yield where


def _leave_free(where: Path, free: int) -> None:
    """Fill ``where``'s filesystem, then give ``free`` bytes back."""
    fill_filesystem(str(where / "fill"))
    filler = where / "fill" / "bytes"
    os.truncate(filler, filler.stat().st_size - free)


def test_the_strip_need_covers_the_copies_a_real_shrink_writes(
        template_prefix: Path, prefix: Path, tmp_path: Path) -> None:
    """The need, predicted without writing, against the stripped copies a real shrink
    has on disk when it pauses before staging (then a signal rolls it back)."""
    options, chosen, _, problems = pipeline._resolve(Options())
    the_plan, _, _, _ = pipeline._plan(template_prefix, chosen, problems, options, None)
    room = strip_phase.StripPhase("debug").room(the_plan.scan, the_plan.removed())
    needs = {n.phase: n for n in preflight.needs(the_plan, [room])}
    run = Paused(tmp_path, "journal", str(prefix))
    run.wait_for("journal")  # every stripped copy is written, nothing is staged yet
    copies = [os.lstat(os.path.join(d, name)) for d, _, names in os.walk(prefix)
              for name in names if name.startswith(".") and name.endswith(TEMP_SUFFIX)]
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish().returncode == 143

    written = sum(st.st_blocks * 512 for st in copies)
    assert copies and needs["strip"].inodes == len(copies)
    # Enough for what was really written, and not more than a block per copy over it.
    assert written <= needs["strip"].size <= written + len(copies) * preflight.BLOCK
    assert needs["strip"].skip == "pass --no-strip"
    assert needs["staging"].size >= preflight.HEADROOM
    assert "commit" in needs and "dedup" not in needs


def test_compiled_bytecode_is_a_need_of_its_own(template_prefix: Path) -> None:
    options, chosen, _, problems = pipeline._resolve(Options(python_code="bytecode"))
    the_plan, _, _, _ = pipeline._plan(template_prefix, chosen, problems, options, None)
    phase = bytecode.PythonCodePhase("bytecode")
    room = phase.room(the_plan.scan, the_plan.removed())
    made = phase.predict(the_plan.scan, the_plan.removed(), ())
    assert room is not None and room.skip == "pass --python-code source"
    assert room.size >= sum(a.allocated for a in made.added)  # an upper estimate
    assert room.inodes >= len(made.added)


def test_bytecode_without_room_is_refused_and_the_advice_works(
        template_prefix: Path, small_fs: Path) -> None:
    """The python-code phase's own need, on a filesystem where everything but the
    compiled bytecode fits: refused up front, naming the phase and how to skip it; the
    audit says the same in its JSON; and the skip it suggests then goes through."""
    prefix = copy_prefix(template_prefix, small_fs / "prefix")
    _leave_free(small_fs, 8 * MiB)
    before = tree(prefix)

    result = run_cli("shrink", "-y", "--python-code", "bytecode", str(prefix), timeout=600)
    audit = run_cli("audit", "--json", "--python-code", "bytecode", str(prefix), timeout=600)

    line = assert_one_line(result, 1, f"no space left on {prefix}'s filesystem",
                           "the python-code phase needs ", "for compiled bytecode",
                           "8.0 MiB are free", "pass --python-code source")
    assert audit.returncode == 0, audit.stderr
    assert json.loads(audit.stdout)["refused"] == line.removeprefix("Error: ")
    assert_untouched(prefix, before)
    advised = run_cli("shrink", "-y", "-q", "--python-code", "source", str(prefix),
                      timeout=600)
    assert advised.returncode == 0, advised.stderr


def test_too_little_room_is_refused_up_front(template_prefix: Path, small_fs: Path) -> None:
    prefix = copy_prefix(template_prefix, small_fs / "prefix")
    _leave_free(small_fs, 2 * MiB)
    before = tree(prefix)

    audit = run_cli("audit", str(prefix), timeout=600)
    result = run_cli("shrink", "-y", str(prefix), timeout=600)

    assert audit.returncode == 0, audit.stderr
    assert "a shrink would be refused: no space left on" in audit.stdout
    assert_one_line(result, 1, f"no space left on {prefix}'s filesystem",
                    "the strip phase needs ", "MiB for stripped copies", "2.0 MiB are free",
                    "free space or pass --no-strip")
    assert_untouched(prefix, before)
    # What it suggests works with the same room: the rest needs little.
    without = run_cli("shrink", "-y", "-q", "--no-strip", str(prefix), timeout=600)
    assert without.returncode == 0, without.stderr
    assert prefix_python(prefix, "import demopkg; assert demopkg.add(2, 3) == 5").returncode == 0


def test_read_only_mount_is_refused_before_anything_is_created(
        template_prefix: Path, small_fs: Path) -> None:
    prefix = copy_prefix(template_prefix, small_fs / "prefix")
    before = tree(prefix)
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        result = run_cli("shrink", "-y", str(prefix), timeout=600)
        audit = run_cli("audit", "--json", str(prefix), timeout=600)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)

    assert_one_line(result, 1, f"{prefix} is on a read-only filesystem",
                    "remount it read-write or shrink a writable copy")
    assert audit.returncode == 0, audit.stderr
    assert json.loads(audit.stdout)["refused"].startswith(f"{prefix} is on a read-only")
    assert_untouched(prefix, before)


def test_directory_the_user_cannot_write_is_refused_up_front(
        template_prefix: Path, small_fs: Path) -> None:
    prefix = copy_prefix(template_prefix, small_fs / "prefix", owner=UNPRIVILEGED)
    locked = prefix / "lib/python3.11/site-packages/demopkg"  # holds tests/ and __pycache__/
    os.chown(locked, 0, 0)
    before = tree(prefix)

    result = run_cli_as(UNPRIVILEGED, "shrink", "-y", str(prefix))
    audit = run_cli_as(UNPRIVILEGED, "audit", "--json", str(prefix))

    line = assert_one_line(result, 1, f"{locked} is not writable by this user",
                           "run shrinkconda as the prefix's owner",
                           "--keep 'lib/python3.11/site-packages/demopkg'")
    # The audit, a CI pre-flight, says the shrink would be refused, and why.
    assert audit.returncode == 0, audit.stderr
    refused = json.loads(audit.stdout)["refused"]
    assert refused == line.removeprefix("Error: ")
    assert f"a shrink would be refused: {refused}" in json.loads(audit.stdout)["notes"]
    assert_untouched(prefix, before)
    # The advice works as given: --keep spares the directory from every phase, strip too.
    kept = run_cli_as(UNPRIVILEGED, "audit", "--json", "--keep",
                      "lib/python3.11/site-packages/demopkg", str(prefix))
    assert json.loads(kept.stdout)["refused"] is None, kept.stderr


def test_prefix_the_user_cannot_write_is_refused(template_prefix: Path, small_fs: Path) -> None:
    prefix = copy_prefix(template_prefix, small_fs / "prefix")  # root's
    before = tree(prefix)

    result = run_cli_as(UNPRIVILEGED, "shrink", "-y", str(prefix))

    assert_one_line(result, 1, f"{prefix} is not writable by this user", "belongs to uid 0")
    assert_untouched(prefix, before)
