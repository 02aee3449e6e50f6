"""The dedup phase: identical files become one inode, inside the prefix only, reversibly."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from condatools import conda_pack
from treeutil import du_allocated, du_bytes, file_digests, prefix_python, run_cli

from fixtures.install import copy_tree
from shrinkconda import Options, audit, shrink
from shrinkconda.transaction.journal import STATE_DIR

SITE = "lib/python3.11/site-packages"
ONLY = Options(only=("dedup",), strip_mode=None, conda_pack_views=True)
WORKS = "import demopkg, astro, purepkg; assert demopkg.add(2, 3) == 5"


def _plant(prefix: Path) -> list[Path]:
    """Three copies of a module (one with other mode bits) and one of a library, each
    listed in its package's record as if the package had shipped it."""
    source = prefix / SITE / "demopkg" / "__init__.py"
    copies = [prefix / SITE / "demopkg" / f"copy{n}.py" for n in range(3)]
    for copy in copies:
        shutil.copyfile(source, copy)
    copies[2].chmod(0o600)
    library = prefix / "lib" / "libdemo.so.1.0.0"
    extra = prefix / "share" / "demo" / "libdemo-copy.so"
    shutil.copyfile(library, extra)
    extra.chmod(library.stat().st_mode & 0o7777)
    for path in copies:
        _own(prefix, "demopkg-*.json", path)
    _own(prefix, "libdemo-*.json", extra)
    return [*copies, extra]


def _own(prefix: Path, record_glob: str, path: Path) -> None:
    record = next((prefix / "conda-meta").glob(record_glob))
    doc = json.loads(record.read_text())
    relpath = str(path.relative_to(prefix))
    doc["files"].append(relpath)
    doc["paths_data"]["paths"].append({
        "_path": relpath, "path_type": "hardlink", "size_in_bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    record.write_text(json.dumps(doc))


def test_identical_files_become_one_inode_and_mode_bits_keep_them_apart(prefix: Path) -> None:
    copy0, copy1, copy2, extra = _plant(prefix)
    shrink(prefix, Options(only=("pkgs-cache",), strip_mode=None, verify=False,
                           conda_pack_views=True))
    before = file_digests(prefix, skip="conda-meta")
    predicted = audit(prefix, ONLY)
    done = shrink(prefix, ONLY)
    assert done.verified and not done.rolled_back
    original = prefix / SITE / "demopkg" / "__init__.py"
    assert copy0.stat().st_ino == copy1.stat().st_ino == original.stat().st_ino
    assert copy2.stat().st_ino != original.stat().st_ino  # 0o600, not merged
    assert extra.stat().st_ino == (prefix / "lib/libdemo.so.1.0.0").stat().st_ino
    assert file_digests(prefix, skip="conda-meta") == before  # the same bytes everywhere
    assert [(ln.name, ln.saving) for ln in done.lines] == [
        (ln.name, ln.saving) for ln in predicted.lines]
    assert done.lines[0].name == "dedup" and done.lines[0].saving.bytes > extra.stat().st_size
    assert done.size_after == du_bytes(prefix) and done.allocated_after == du_allocated(prefix)
    history = json.loads(
        (prefix / "conda-meta/shrinkconda-history.jsonl").read_text().splitlines()[-1])
    assert history["deduplicated"][f"{SITE}/demopkg/copy0.py"] == f"{SITE}/demopkg/__init__.py"
    assert prefix_python(prefix, WORKS).returncode == 0


def test_without_conda_pack_views_nothing_is_linked_and_the_report_says_why(
        prefix: Path) -> None:
    copy0, copy1, _, _ = _plant(prefix)
    report = shrink(prefix, Options(only=("pkgs-cache", "dedup"), strip_mode=None))
    assert copy0.stat().st_ino != copy1.stat().st_ino
    assert [ln.saving.files for ln in report.lines if ln.name == "dedup"] == [0]
    assert any("--conda-pack-views" in note for note in report.notes)


def test_files_of_other_owners_are_not_merged(prefix: Path) -> None:
    copy0, copy1, _, _ = _plant(prefix)
    os.chown(copy1, 12345, 12345)
    shrink(prefix, Options(only=("pkgs-cache", "dedup"), strip_mode=None, conda_pack_views=True))
    assert copy0.stat().st_ino != copy1.stat().st_ino
    assert copy1.stat().st_uid == 12345


def test_no_new_inode_is_shared_with_a_cache_outside(external_cache_env: tuple[Path, Path]
                                                     ) -> None:
    cache, env = external_cache_env
    library = env / "lib" / "libdemo.so.1.0.0"
    assert library.stat().st_nlink == 2  # the env and the cache
    copies = [env / "share" / f"libdemo-{n}.so" for n in range(2)]
    for copy in copies:
        shutil.copyfile(library, copy)
        _own(env, "libdemo-*.json", copy)
    cache_before = {p: (p.stat().st_ino, p.stat().st_nlink) for p in cache.rglob("*")
                    if p.is_file() and not p.is_symlink()}
    done = shrink(env, ONLY)
    assert not done.rolled_back
    # The two env-only copies share an inode; the cache's inode gained no link.
    assert copies[0].stat().st_ino == copies[1].stat().st_ino != library.stat().st_ino
    assert library.stat().st_nlink == 2
    assert {p: (p.stat().st_ino, p.stat().st_nlink) for p in cache_before} == cache_before
    assert done.linked_outside == 0


def test_a_kept_cache_inside_the_prefix_is_never_linked(prefix: Path) -> None:
    _plant(prefix)
    cache = {p: p.stat().st_nlink for p in (prefix / "pkgs").rglob("*")
             if p.is_file() and not p.is_symlink()}
    shrink(prefix, ONLY)
    assert {p: p.stat().st_nlink for p in cache} == cache


def test_a_failed_check_puts_every_original_back(prefix: Path) -> None:
    planted = _plant(prefix)
    inodes = {p: p.stat().st_ino for p in planted}
    report = shrink(prefix, Options(only=("pkgs-cache", "dedup"), strip_mode=None,
                                    verify_commands=("false",), conda_pack_views=True))
    assert report.rolled_back and report.bytes_saved == 0
    assert {p: p.stat().st_ino for p in planted} == inodes
    assert all(p.stat().st_nlink == 1 for p in planted)
    assert not [p for p in prefix.rglob(".*.shrinkconda-strip")]


def test_killed_at_any_step_every_path_keeps_its_bytes(template_prefix: Path,
                                                       tmp_path: Path) -> None:
    """Kill a dedup after each of its first steps (journal, link into staging, rename
    over the path), then every third step (both halves of later links), then at the
    commit's last steps; after recovery every path has its bytes."""
    template = copy_tree(template_prefix, tmp_path / "template")
    _plant(template)
    shutil.rmtree(template / "pkgs")
    (template / "pkgs").mkdir()
    outcomes: set[str] = set()

    def killed_at(step: int) -> bool:
        prefix = copy_tree(template, tmp_path / f"p{step}")
        before = file_digests(prefix, skip="conda-meta")
        env = {**os.environ, "SHRINKCONDA_TEST_CRASH_AFTER": str(step)}
        first = run_cli("shrink", "-y", "-q", "--only", "dedup", "--no-strip", "--no-verify",
                        "--conda-pack-views", str(prefix), env=env, timeout=600)
        if first.returncode != 0:
            assert first.returncode == -signal.SIGKILL, (step, first.stderr)
            recovered = run_cli("audit", "--json", "--only", "dedup", str(prefix), timeout=600)
            assert recovered.returncode == 0, (step, recovered.stderr)
            outcomes.update(n.split(" a ")[0] for n in json.loads(recovered.stdout)["notes"]
                            if "interrupted" in n or "killed" in n)
            assert not (prefix / STATE_DIR).exists()
        assert file_digests(prefix, skip="conda-meta") == before, step
        assert prefix_python(prefix, WORKS).returncode == 0
        shutil.rmtree(prefix)
        return first.returncode != 0

    step = 1
    while killed_at(step):
        step += 1 if step < 6 else 3
        assert step < 100, "the shrink never completed"
    for last in range(step - 1, step - 3, -1):  # the commit's own steps
        if last > 6:
            killed_at(last)
    assert step > 6 and {"rolled back", "finished"} <= outcomes, (step, outcomes)


def test_conda_pack_packs_the_links(prefix: Path, tmp_path: Path) -> None:
    _plant(prefix)
    shrink(prefix, Options(only=("pkgs-cache", "dedup"), strip_mode=None, conda_pack_views=True))
    archive = tmp_path / "env.tar.gz"
    packed = conda_pack(prefix, archive)
    assert packed.returncode == 0, packed.stderr
    listed = subprocess.run(["tar", "-tvzf", str(archive)], capture_output=True, text=True,
                            check=False)
    assert listed.returncode == 0, listed.stderr  # every header readable
    assert f"{SITE}/demopkg/copy0.py link to " in listed.stdout
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(unpacked)], check=True)
    copy0, copy1 = (unpacked / SITE / "demopkg" / f"copy{n}.py" for n in range(2))
    assert copy0.stat().st_ino == copy1.stat().st_ino
    assert prefix_python(unpacked, WORKS).returncode == 0


def test_what_conda_pack_rewrites_is_never_linked(prefix: Path) -> None:
    # conda-pack reads these and writes them with the first path's tar header (a hard
    # link) followed by data, which tar cannot read: a script with a prefix placeholder,
    # and every file of a package with a file at the top of the prefix ("uncached").
    script = prefix / "bin" / "demo-cli"
    twin = prefix / "bin" / "demo-cli-twin"
    shutil.copy2(script, twin)
    _own(prefix, "demopkg-*.json", twin)
    (prefix / "ASTRO.txt").write_text("astro\n")
    _own(prefix, "astro-*.json", prefix / "ASTRO.txt")
    astro_init = prefix / SITE / "astro" / "__init__.py"
    astro_twin = prefix / SITE / "astro" / "twin.py"
    shutil.copy2(astro_init, astro_twin)
    _own(prefix, "astro-*.json", astro_twin)
    unowned = prefix / SITE / "demopkg" / "unowned.py"
    shutil.copy2(prefix / SITE / "demopkg" / "__init__.py", unowned)
    shrink(prefix, Options(only=("pkgs-cache", "dedup"), strip_mode=None, conda_pack_views=True))
    assert twin.stat().st_ino != script.stat().st_ino
    assert astro_twin.stat().st_ino != astro_init.stat().st_ino
    assert unowned.stat().st_nlink == 1
