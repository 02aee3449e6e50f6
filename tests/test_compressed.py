"""--compressed: the sizes agree with real tar | gzip -6, tar | zstd -3 and zip -6 -r."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from treeutil import run_cli

from shrinkconda.render import compressed
from shrinkconda.scan import scan

TOLERANCE = 0.02
needs_tools = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("tar", "gzip", "zstd", "zip")),
    reason="needs tar, gzip, zstd and zip (apt-get install zstd zip)")


def real_sizes(prefix: Path, tmp_path: Path) -> compressed.Sizes:
    """What the command-line tools say about the prefix as it is now."""
    def piped(compressor: str) -> int:
        tar = subprocess.Popen(["tar", "-C", str(prefix), "--sort=name", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        out = subprocess.run(compressor.split(), stdin=tar.stdout, capture_output=True,
                             check=True).stdout
        assert tar.wait() == 0
        return len(out)

    archive = tmp_path / "layer.zip"
    archive.unlink(missing_ok=True)
    subprocess.run(["zip", "-q", "-6", "-r", str(archive), "."], cwd=prefix, check=True)
    return compressed.Sizes(piped("gzip -6 -c"), piped("zstd -3 -q -c"), archive.stat().st_size)


def close(ours: int | None, theirs: int) -> bool:
    return ours is not None and abs(ours - theirs) <= TOLERANCE * theirs


@needs_tools
def test_audit_and_shrink_agree_with_the_tools(prefix: Path, tmp_path: Path) -> None:
    before = real_sizes(prefix, tmp_path)
    audit = run_cli("audit", "--json", "--compressed", str(prefix), timeout=600)
    assert audit.returncode == 0, audit.stderr
    predicted = json.loads(audit.stdout)["compressed"]
    for key, real in (("before", before.gzip), ("zstd_before", before.zstd),
                      ("zip_before", before.zip)):
        assert close(predicted[key], real), (key, predicted[key], real)

    shrink = run_cli("shrink", "--json", "--no-verify", "--compressed", str(prefix),
                     timeout=600)
    assert shrink.returncode == 0, shrink.stderr
    done = json.loads(shrink.stdout)["compressed"]
    after = real_sizes(prefix, tmp_path)
    for key, real in (("after", after.gzip), ("zstd_after", after.zstd),
                      ("zip_after", after.zip)):
        assert close(done[key], real), (key, done[key], real)
        assert close(predicted[key], real), ("predicted " + key, predicted[key], real)
    assert done["before"] == predicted["before"]
    assert after.gzip < before.gzip / 2  # the cache and the debug sections compress well


def _small_prefix(root: Path) -> Path:
    """Hard links, symlinks (to a file, to a directory, dangling), an empty directory,
    a name over 100 bytes and one that is not UTF-8."""
    (root / "conda-meta").mkdir(parents=True)
    (root / "conda-meta" / "history").write_text("")
    lib = root / "lib"
    lib.mkdir()
    text = b"".join(b"line %d of a text file that compresses\n" % n for n in range(4000))
    (lib / "text.txt").write_bytes(text)
    (lib / "random.bin").write_bytes(os.urandom(60_000))
    os.link(lib / "random.bin", root / "hardlink.bin")
    (lib / "link.txt").symlink_to("text.txt")
    (root / "dirlink").symlink_to("lib")
    (root / "dangling").symlink_to("nowhere")
    (root / "empty").mkdir()
    deep = root / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / "file.py").write_bytes(text[:5000])
    (root / os.fsdecode(b"caf\xe9.txt")).write_bytes(text[:3000])
    return root


@needs_tools
def test_odd_entries_agree_with_the_tools(tmp_path: Path) -> None:
    prefix = _small_prefix(tmp_path / "p")
    ours = compressed.measure(scan(prefix))
    real = real_sizes(prefix, tmp_path)
    assert close(ours.gzip, real.gzip), (ours, real)
    assert close(ours.zstd, real.zstd), (ours, real)
    assert close(ours.zip, real.zip), (ours, real)


def test_without_zstandard_the_zstd_sizes_are_null_and_a_note_says_why(tmp_path: Path) -> None:
    prefix = _small_prefix(tmp_path / "p")
    code = ("import sys; sys.modules['zstandard'] = None; "  # what an env without it sees
            "from shrinkconda.cli import main; main()")
    result = subprocess.run(
        [sys.executable, "-c", code, "audit", "--json", "--compressed", str(prefix)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["compressed"]["zstd_before"] is None and doc["compressed"]["zstd_after"] is None
    assert doc["compressed"]["before"] > 0
    assert any("zstandard" in note for note in doc["notes"])
