"""Never outside the prefix: hostile symlinks, odd names, read-only and foreign files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from treeutil import du_bytes, prefix_python, run_cli

from shrinkconda.phases import elf

SITE = "lib/python3.11/site-packages"


def fingerprint(root: Path) -> dict[str, tuple[int, int, int, bytes]]:
    """Every path below ``root``: mode, size, mtime and content (or link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if os.path.islink(path):
                body = os.readlink(path).encode()
            elif os.path.isfile(path):
                body = Path(path).read_bytes()
            else:
                body = b""
            out[path] = (st.st_mode, st.st_size, st.st_mtime_ns, body)
    return out


@pytest.fixture
def outside(tmp_path: Path, prefix: Path) -> Path:
    """A directory beside the prefix, with an ELF file full of debug info."""
    root = tmp_path / "outside"
    (root / "tree").mkdir(parents=True)
    (root / "tree" / "victim.txt").write_text("must survive\n")
    shutil.copy2(prefix / "lib/libdemo.so.1.0.0", root / "libexternal.so.1")
    return root


def test_hostile_prefix_changes_nothing_outside(prefix: Path, outside: Path) -> None:
    tests_dir = prefix / SITE / "demopkg/tests"
    (tests_dir / "escape").symlink_to(outside / "tree")  # inside a removed directory
    (prefix / "share/doc/root").symlink_to("/")
    (prefix / "share/doc/loop").symlink_to("loop")
    (prefix / "lib/libexternal.so.1").symlink_to(outside / "libexternal.so.1")
    (prefix / "lib/pkgs-escape").symlink_to(outside)
    record = next((prefix / "conda-meta").glob("libdemo-*.json"))
    doc = json.loads(record.read_text())
    for evil in (f"../../{outside.name}/tree/victim.txt", "/etc/hostname"):
        doc["files"].append(evil)
        doc["paths_data"]["paths"].append({"_path": evil, "path_type": "hardlink",
                                           "sha256": "0" * 64, "size_in_bytes": 1})
    record.write_text(json.dumps(doc))
    watched = fingerprint(outside)
    etc = Path("/etc/hostname").read_bytes() if Path("/etc/hostname").exists() else b""

    result = run_cli("shrink", "-y", "--json", str(prefix), timeout=600)

    assert result.returncode == 0, result.stderr
    assert fingerprint(outside) == watched
    assert (Path("/etc/hostname").read_bytes() if Path("/etc/hostname").exists() else b"") == etc
    assert not tests_dir.exists() and not (prefix / "share/doc").exists()
    assert (prefix / "lib/libexternal.so.1").is_symlink()
    assert json.loads(result.stdout)["size_after"] == du_bytes(prefix)
    assert prefix_python(prefix, "import demopkg; assert demopkg.add(2, 3) == 5").returncode == 0


def test_names_that_are_not_utf8(prefix: Path) -> None:
    pycache = os.fsencode(prefix / SITE / "demopkg/__pycache__")
    with open(os.path.join(pycache, b"caf\xe9.cpython-311.pyc"), "wb") as f:
        f.write(b"\0" * 100)
    kept = os.path.join(os.fsencode(prefix / "share/demo"), b"donn\xe9es-\xff.txt")
    with open(kept, "wb") as f:
        f.write(b"data")
    for args in (["audit"], ["audit", "--json"], ["shrink", "-y"]):
        result = run_cli(*args, str(prefix), timeout=600)
        assert result.returncode == 0, result.stderr
    assert not os.path.exists(pycache) and os.path.exists(kept)


def test_read_only_and_foreign_files_are_removed_and_stripped_correctly(prefix: Path) -> None:
    tests_dir = prefix / SITE / "demopkg/tests"
    (tests_dir / "test_demo.py").chmod(0o444)
    tests_dir.chmod(0o555)
    (prefix / "share/man/man1").chmod(0o555)
    foreign = prefix / "share/doc/libdemo/README.md"
    os.chown(foreign, 65534, 65534)
    library = prefix / "lib/libdemo.so.1.0.0"
    library.chmod(0o555)
    os.chown(library, 65534, 65534)

    result = run_cli("shrink", "-y", "--json", str(prefix), timeout=600)

    assert result.returncode == 0, result.stderr
    assert not tests_dir.exists() and not foreign.exists() and not (prefix / "share/man").exists()
    st = library.stat()
    assert not any(s.name == ".debug_info" for s in elf.read(library).sections)
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o555, 65534, 65534)
    assert prefix_python(prefix, "import demopkg; assert demopkg.add(2, 3) == 5").returncode == 0


def test_what_cannot_be_moved_is_reported_and_counted_honestly(prefix: Path) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("chattr (e2fsprogs) is not installed")
    stuck = prefix / "share/man"
    if subprocess.run(["chattr", "+i", str(stuck)], check=False,
                      capture_output=True).returncode:
        pytest.skip("this filesystem has no immutable attribute")
    try:
        result = run_cli("shrink", "-y", "--json", str(prefix), timeout=600)
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [e["path"] for e in doc["errors"]] == ["share/man"]
    assert "could not be moved" in doc["errors"][0]["message"]
    assert stuck.exists() and not (prefix / "share/doc").exists()
    assert doc["size_after"] == du_bytes(prefix)
