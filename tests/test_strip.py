"""The strip phase: candidates, modes, hard-link safety, validation, audit against shrink."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_elf import LIB_C, PATCHELF, TOLERANCE, gcc, patchelf_twice
from treeutil import prefix_python

from fixtures.content import EXT_SUFFIX, SITE
from shrinkconda import pipeline
from shrinkconda.cli import main
from shrinkconda.errors import ShrinkError
from shrinkconda.phases import elf, strip
from shrinkconda.pipeline import Options
from shrinkconda.render.report import Report
from shrinkconda.scan import Problem, Scan, scan

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or shutil.which("strip") is None,
    reason="needs gcc and GNU strip (binutils)")

REAL_STRIP = shutil.which("strip") or "strip"
EXT = f"{SITE}/demopkg/_ext{EXT_SUFFIX}"
TOOL_C = """\
#include <stdio.h>
int demo_add(int, int);
int main(void) { printf("%d\\n", demo_add(2, 3)); return 0; }
"""


@pytest.fixture
def small_prefix(tmp_path: Path) -> Path:
    """A hand-made prefix: gcc -g objects plus the things the phase must leave alone."""
    root = tmp_path / "env"
    for sub in ("conda-meta", "lib", "bin", "src"):
        (root / sub).mkdir(parents=True)
    src = root / "src"
    (src / "lib.c").write_text(LIB_C)
    (src / "tool.c").write_text(TOOL_C)
    gcc(src, "../lib/libdemo.so.1.0.0", "-fPIC", "-shared", "-Wl,-soname,libdemo.so.1",
        "lib.c")
    gcc(src, "../bin/tool", "tool.c", "../lib/libdemo.so.1.0.0", "-Wl,-rpath,$ORIGIN/../lib")
    gcc(src, "../lib/already.so", "-fPIC", "-shared", "-s", "lib.c")  # stripped at link time
    gcc(src, "../lib/object.so", "-c", "lib.c")  # an ET_REL named like a shared object
    gcc(src, "../bin/object.o", "-c", "lib.c")
    (root / "bin/object.o").chmod(0o755)  # executable, so the scan checks its magic
    (root / "lib/libdemo.so.1").symlink_to("libdemo.so.1.0.0")  # what the loader looks for
    (root / "lib/libtext.so").write_text("/* GNU ld script */\nINPUT(libdemo.so.1)\n")
    shutil.rmtree(src)
    return root


@pytest.fixture
def counting_strip(tmp_path: Path) -> tuple[Path, Path]:
    """A ``strip`` that logs each run, then runs GNU strip: (program, log)."""
    bindir = tmp_path / "counting-bin"
    bindir.mkdir()
    program, log = bindir / "strip", tmp_path / "strip.log"
    program.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {REAL_STRIP} "$@"\n')
    program.chmod(0o755)
    log.touch()
    return program, log


def corrupting_strip(tmp_path: Path) -> Path:
    """A ``strip`` whose output has its first file-backed load segment moved by 8 bytes."""
    program = tmp_path / "corrupting-strip"
    program.write_text(f"""#!{sys.executable}
import struct, subprocess, sys
subprocess.run([{REAL_STRIP!r}, *sys.argv[1:]], check=True)
out = sys.argv[sys.argv.index("-o") + 1]
data = bytearray(open(out, "rb").read())
phoff, = struct.unpack_from("<Q", data, 0x20)
phnum, = struct.unpack_from("<H", data, 0x38)
for n in range(phnum):
    at = phoff + n * 56
    kind, = struct.unpack_from("<I", data, at)
    offset, = struct.unpack_from("<Q", data, at + 8)
    if kind == 1 and offset:
        struct.pack_into("<Q", data, at + 8, offset + 8)
        break
open(out, "wb").write(data)
""")
    program.chmod(0o755)
    return program


def strip_all(root: Path, mode: str = "debug", tool: str = "strip", jobs: int | None = None
              ) -> tuple[list[strip.Replacement], list[Problem]]:
    """Run both steps of the phase over every candidate; returns (installed, problems)."""
    found = scan(root)
    chosen = strip.candidates(found, bytearray(len(found)))
    made, problems = strip.make_stripped(found, chosen.indices, mode, jobs, tool=tool)
    installed, failures = strip.install(found, made)
    return installed, [*problems, *failures]


def sections(path: Path) -> set[str]:
    return {s.name for s in elf.read(path).sections}


def has_debug(path: Path) -> bool:
    return any(name.startswith(".debug_") for name in sections(path))


def sha256_tree(root: Path) -> dict[str, str]:
    """Every entry below ``root`` -> sha256 of its bytes (a symlink: of its target)."""
    digests = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
            digests[str(path.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return digests


def strip_line(report: Report) -> dict[str, int]:
    line = next(ln for ln in report.lines if ln.name == "strip")
    return {"files": line.saving.files, "bytes": line.saving.bytes}


def at(found: Scan, relpath: str) -> int:
    index = found.find(relpath)
    assert index is not None, relpath
    return index


def leftovers(root: Path) -> list[Path]:
    return list(root.rglob(f"*{strip.TEMP_SUFFIX}"))


# --- choosing files --------------------------------------------------------------------

def test_candidates_are_the_elf_files_that_stay(small_prefix: Path) -> None:
    found = scan(small_prefix)
    removed = bytearray(len(found))
    removed[at(found, "lib/already.so")] = 1
    chosen = strip.candidates(found, removed).indices
    assert {found.paths[i] for i in chosen} == {
        "lib/libdemo.so.1.0.0", "bin/tool", "lib/object.so", "bin/object.o"}
    # Relocatable objects are ELF too, but strip is never run on them.
    assert strip.strippable(found, chosen, "all") == sorted(
        at(found, p) for p in ("lib/libdemo.so.1.0.0", "bin/tool"))


def test_a_file_linked_elsewhere_in_the_prefix_is_left_alone(small_prefix: Path) -> None:
    cache = small_prefix / "pkgs/libdemo-1.0/lib"
    cache.mkdir(parents=True)
    os.link(small_prefix / "lib/libdemo.so.1.0.0", cache / "libdemo.so.1.0.0")
    found = scan(small_prefix)
    env_copy = at(found, "lib/libdemo.so.1.0.0")
    cached = at(found, "pkgs/libdemo-1.0/lib/libdemo.so.1.0.0")
    kept = strip.candidates(found, bytearray(len(found)))
    assert {env_copy, cached} <= set(kept.linked_inside)
    assert env_copy not in kept.indices
    removed = bytearray(len(found))
    removed[cached] = 1  # the cache goes, so the env's link is the last one inside
    assert env_copy in strip.candidates(found, removed).indices


# --- stripping -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", elf.MODES)
def test_each_mode_strips_and_the_program_still_runs(small_prefix: Path, mode: str) -> None:
    installed, problems = strip_all(small_prefix, mode)
    assert problems == []
    assert len(installed) == 2
    for path in (small_prefix / "lib/libdemo.so.1.0.0", small_prefix / "bin/tool"):
        assert not has_debug(path)
        assert (".symtab" in sections(path)) == (mode == "debug")
        assert ".dynsym" in sections(path)
    run = subprocess.run([str(small_prefix / "bin/tool")], capture_output=True, text=True,
                         check=True)
    assert run.stdout == "5\n"
    assert leftovers(small_prefix) == []


def test_nothing_to_strip_spawns_no_process(small_prefix: Path,
                                            counting_strip: tuple[Path, Path]) -> None:
    program, log = counting_strip
    untouched = ("lib/already.so", "lib/object.so", "bin/object.o", "lib/libtext.so")
    before = {p: os.stat(small_prefix / p) for p in untouched}
    installed, problems = strip_all(small_prefix, "debug", tool=str(program))
    assert problems == [] and len(installed) == 2
    assert len(log.read_text().splitlines()) == 2  # libdemo and tool, nothing else
    for path, st in before.items():
        now = os.stat(small_prefix / path)
        assert (now.st_ino, now.st_mtime_ns, now.st_size) == (st.st_ino, st.st_mtime_ns,
                                                                st.st_size)
    log.write_text("")
    assert strip_all(small_prefix, "debug", tool=str(program)) == ([], [])
    assert log.read_text() == ""  # a second run finds nothing left to strip


def test_a_new_inode_with_the_old_mode_bits(small_prefix: Path) -> None:
    lib = small_prefix / "lib/libdemo.so.1.0.0"
    lib.chmod(0o750)
    outside = small_prefix.parent / "outside-link.so"
    os.link(lib, outside)
    before = lib.stat()
    strip_all(small_prefix, "debug")
    after = lib.stat()
    assert after.st_ino != before.st_ino and after.st_nlink == 1
    assert after.st_mode == before.st_mode
    assert has_debug(outside) and outside.stat().st_size == before.st_size


def test_jobs_do_not_change_the_result(small_prefix: Path, tmp_path: Path) -> None:
    other = Path(shutil.copytree(small_prefix, tmp_path / "other", symlinks=True))

    def stripped(root: Path, jobs: int) -> list[tuple[str, int]]:
        # By path: a copy's scan order is its directory order, which on tmpfs is not
        # the original's.
        found = scan(root)
        chosen = strip.candidates(found, bytearray(len(found)))
        made, _ = strip.make_stripped(found, chosen.indices, "all", jobs)
        installed, _ = strip.install(found, made)
        return sorted((found.paths[r.index], r.size) for r in installed)

    one = stripped(small_prefix, jobs=1)
    assert one and one == stripped(other, jobs=8)


def test_prediction_equals_the_real_strip(small_prefix: Path) -> None:
    found = scan(small_prefix)
    chosen = strip.candidates(found, bytearray(len(found))).indices
    for mode in elf.MODES:
        predicted, problems = strip.predict(found, chosen, mode)
        made, _ = strip.make_stripped(found, chosen, mode)
        strip.discard(made)
        assert problems == [] and [p.index for p in predicted] == [m.index for m in made]
        for guess, real in zip(predicted, made):
            assert abs(guess.size - real.size) <= TOLERANCE
    assert leftovers(small_prefix) == []


def test_a_copy_that_fails_validation_is_not_installed(small_prefix: Path,
                                                       tmp_path: Path) -> None:
    lib = small_prefix / "lib/libdemo.so.1.0.0"
    original = hashlib.sha256(lib.read_bytes()).hexdigest()
    installed, problems = strip_all(small_prefix, "debug", tool=str(corrupting_strip(tmp_path)))
    assert installed == []
    assert {p.path for p in problems} == {"lib/libdemo.so.1.0.0", "bin/tool"}
    assert all("misaligned" in p.message for p in problems)
    assert hashlib.sha256(lib.read_bytes()).hexdigest() == original
    assert leftovers(small_prefix) == []


@pytest.mark.skipif(not PATCHELF.exists(), reason="needs patchelf")
def test_gnu_strip_damaging_a_patchelf_object_is_caught(small_prefix: Path) -> None:
    lib = patchelf_twice(small_prefix / "lib/libdemo.so.1.0.0")
    original = lib.read_bytes()
    found = scan(small_prefix)
    index = at(found, "lib/libdemo.so.1.0.0")
    predicted, warned = strip.predict(found, [index], "debug")
    assert predicted == [] and "probably not strippable" in warned[0].message
    made, problems = strip.make_stripped(found, [index], "debug")
    if made:
        strip.discard(made)
        pytest.skip("this GNU strip handles patchelf's empty load segments")
    assert "misaligned" in problems[0].message and problems[0].path == "lib/libdemo.so.1.0.0"
    assert lib.read_bytes() == original and leftovers(small_prefix) == []


def test_install_reports_a_copy_that_went_missing(small_prefix: Path) -> None:
    found = scan(small_prefix)
    chosen = strip.candidates(found, bytearray(len(found))).indices
    made, _ = strip.make_stripped(found, chosen, "debug")
    os.unlink(made[0].temp)
    installed, problems = strip.install(found, made)
    assert len(installed) == len(made) - 1
    assert problems[0].path == found.paths[made[0].index]
    assert has_debug(small_prefix / found.paths[made[0].index])


def test_a_missing_strip_is_a_clear_error(small_prefix: Path) -> None:
    found = scan(small_prefix)
    with pytest.raises(strip.StripToolMissing, match="install binutils"):
        strip.make_stripped(found, [1], "debug", tool="no-such-strip-anywhere")
    with pytest.raises(ShrinkError, match="unknown strip mode"):
        strip.predict(found, [1], "most")


# --- the pipeline, on real conda prefixes ----------------------------------------------

def test_shared_cache_and_sibling_env_stay_byte_for_byte(
        shared_cache_envs: tuple[Path, Path, Path]) -> None:
    cache, env_a, env_b = shared_cache_envs
    lib_a = env_a / "lib/libdemo.so.1.0.0"
    assert lib_a.stat().st_nlink >= 3 and has_debug(lib_a)  # cache + env_a + env_b
    cache_before, env_b_before = sha256_tree(cache), sha256_tree(env_b)

    report = pipeline.shrink(env_a)

    assert report.errors == () and strip_line(report)["files"] >= 4
    assert not has_debug(lib_a) and not has_debug(env_a / EXT) and lib_a.stat().st_nlink == 1
    assert sha256_tree(cache) == cache_before
    assert sha256_tree(env_b) == env_b_before
    assert has_debug(env_b / "lib/libdemo.so.1.0.0")
    _assert_cache_matches_its_records(cache, env_b)
    assert prefix_python(env_a, "import demopkg; print(demopkg.add(2, 3))").stdout == "5\n"
    assert prefix_python(env_b, "import demopkg; print(demopkg.add(2, 3))").stdout == "5\n"


def _assert_cache_matches_its_records(cache: Path, env: Path) -> None:
    """What conda verifies: each cached file against its package's and the env's sha256."""
    checked = 0
    for package in (p for p in cache.iterdir() if (p / "info/paths.json").is_file()):
        for entry in json.loads((package / "info/paths.json").read_text())["paths"]:
            if entry.get("path_type", "hardlink") == "hardlink" and "sha256" in entry:
                data = (package / entry["_path"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["_path"]
                checked += 1
    for record_path in (env / "conda-meta").glob("*.json"):
        record = json.loads(record_path.read_text())
        if record.get("noarch") == "python":
            continue  # its files move between the package and the env
        source = cache / Path(record["link"]["source"]).name
        for entry in record["paths_data"]["paths"]:
            if entry["path_type"] == "hardlink" and "prefix_placeholder" not in entry:
                data = (source / entry["_path"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["_path"]
                checked += 1
    assert checked > 10


@pytest.mark.parametrize("mode", strip.MODES)
def test_stripped_extension_still_calls_its_stripped_library(prefix: Path, mode: str) -> None:
    report = pipeline.shrink(prefix, Options(strip_mode=mode))
    assert report.errors == ()
    for relpath in (EXT, "lib/libdemo.so.1.0.0", "lib/libpython3.11.so.1.0", "bin/python3.11"):
        assert not has_debug(prefix / relpath), relpath
        assert (".symtab" in sections(prefix / relpath)) == (mode == "debug")
    result = prefix_python(prefix, "import demopkg; print(demopkg.add(2, 3))")
    assert result.stdout == "5\n", result.stderr
    tool = subprocess.run([str(prefix / "bin/demo-tool"), "2", "3"], capture_output=True,
                          text=True, check=False)
    assert tool.returncode == 0 and tool.stdout.strip().endswith("5")
    assert (prefix / "lib/libtext.so").read_text().startswith("/* GNU ld script */")
    assert leftovers(prefix) == []


@pytest.mark.parametrize("mode", strip.MODES)
def test_audit_predicts_the_strip_line(prefix: Path, mode: str) -> None:
    options = Options(strip_mode=mode)
    predicted = strip_line(pipeline.audit(prefix, options))
    done = strip_line(pipeline.shrink(prefix, options))
    assert predicted["files"] == done["files"] > 0
    assert abs(predicted["bytes"] - done["bytes"]) <= TOLERANCE * done["files"]


def test_dh_mode_strips_executables_of_all_symbols_and_libraries_of_unneeded(
        template_prefix: Path) -> None:
    modes = {relpath: elf.dh_mode(elf.read(template_prefix / relpath))
             for relpath in ("bin/demo-tool", "bin/python3.11", EXT, "lib/libdemo.so.1.0.0")}
    assert modes == {"bin/demo-tool": "all", "bin/python3.11": "all", EXT: "unneeded",
                     "lib/libdemo.so.1.0.0": "unneeded"}


def test_no_strip_leaves_elf_files_alone(prefix: Path) -> None:
    lib = prefix / "lib/libdemo.so.1.0.0"
    inode = lib.stat().st_ino
    report = pipeline.shrink(prefix, Options(strip_mode=None))
    assert all(line.name != "strip" for line in report.lines)
    assert lib.stat().st_ino == inode and has_debug(lib)


def test_keep_spares_an_elf_file_from_the_strip(prefix: Path) -> None:
    lib = prefix / "lib/libdemo.so.1.0.0"
    inode = lib.stat().st_ino
    report = pipeline.shrink(prefix, Options(keep=("lib/libdemo.so*",)))
    assert not report.rolled_back, report.broken
    assert lib.stat().st_ino == inode and has_debug(lib)
    assert any(line.name == "strip" and line.saving.files for line in report.lines)


def test_a_kept_cache_is_a_note_not_an_error(prefix: Path) -> None:
    lib = prefix / "lib/libdemo.so.1.0.0"
    inode = lib.stat().st_ino
    report = pipeline.shrink(prefix, Options(skip=("pkgs-cache",)))
    assert report.errors == ()
    assert any("not stripped: another hard link" in note for note in report.notes)
    assert lib.stat().st_ino == inode and has_debug(lib)


def test_missing_strip_is_reported_and_the_rest_still_runs(
        prefix: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    audit = pipeline.audit(prefix)
    assert any("GNU strip" in p.message for p in audit.errors)
    report = pipeline.shrink(prefix)
    assert [p.message for p in report.errors if "GNU strip" in p.message]
    assert strip_line(report) == {"files": 0, "bytes": 0}
    lines = {line.name: line.saving for line in report.lines}
    assert lines["docs"].files > 0 and not (prefix / "share/doc").exists()
    assert has_debug(prefix / "lib/libdemo.so.1.0.0")


def test_validation_failure_in_a_prefix_keeps_the_original(
        prefix: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "strip").symlink_to(corrupting_strip(tmp_path))
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    lib = prefix / "lib/libdemo.so.1.0.0"
    digest = hashlib.sha256(lib.read_bytes()).hexdigest()
    report = pipeline.shrink(prefix)
    failed = {p.path: p.message for p in report.errors}
    assert "lib/libdemo.so.1.0.0" in failed and "misaligned" in failed["lib/libdemo.so.1.0.0"]
    assert strip_line(report)["files"] == 0
    assert hashlib.sha256(lib.read_bytes()).hexdigest() == digest
    assert prefix_python(prefix, "import demopkg; print(demopkg.add(2, 3))").stdout == "5\n"


def test_cli_strip_options(prefix: Path) -> None:
    runner = CliRunner()
    off = json.loads(runner.invoke(main, ["audit", "--json", "--no-strip", str(prefix)]).output)
    assert "strip" not in [s["name"] for s in off["strategies"]]
    result = runner.invoke(main, ["audit", "--json", "--strip-mode", "all", "--jobs", "2",
                                  str(prefix)])
    assert result.exit_code == 0, result.output
    line = next(s for s in json.loads(result.output)["strategies"] if s["name"] == "strip")
    assert line["files"] > 0 and line["bytes_saved"] > 0
    bad = runner.invoke(main, ["audit", "--strip-mode", "most", str(prefix)])
    assert bad.exit_code == 2 and "most" in bad.output
