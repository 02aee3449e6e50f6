"""SIGINT, SIGTERM and SIGHUP sent to a real ``shrinkconda shrink`` (and ``audit``) at
every named point, from before the lock to after the library returned: one line that
says what the prefix is, exit 128 + the signal, and the prefix as before (or, once
committing, exactly a completed shrink); the commands it runs die with it, and a second
signal cannot cut the rollback short."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
from faultutil import (
    Paused,
    assert_one_line,
    assert_untouched,
    gone,
    shrunk_tree,
    tree,
    wait_for_file,
    without_records,
)
from treeutil import prefix_python

from shrinkconda.errors import Interrupted
from shrinkconda.transaction import interrupt
from shrinkconda.transaction.journal import STATE_DIR

IMPORTS_OK = "import demopkg, astro, purepkg; assert demopkg.add(2, 3) == 5"
ROLLED_BACK = "the shrink was rolled back, the prefix is as it was"
SHRUNK = "the shrink was committed, so it was finished: the prefix is shrunk"
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


@pytest.fixture(scope="module")
def shrunk_reference(template_prefix: Path, tmp_path_factory: pytest.TempPathFactory
                     ) -> dict[str, tuple[int, int, str]]:
    """The tree of a completed shrink of the fixture prefix, records aside."""
    return shrunk_tree(template_prefix, tmp_path_factory.mktemp("reference") / "prefix")


@pytest.mark.parametrize(("point", "signum", "outcome"), [
    ("lock", signal.SIGINT, "nothing was changed"),        # before the lock is taken
    ("recovered", signal.SIGHUP, "nothing was changed"),   # locked, nothing to recover
    *(("prepare", signum, "nothing was changed")           # planned, nothing written yet
      for signum in SIGNALS),
    *(("staging", signum, ROLLED_BACK) for signum in SIGNALS),  # a path is in staging
], ids=lambda v: signal.Signals(v).name if isinstance(v, signal.Signals) else None)
def test_signal_before_the_commit_leaves_the_prefix_as_it_was(
        prefix: Path, tmp_path: Path, point: str, outcome: str, signum: int) -> None:
    before = tree(prefix)
    run = Paused(tmp_path, point, str(prefix))
    run.wait_for(point)
    run.proc.send_signal(signum)
    result = run.finish()

    assert_one_line(result, 128 + signum, f"{signal.Signals(signum).name} received: {outcome}")
    assert_untouched(prefix, before)


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_while_committing_finishes_the_shrink(
        prefix: Path, tmp_path: Path, signum: int,
        shrunk_reference: dict[str, tuple[int, int, str]]) -> None:
    run = Paused(tmp_path, "commit", str(prefix))
    run.wait_for("commit")
    run.proc.send_signal(signum)
    result = run.finish()

    assert_one_line(result, 128 + signum, f"{signal.Signals(signum).name} received",
                    "so it was finished: the prefix is shrunk")
    assert without_records(tree(prefix, relocated=prefix)) == shrunk_reference
    assert prefix_python(prefix, IMPORTS_OK).returncode == 0


@pytest.mark.parametrize(("point", "signum"), [
    ("committed", signal.SIGINT),  # txn.commit returned: conda-meta is measured next
    ("report", signal.SIGINT),     # the report is being made (--compressed rescans here)
    ("returned", signal.SIGTERM),  # the library returned, the command line has not printed
], ids=lambda v: signal.Signals(v).name if isinstance(v, signal.Signals) else None)
def test_signal_after_the_commit_says_the_prefix_is_shrunk(
        prefix: Path, tmp_path: Path, point: str, signum: int,
        shrunk_reference: dict[str, tuple[int, int, str]]) -> None:
    run = Paused(tmp_path, point, str(prefix))
    run.wait_for(point)
    assert not (prefix / STATE_DIR).exists()  # committed and cleaned up already
    run.proc.send_signal(signum)
    result = run.finish()

    assert_one_line(result, 128 + signum, f"{signal.Signals(signum).name} received: {SHRUNK}")
    assert result.stdout == ""  # no report: the signal stopped it
    assert without_records(tree(prefix, relocated=prefix)) == shrunk_reference
    assert prefix_python(prefix, IMPORTS_OK).returncode == 0


def test_signal_while_reporting_a_rollback_says_it_was_rolled_back(
        prefix: Path, tmp_path: Path) -> None:
    before = tree(prefix)
    run = Paused(tmp_path, "report", "--verify-command", "false", str(prefix))
    run.wait_for("report")
    run.proc.send_signal(signal.SIGTERM)
    result = run.finish()

    assert_one_line(result, 143, f"SIGTERM received: {ROLLED_BACK}")
    assert_untouched(prefix, before)


def _leave_a_killed_shrink(prefix: Path, workdir: Path, point: str) -> None:
    """A shrink SIGKILLed at ``point``: its journal and staging stay for the next run."""
    workdir.mkdir()
    run = Paused(workdir, point, str(prefix))
    run.wait_for(point)
    run.proc.kill()
    run.finish()
    assert (prefix / STATE_DIR).exists()


def test_an_interrupted_audit_says_it_rolled_back_a_leftover(prefix: Path,
                                                              tmp_path: Path) -> None:
    before = tree(prefix)
    _leave_a_killed_shrink(prefix, tmp_path / "killed", "staging")
    run = Paused(tmp_path, "recovered", str(prefix), audit=True)
    run.wait_for("recovered")
    run.proc.send_signal(signal.SIGINT)
    result = run.finish()

    assert_one_line(result, 130, "SIGINT received: first, a shrink an earlier run left "
                    "unfinished was rolled back, so the prefix is as it was before that "
                    "shrink; nothing else was changed")
    assert_untouched(prefix, before)


def test_an_interrupted_audit_says_it_finished_a_leftover(
        prefix: Path, tmp_path: Path,
        shrunk_reference: dict[str, tuple[int, int, str]]) -> None:
    _leave_a_killed_shrink(prefix, tmp_path / "killed", "commit")
    run = Paused(tmp_path, "recovered", str(prefix), audit=True)
    run.wait_for("recovered")
    run.proc.send_signal(signal.SIGTERM)
    result = run.finish()

    assert_one_line(result, 143, "SIGTERM received: first, a shrink an earlier run left "
                    "while committing was finished, so the prefix is shrunk; nothing else "
                    "was changed")
    assert without_records(tree(prefix, relocated=prefix)) == shrunk_reference
    assert not (prefix / STATE_DIR).exists()


def test_a_second_signal_does_not_interrupt_the_rollback(prefix: Path, tmp_path: Path) -> None:
    before = tree(prefix)
    run = Paused(tmp_path, "staging,rollback", str(prefix))
    run.wait_for("staging")
    run.proc.send_signal(signal.SIGINT)
    run.wait_for("rollback")  # the rollback has begun and put nothing back yet
    run.proc.send_signal(signal.SIGTERM)
    result = run.finish()

    assert_one_line(result, 130, f"SIGINT received: {ROLLED_BACK}")
    assert_untouched(prefix, before)


def _announcing(marker: Path) -> str:
    """A shell command that starts a long ``sleep``, writes its pid to ``marker`` and
    waits for it."""
    return (f"sleep 300 & echo $! > {marker}.tmp && mv {marker}.tmp {marker}; wait; "
            "python -c 'import demopkg'")


def test_signal_while_verifying_stops_the_commands_too(prefix: Path, tmp_path: Path) -> None:
    before = tree(prefix)
    marker = tmp_path / "command-pid"
    run = Paused(tmp_path, "", "--verify-command", _announcing(marker), str(prefix))
    wait_for_file(marker, 120, run.proc)
    sleeper = int(marker.read_text())
    run.proc.send_signal(signal.SIGTERM)
    result = run.finish()

    assert_one_line(result, 143, f"SIGTERM received: {ROLLED_BACK}")
    assert gone(sleeper)
    assert_untouched(prefix, before)


def test_signal_while_tracing_stops_the_traced_command_and_its_group(
        prefix: Path, tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        pytest.skip("--used-by needs strace")
    before = tree(prefix)
    marker = tmp_path / "traced-pid"
    run = Paused(tmp_path, "", "--used-by", _announcing(marker), str(prefix))
    wait_for_file(marker, 120, run.proc)
    sleeper = int(marker.read_text())
    run.proc.send_signal(signal.SIGINT)
    result = run.finish()

    assert_one_line(result, 130, "SIGINT received: nothing was changed")
    assert gone(sleeper)
    assert_untouched(prefix, before)


def test_a_signal_waits_for_the_shielded_section_and_only_the_first_counts() -> None:
    steps = []
    with pytest.raises(Interrupted) as raised, interrupt.handled():
        with interrupt.shielded():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("after the first")
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("after the second")
        steps.append("never")
    assert steps == ["after the first", "after the second"]
    assert raised.value.signum == signal.SIGTERM
    assert interrupt.requested() is None  # handlers and state restored
