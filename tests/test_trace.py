"""The trace: what strace saw, resolved to prefix entries, and refusals when it may
have missed something."""

from __future__ import annotations

import os
import py_compile
import shutil
import subprocess
from pathlib import Path

import pytest

from shrinkconda.appaware import trace
from shrinkconda.errors import TraceIncomplete, WorkloadError

pytestmark = pytest.mark.skipif(shutil.which("strace") is None,
                                reason="strace is not installed (apt-get install strace)")

URING_C = b"""\
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    unsigned char params[120];
    memset(params, 0, sizeof params);
    return syscall(425 /* io_uring_setup */, 4, params) < 0;
}
"""


@pytest.fixture
def fake_prefix(tmp_path: Path) -> Path:
    """A directory with a soname chain, a symlinked directory and a data file."""
    root = tmp_path / "env"
    (root / "lib" / "real").mkdir(parents=True)
    (root / "lib" / "libfoo.so.3.1.0").write_bytes(b"\x7fELF fake")
    (root / "lib" / "libfoo.so.3").symlink_to("libfoo.so.3.1.0")
    (root / "lib" / "libfoo.so").symlink_to("libfoo.so.3")
    (root / "lib" / "real" / "data.txt").write_text("x\n")
    (root / "lib" / "alias").symlink_to("real")
    (root / "unused.txt").write_text("y\n")
    return root


def test_symlink_chains_and_directories_on_the_way(fake_prefix: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(fake_prefix)  # the second path is relative to the caller's directory
    usage = trace.trace(fake_prefix, [f"cat {fake_prefix}/lib/libfoo.so >/dev/null",
                                      "cat lib/alias/data.txt >/dev/null"])
    assert {"lib/libfoo.so", "lib/libfoo.so.3", "lib/libfoo.so.3.1.0", "lib/alias",
            "lib/real", "lib/real/data.txt"} <= usage.paths
    assert "unused.txt" not in usage.paths


def test_failed_probes_keep_nothing(fake_prefix: Path) -> None:
    command = (f"cat {fake_prefix}/lib/nothing-here 2>/dev/null; "
               f"test -e {fake_prefix}/unused.txt/x; true")
    usage = trace.trace(fake_prefix, [command])
    assert "lib/nothing-here" not in usage.paths
    assert "unused.txt" not in usage.paths


def test_truncated_trace_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "log"
    subprocess.run(["strace", *trace.FLAGS, "-o", str(log), "sh", "-c", "true"],
                   check=True, capture_output=True)
    lines = log.read_text().splitlines(keepends=True)
    assert lines[-1].split(None, 1)[1].startswith("+++ exited")
    resolver = trace._Resolver(tmp_path)
    trace._parse(lines, "sh -c true", resolver)  # whole: fine
    with pytest.raises(TraceIncomplete, match="lost track of process"):
        trace._parse(lines[:-1], "sh -c true", resolver)


def test_io_uring_is_refused(tmp_path: Path) -> None:
    (tmp_path / "uring.c").write_bytes(URING_C)
    subprocess.run(["gcc", "-o", str(tmp_path / "uring"), str(tmp_path / "uring.c")],
                   check=True)
    if subprocess.run([str(tmp_path / "uring")], check=False).returncode:
        pytest.skip("io_uring is disabled on this kernel")
    with pytest.raises(TraceIncomplete, match="io_uring"):
        trace.trace(tmp_path, [str(tmp_path / "uring")])


def test_output_and_failure_tail(tmp_path: Path) -> None:
    seen: list[bytes] = []
    with pytest.raises(WorkloadError, match="exited with status 3") as failed:
        trace.trace(tmp_path, ["echo to-stdout; echo to-stderr >&2; exit 3"],
                    output=seen.append)
    assert b"to-stdout\n" in seen and b"to-stderr\n" in seen
    assert "to-stderr" in str(failed.value)



def test_a_source_counts_as_read_only_when_import_did_not_need_it(tmp_path: Path) -> None:
    root = tmp_path / "site.v1"  # a dot in a directory must not join unrelated modules
    (root / "pkg").mkdir(parents=True)
    paths = {}
    for name in ("fresh", "stale", "unchecked", "nopyc", "twice"):
        source = root / "pkg" / f"{name}.py"
        source.write_text(f"X = {name!r}\n")
        paths[name] = str(source)
        if name == "nopyc" or name == "twice":
            continue
        mode = py_compile.PycInvalidationMode.UNCHECKED_HASH if name == "unchecked" \
            else py_compile.PycInvalidationMode.TIMESTAMP
        paths[name + "c"] = py_compile.compile(str(source), invalidation_mode=mode)
    os.utime(paths["stale"], (1, 1))  # its timestamp pyc no longer matches
    opened = {("7", paths[n]): 1 for n in ("fresh", "stale", "unchecked", "nopyc")}
    opened.update({("7", paths[n + "c"]): 1 for n in ("fresh", "stale", "unchecked")})
    opened[("7", paths["twice"])] = 2
    opened[("8", paths["fresh"].replace("fresh", "other"))] = 1  # another process
    read = {os.path.basename(p)[:-3] for p in trace._read_as_text(opened)}
    assert read == {"fresh", "unchecked", "twice"}
