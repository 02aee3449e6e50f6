"""The soname-copies phase on a real prefix: a pip-installed library's names, installed
as identical copies (a wheel holds no symlinks), become symlinks to one; what a conda
record lists, differing copies and other files stay as they are."""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from condatools import conda_pack, run_in, unpack
from treeutil import prefix_python

from fixtures.install import copy_tree
from shrinkconda import Options, audit, shrink
from shrinkconda.phases import soname_copies

LIB = "sonamedemo/lib"
#: The names pip installs triton's CUPTI under: one library, three copies.
COPIES = ("libfoo.so", "libfoo.so.1", "libfoo.so.1.2.3")
DIFFERENT = ("libbar.so", "libbar.so.1")  # same name family, other bytes: they stay
CONDA_OWNED = ("lib/libowned.so", "lib/libowned.so.1")
CALL = ("import ctypes, sys; lib = ctypes.CDLL(sys.argv[1]); "
        "print(lib.answer())")


def _build(tmp: Path, name: str, value: int) -> Path:
    c_file = tmp / f"{name}.c"
    c_file.write_text(f"int answer(void) {{ return {value}; }}\n")
    out = tmp / f"{name}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(c_file)], check=True)
    return out


def _record_line(site: Path, rel: str) -> str:
    data = (site / rel).read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{rel},sha256={digest},{len(data)}\n"


@pytest.fixture(scope="module")
def template(template_prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture prefix plus a pip-installed package with copies of one library, and a
    conda record listing two copies of another."""
    root = copy_tree(template_prefix, tmp_path_factory.mktemp("sonames") / "prefix")
    site = Path(glob.glob(str(root / "lib/python3.*/site-packages"))[0])
    build = tmp_path_factory.mktemp("build")
    foo, bar1, bar2 = _build(build, "foo", 42), _build(build, "bar1", 1), _build(build, "bar2", 2)
    (site / LIB).mkdir(parents=True)
    for name in COPIES:
        shutil.copy(foo, site / LIB / name)
    shutil.copy(bar1, site / LIB / DIFFERENT[0])
    shutil.copy(bar2, site / LIB / DIFFERENT[1])
    (site / "sonamedemo" / "__init__.py").write_text("")
    dist_info = site / "sonamedemo-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: sonamedemo\n"
                                        "Version: 1.0\n")
    (dist_info / "INSTALLER").write_text("pip\n")
    rels = ["sonamedemo/__init__.py", *(f"{LIB}/{n}" for n in (*COPIES, *DIFFERENT)),
            "sonamedemo-1.0.dist-info/METADATA", "sonamedemo-1.0.dist-info/INSTALLER"]
    (dist_info / "RECORD").write_text("".join(_record_line(site, r) for r in rels)
                                      + "sonamedemo-1.0.dist-info/RECORD,,\n")
    for rel in CONDA_OWNED:
        shutil.copy(foo, root / rel)
    (root / "conda-meta" / "owneddemo-1.0-0.json").write_text(json.dumps({
        "name": "owneddemo", "version": "1.0", "build": "0", "build_number": 0,
        "files": list(CONDA_OWNED),
        "paths_data": {"paths_version": 1, "paths": [
            {"_path": rel, "path_type": "hardlink", "size_in_bytes": foo.stat().st_size}
            for rel in CONDA_OWNED]}}))
    return root


def test_the_audit_predicts_the_symlinks(template: Path) -> None:
    report = audit(template)
    line = next(x for x in report.lines if x.name == soname_copies.NAME)
    size = (Path(glob.glob(str(template / "lib/python3.*/site-packages"))[0]) / LIB
            / COPIES[0]).stat().st_size
    # Two copies go, two symlinks of len("libfoo.so.1.2.3") come.
    assert line.saving.files == 2
    assert line.saving.bytes == 2 * size - 2 * len(COPIES[2])
    assert any(n.startswith("2 copies of 1 library") and n.endswith(": libfoo.so.1.2.3")
               for n in report.notes), report.notes
    skipped = audit(template, Options(skip=(soname_copies.NAME,)))
    assert all(x.name != soname_copies.NAME for x in skipped.lines)


def test_the_shrink_links_the_copies_and_every_name_still_loads(template: Path,
                                                                tmp_path: Path) -> None:
    prefix = copy_tree(template, tmp_path / "prefix")
    site = Path(glob.glob(str(prefix / "lib/python3.*/site-packages"))[0])
    record = (site / "sonamedemo-1.0.dist-info" / "RECORD").read_text()
    predicted = audit(prefix)
    report = shrink(prefix)
    assert not report.rolled_back, report.broken
    assert report.size_after == predicted.size_after
    for name in COPIES[:2]:
        assert os.readlink(site / LIB / name) == COPIES[2]
    assert not any((site / LIB / n).is_symlink() for n in (COPIES[2], *DIFFERENT))
    for name in (*COPIES, *DIFFERENT):
        value = subprocess.run([str(prefix / "bin" / "python"), "-c", CALL,
                                str(site / LIB / name)], capture_output=True, text=True,
                               check=True).stdout
        assert value == {DIFFERENT[0]: "1\n", DIFFERENT[1]: "2\n"}.get(name, "42\n"), name
    for rel in CONDA_OWNED:  # a record's files are its own
        assert not (prefix / rel).is_symlink()
    # The bytes of every path are the same: RECORD stays as it was, and still true.
    assert (site / "sonamedemo-1.0.dist-info" / "RECORD").read_text() == record
    check = ("import importlib.metadata as m, hashlib, base64\n"
             "bad = [str(f) for f in m.files('sonamedemo') if f.hash and "
             "base64.urlsafe_b64encode(hashlib.sha256(f.read_binary()).digest())"
             ".rstrip(b'=').decode() != f.hash.value]\n"
             "print(bad)")
    assert prefix_python(prefix, check).stdout == "[]\n"
    history = (prefix / "conda-meta" / "shrinkconda-history.jsonl").read_text()
    assert '"symlinked"' in history and "libfoo.so.1.2.3" in history


def test_conda_pack_packs_the_symlinks(template: Path, tmp_path: Path) -> None:
    prefix = copy_tree(template, tmp_path / "prefix")
    for rel in (*CONDA_OWNED, "conda-meta/owneddemo-1.0-0.json"):  # a record of no cache
        (prefix / rel).unlink()
    assert not shrink(prefix).rolled_back
    # conda-pack packs the symlinks as symlinks, and the unpacked env loads every name.
    packed = conda_pack(prefix, tmp_path / "env.tar.gz")
    assert packed.returncode == 0, packed.stderr
    dest = unpack(tmp_path / "env.tar.gz", tmp_path / "unpacked")
    lib = Path(glob.glob(str(dest / "lib/python3.*/site-packages"))[0]) / LIB
    assert os.readlink(lib / COPIES[0]) == COPIES[2]
    assert run_in(dest, "python", "-c", CALL, str(lib / COPIES[1])).stdout == "42\n"


def test_a_rollback_puts_the_copies_back(template: Path, tmp_path: Path) -> None:
    prefix = copy_tree(template, tmp_path / "prefix")
    site = Path(glob.glob(str(prefix / "lib/python3.*/site-packages"))[0])
    report = shrink(prefix, Options(verify_commands=("false",)))
    assert report.rolled_back
    for name in COPIES:
        assert (site / LIB / name).is_file() and not (site / LIB / name).is_symlink()
    assert not list(site.glob(f"{LIB}/.*"))  # no temporary symlink left behind
