"""The scanner: one walk, exact facts per entry, never out of the prefix."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import pytest
from treeutil import snapshot

from shrinkconda.errors import PrefixError
from shrinkconda.scan import DIR, scan

SITE = "lib/python3.11/site-packages"


def test_every_entry_once_with_its_lstat_facts(prefix: Path) -> None:
    result = scan(prefix)
    tree = snapshot(prefix)
    assert sorted(result.paths[1:]) == sorted(tree)
    for entry in result:
        st = os.lstat(prefix / entry.path)
        assert (entry.size, entry.ino, entry.nlink, entry.mode) == (
            st.st_size, st.st_ino, st.st_nlink, st.st_mode)
        assert entry.allocated == st.st_blocks * 512


def test_subtrees_are_contiguous_index_ranges(prefix: Path) -> None:
    result = scan(prefix)
    for entry in result:
        if entry.position:
            parent = result.parents[entry.position]
            assert result.kinds[parent] == DIR
            assert parent < entry.position < result.ends[parent]
            assert entry.path.startswith(result.paths[parent])


def test_owner_comes_from_conda_meta(prefix: Path) -> None:
    result = scan(prefix)
    owner = result[result.find("lib/libdemo.so.1.0.0")].owner
    assert owner is not None and owner.startswith("libdemo-")
    assert result[result.find(f"{SITE}/demopkg/__init__.py")].owner.startswith("demopkg-")
    assert result[result.find("conda-meta")].owner is None


@pytest.mark.parametrize(
    ("path", "elf", "ar"),
    [
        ("lib/libdemo.so.1.0.0", True, False),
        (f"{SITE}/demopkg/_ext.cpython-311-x86_64-linux-gnu.so", True, False),
        ("bin/demo-tool", True, False),
        ("lib/libtext.so", False, False),  # a linker script: text named .so
        ("lib/libdemo.a", False, True),
        ("lib/libnotar.a", False, False),  # named .a, not an archive
    ],
)
def test_magic_bytes_not_names(prefix: Path, path: str, elf: bool, ar: bool) -> None:
    result = scan(prefix)
    entry = result[result.find(path)]
    assert (entry.is_elf, entry.is_ar) == (elf, ar)


def test_symlinks_are_never_followed(prefix: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "zz-outside-only.txt").write_text("not ours")
    (prefix / "lib" / "escape").symlink_to(outside)
    (prefix / "lib" / "root").symlink_to("/")
    (prefix / "lib" / "loop").symlink_to("loop")
    result = scan(prefix)
    for name in ("escape", "root", "loop"):
        entry = result[result.find(f"lib/{name}")]
        assert entry.kind == "symlink" and entry.end == entry.position + 1
    assert not any("zz-outside-only" in p for p in result.paths)


def test_symlink_to_prefix_is_resolved_once(prefix: Path, tmp_path: Path) -> None:
    link = tmp_path / "link-to-prefix"
    link.symlink_to(prefix)
    assert scan(link).prefix == prefix.resolve()


@pytest.mark.parametrize("make", ["missing", "file", "root", "home", "no-conda-meta"])
def test_bad_prefixes_raise_one_clear_error(tmp_path: Path, make: str) -> None:
    target = {
        "missing": lambda: tmp_path / "nope",
        "file": lambda: _touch(tmp_path / "a-file"),
        "root": lambda: Path("/"),
        "home": lambda: Path.home(),
        "no-conda-meta": lambda: tmp_path,
    }[make]()
    with pytest.raises(PrefixError) as info:
        scan(target)
    assert "\n" not in str(info.value) and str(target) in str(info.value)


def test_invalid_record_is_reported_and_its_files_unowned(prefix: Path) -> None:
    record = next((prefix / "conda-meta").glob("libdemo-*.json"))
    record.write_text("{not json")
    result = scan(prefix)
    assert result[result.find("lib/libdemo.so.1.0.0")].owner is None
    assert [p.path for p in result.problems] == [f"conda-meta/{record.name}"]


def test_unreadable_directory_is_reported_and_skipped() -> None:
    # Root reads everything, so the scan runs in a child that gave up root.
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    top = Path(tempfile.mkdtemp(prefix="shrinkconda-perm-"))
    try:
        top.chmod(0o755)
        (top / "conda-meta").mkdir()
        (top / "conda-meta" / "x-1-0.json").write_text(json.dumps({"files": []}))
        locked = top / "lib" / "locked"
        locked.mkdir(parents=True)
        (locked / "hidden.txt").write_text("x")
        locked.chmod(0)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: drop privileges, scan, send the problems back
            os.close(read)
            os.setegid(65534)
            os.seteuid(65534)
            result = scan(top)
            os.write(write, json.dumps([[p.path, p.message] for p in result.problems]
                                       + [result.paths]).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            *problems, paths = json.loads(pipe.read())
        os.waitpid(pid, 0)
    finally:
        locked.chmod(stat.S_IRWXU)
        import shutil

        shutil.rmtree(top)
    assert problems == [["lib/locked", "cannot read directory: Permission denied"]]
    assert "lib/locked" in paths and "lib/locked/hidden.txt" not in paths


def _touch(path: Path) -> Path:
    path.write_text("")
    return path
