"""Each built-in strategy against a real prefix: what goes, and the traps that stay."""

from __future__ import annotations

from pathlib import Path

import pytest
from treeutil import prefix_python

from shrinkconda import Options, shrink
from shrinkconda.plan import plan
from shrinkconda.scan import scan
from shrinkconda.strategies import BUILTIN, tests

SITE = "lib/python3.11/site-packages"

# strategy -> (paths that must be gone, paths that must stay)
CASES = {
    "pkgs-cache": (
        ["pkgs/urls.txt", "pkgs/cache", "pkgs/libdemo-1.0.0-h1a2b3c4_0",
         "pkgs/libdemo-1.0.0-h1a2b3c4_0.conda"],
        ["pkgs", "lib/libdemo.so.1.0.0", "bin/python3.11"],
    ),
    "tests": (
        [f"{SITE}/demopkg/tests", "lib/python3.11/test"],
        [f"{SITE}/demopkg/testing/__init__.py", f"{SITE}/demopkg/__init__.py",
         "lib/python3.11/unittest/__init__.py"],
    ),
    "static-libs": (["lib/libdemo.a"], ["lib/libnotar.a", "lib/libdemo.so.1.0.0"]),
    "bytecode": (
        [f"{SITE}/demopkg/__pycache__"],
        [f"{SITE}/demopkg/old.pyc", f"{SITE}/demopkg/__init__.py"],
    ),
    "docs": (
        ["share/doc", "share/man", "share/info", "share/gtk-doc"],
        ["share/demo/data.txt", "share/zoneinfo/UTC", "share/terminfo/x/xterm",
         "share/proj/proj.db"],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_strategy_removes_its_files_and_spares_the_traps(prefix: Path, name: str) -> None:
    gone, kept = CASES[name]
    for path in gone + kept:
        assert (prefix / path).exists() or (prefix / path).is_symlink(), path
    report = shrink(prefix, Options(only=(name,)))
    for path in gone:
        assert not (prefix / path).exists(), path
    for path in kept:
        assert (prefix / path).exists(), path
    assert report.lines[0].name == name
    assert report.lines[0].saving.files > 0


def test_pkgs_cache_empties_the_directory_but_keeps_it(prefix: Path) -> None:
    shrink(prefix, Options(only=("pkgs-cache",)))
    assert (prefix / "pkgs").is_dir() and not list((prefix / "pkgs").iterdir())


def test_tests_never_takes_a_top_level_tests_package(prefix: Path) -> None:
    top = prefix / SITE / "tests"
    top.mkdir()
    (top / "__init__.py").write_text("")
    result = scan(prefix)
    assert result.find(f"{SITE}/tests") not in set(tests.select(result))


@pytest.mark.parametrize("name", list(CASES))
def test_never_conda_meta_nor_dist_info(prefix: Path, name: str) -> None:
    # Plant each strategy's bait inside the protected trees.
    for protected in ("conda-meta", f"{SITE}/demopkg-1.0.dist-info"):
        bait = prefix / protected
        for sub in ("tests", "__pycache__", "share/doc"):
            (bait / sub).mkdir(parents=True, exist_ok=True)
            (bait / sub / "x.pyc").write_bytes(b"x")
        (bait / "libz.a").write_bytes(b"!<arch>\nbait")
    before = _protected_paths(prefix)
    shrink(prefix, Options(only=(name,)))
    assert before <= _protected_paths(prefix)


def _protected_paths(prefix: Path) -> set[Path]:
    # Installed metadata only: the package cache's copies go with pkgs-cache.
    return {p for p in prefix.rglob("*") if p.relative_to(prefix).parts[0] != "pkgs"
            and (".dist-info" in str(p) or "conda-meta" in str(p))}


def test_keep_glob_spares_matches_and_their_parents(prefix: Path) -> None:
    keep = f"{SITE}/demopkg/tests/test_demo.py"
    shrink(prefix, Options(only=("tests",), keep=(keep,)))
    assert (prefix / keep).exists()
    assert not (prefix / SITE / "demopkg/tests/__init__.py").exists()
    assert not (prefix / "lib/python3.11/test").exists()


def test_keep_glob_on_a_directory_keeps_its_subtree(prefix: Path) -> None:
    shrink(prefix, Options(only=("docs",), keep=("share/man",)))
    assert (prefix / "share/man/man1/demo-tool.1").exists()
    assert not (prefix / "share/doc").exists()


def test_a_file_claimed_twice_counts_for_the_first_strategy(prefix: Path) -> None:
    pycache = prefix / SITE / "demopkg/tests/__pycache__"
    pycache.mkdir()
    (pycache / "test_demo.cpython-311.pyc").write_bytes(b"\0" * 1000)
    the_plan = plan(scan(prefix), BUILTIN)
    by_strategy = {s.strategy: {the_plan.scan.paths[i] for i in s.indices}
                   for s in the_plan.selections}
    claimed = f"{SITE}/demopkg/tests/__pycache__/test_demo.cpython-311.pyc"
    assert claimed in by_strategy["tests"] and claimed not in by_strategy["bytecode"]
    seen: set[str] = set()
    for paths in by_strategy.values():
        assert not seen & paths
        seen |= paths


def test_environment_still_works_after_every_strategy(prefix: Path) -> None:
    shrink(prefix)
    checks = (
        "import demopkg, json, sqlite3, decimal; assert demopkg.add(2, 3) == 5;"
        "import demopkg.old;"
        "from importlib.metadata import entry_points, version;"
        "assert [e.name for e in entry_points(group='demopkg.plugins')] == ['hello'];"
        "assert version('demopkg') == '1.0'"
    )
    result = prefix_python(prefix, checks)
    assert result.returncode == 0, result.stderr


def test_a_keep_cannot_spare_what_an_earlier_strategy_took(prefix: Path) -> None:
    # bytecode keeps the sourceless old.pyc, but its copy in pkgs/ goes with the cache.
    the_plan = plan(scan(prefix), BUILTIN)
    kept = [k.path for k in the_plan.kept]
    assert f"{SITE}/demopkg/old.pyc" in kept
    assert not [k for k in kept if k.startswith("pkgs/")]
