"""Byte accounting: the numbers are du's, each inode once, and the audit predicts them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from treeutil import du_allocated, du_bytes, snapshot

from shrinkconda import Options, audit, shrink
from shrinkconda.accounting import Charge, Ledger
from shrinkconda.scan import DIR, scan

SITE = "lib/python3.11/site-packages"


def test_size_before_is_du(prefix: Path) -> None:
    ledger = Ledger(scan(prefix))
    assert ledger.size_before == du_bytes(prefix)
    assert ledger.allocated_before == du_allocated(prefix)


@pytest.mark.parametrize("options", [
    Options(skip=("strip",)),  # strip's prediction is within padding, see test_strip
    Options(only=("pkgs-cache",)),
    Options(only=("tests", "docs")),
    Options(only=("bytecode",), keep=("lib/python3.11/json/*",)),
], ids=["all-removals", "pkgs-cache", "tests+docs", "bytecode+keep"])
def test_audit_predicts_shrink_and_du_agrees(prefix: Path, options: Options) -> None:
    before = snapshot(prefix)
    predicted = audit(prefix, options)
    assert snapshot(prefix) == before, "the audit changed the prefix"
    done = shrink(prefix, options)
    assert not done.errors
    assert [(ln.name, ln.saving) for ln in done.lines] == [
        (ln.name, ln.saving) for ln in predicted.lines]
    assert (done.size_before, done.size_after) == (predicted.size_before, predicted.size_after)
    assert done.size_after == du_bytes(prefix)
    assert done.allocated_after == du_allocated(prefix)
    assert sum(ln.saving.bytes for ln in done.lines) == done.bytes_saved


def test_removing_one_of_two_links_inside_the_prefix_saves_nothing(prefix: Path) -> None:
    # The extracted package in pkgs/ shares its inodes with the env: removing the cache
    # frees only what is not linked into the env (archives, repodata, info/).
    extracted = next(p for p in (prefix / "pkgs").iterdir() if p.name.startswith("libdemo-")
                     and p.is_dir())
    library = extracted / "lib" / "libdemo.so.1.0.0"
    assert os.stat(library).st_ino == os.stat(prefix / "lib/libdemo.so.1.0.0").st_ino
    naive = sum(os.lstat(p).st_size for p in (prefix / "pkgs").rglob("*"))
    report = shrink(prefix, Options(only=("pkgs-cache",)))
    assert 0 < report.bytes_saved < naive - os.stat(prefix / "lib/libdemo.so.1.0.0").st_size
    assert report.linked_outside == 0


def test_files_linked_from_outside_leave_but_free_no_disk(
        external_cache_env: tuple[Path, Path]) -> None:
    cache, env = external_cache_env
    tests_dir = env / SITE / "demopkg" / "tests"
    linked = sum(p.stat().st_size for p in tests_dir.rglob("*")
                 if p.is_file() and p.stat().st_nlink > 1)
    assert linked > 0
    report = shrink(env, Options(only=("tests",)))
    assert report.linked_outside >= linked
    assert report.size_after == du_bytes(env)
    # The cache still has its copy, intact.
    assert any(p.name == "test_demo.py" for p in cache.rglob("test_demo.py"))


def test_an_itemised_ledger_charges_each_entry_and_counts_the_same(prefix: Path) -> None:
    the_scan = scan(prefix)
    cache = the_scan.find("pkgs")
    library = the_scan.find("lib/libdemo.so.1.0.0")
    assert cache is not None and library is not None
    plain, itemised = Ledger(the_scan), Ledger(the_scan, itemise=True)
    savings = []
    for ledger in (plain, itemised):
        savings.append((
            ledger.remove(range(cache, the_scan.ends[cache]), line="pkgs-cache"),
            ledger.replace(library, 1000, 4096, line="strip"),
            ledger.add(300, 4096, line="python-code", path="lib/new.pyc"),
        ))
    assert savings[0] == savings[1] and (plain.size, plain.allocated) == (
        itemised.size, itemised.allocated)
    assert plain.charges == []  # nothing kept unless asked
    removed, replaced, added = savings[1]
    charges = itemised.charges
    assert [c.index for c in charges[:-2]] == list(range(cache, the_scan.ends[cache]))
    assert sum(c.bytes for c in charges if c.line == "pkgs-cache") == removed.bytes
    # The cache's links of files the env keeps free nothing; the env's file then goes whole.
    linked = [c for c in charges[:-2]
              if the_scan.kinds[c.index] != DIR and the_scan.nlinks[c.index] > 1]
    assert linked and all(c.bytes == 0 for c in linked)
    assert charges[-2] == Charge("strip", library, replaced.bytes, after=1000)
    assert replaced.bytes == the_scan.sizes[library] - 1000
    assert charges[-1] == Charge("python-code", -1, -300, path="lib/new.pyc") and added.bytes == -300
