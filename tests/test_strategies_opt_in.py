"""The opt-in strategies against a real prefix: what goes, and the traps that stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from treeutil import prefix_python

from shrinkconda import Options, audit, shrink
from shrinkconda.plan import plan
from shrinkconda.scan import scan
from shrinkconda.strategies import BUILTIN, locales, sources

SITE = "lib/python3.11/site-packages"
STDLIB = "lib/python3.11"

# strategy -> (paths that must be gone, paths that must stay)
CASES = {
    "headers": (
        ["include", f"{SITE}/devpkg/include"],
        [f"{SITE}/jitpkg/include/jit.h", f"{SITE}/devpkg/__init__.py"],
    ),
    "sources": (
        [f"{SITE}/devpkg/_speedups.c", f"{SITE}/devpkg/_speedups.pyx",
         f"{SITE}/devpkg/_speedups.pxd"],
        [f"{SITE}/pyxpkg/fast.pyx", f"{SITE}/devpkg/include/devpkg.h",
         f"{SITE}/jitpkg/include/jit.h", "include/demo.h"],
    ),
    "js-maps": (["share/devkit/static/app.js.map"], ["share/devkit/static/app.js"]),
    "type-stubs": (
        [f"{SITE}/devpkg/__init__.pyi", f"{SITE}/extlib-stubs"],
        [f"{SITE}/devpkg/protocols.pyi", f"{SITE}/devpkg/__init__.py"],
    ),
    "dev-tools": (
        [f"{SITE}/pip", f"{SITE}/pip-24.0.dist-info", f"{SITE}/setuptools",
         f"{SITE}/pkg_resources", f"{SITE}/_distutils_hack", f"{SITE}/distutils-precedence.pth",
         f"{SITE}/wheel-0.42.0.dist-info", "bin/pip", "bin/wheel", f"{STDLIB}/ensurepip",
         f"{STDLIB}/idlelib", f"{STDLIB}/tkinter", "bin/idle3"],
        [f"{SITE}/demopkg-1.0.dist-info", f"{SITE}/devpkg/__init__.py", "bin/python3.11",
         f"{STDLIB}/json/__init__.py"],
    ),
    "locales": (
        ["share/locale/de", "share/locale/fr", f"{SITE}/devpkg/locale/fr/LC_MESSAGES/devpkg.mo"],
        ["share/locale/locale.alias", "share/zoneinfo/UTC"],
    ),
}


def _add_stdlib_dev_tools(prefix: Path) -> None:
    """The fixture python leaves them out; a conda python ships them."""
    for package in ("ensurepip", "idlelib", "tkinter"):
        (prefix / STDLIB / package).mkdir()
        (prefix / STDLIB / package / "__init__.py").write_text("")
    (prefix / "bin" / "idle3").write_text("#!/bin/sh\n")


@pytest.mark.parametrize("name", list(CASES))
def test_strategy_removes_its_files_and_spares_the_traps(opt_in_prefix: Path, name: str) -> None:
    _add_stdlib_dev_tools(opt_in_prefix)
    gone, kept = CASES[name]
    for path in gone + kept:
        assert (opt_in_prefix / path).exists(), path
    report = shrink(opt_in_prefix, Options(only=(name,), strip_mode=None))
    assert not report.rolled_back and report.verified
    for path in gone:
        assert not (opt_in_prefix / path).exists(), path
    for path in kept:
        assert (opt_in_prefix / path).exists(), path
    assert report.lines[0].name == name and report.lines[0].saving.files > 0


def test_opt_in_strategies_are_off_by_default() -> None:
    new = {s.name for s in BUILTIN if not s.default}
    assert new == {*CASES, "dedup"}


def test_each_trap_is_kept_with_its_reason(opt_in_prefix: Path) -> None:
    report = audit(opt_in_prefix, Options(profile="aggressive", keep_locales=("de",)))
    reasons = {k.path: k.reason for k in report.kept}
    assert "get_include()" in reasons[f"{SITE}/jitpkg/include"]
    assert "jitpkg/compile.py" in reasons[f"{SITE}/jitpkg/include"]
    assert "pyximport" in reasons[f"{SITE}/pyxpkg/fast.pyx"]
    assert "only copy" in reasons[f"{SITE}/devpkg/protocols.pyi"]
    assert reasons["share/locale/de"] == "--keep-locale de"
    assert reasons["share/locale/de_AT"] == "--keep-locale de"
    assert "share/locale/fr" not in reasons


def test_a_source_that_runtime_code_names_stays(opt_in_prefix: Path) -> None:
    module = opt_in_prefix / SITE / "devpkg" / "build.py"
    module.write_text('import os\nKERNEL = os.path.join(os.path.dirname(__file__), '
                      '"_speedups.c")\n')
    result = scan(opt_in_prefix)
    sources = next(s for s in BUILTIN if s.name == "sources")
    the_plan = plan(result, [sources])
    removed = {result.paths[i] for i in the_plan.selections[0].indices}
    assert f"{SITE}/devpkg/_speedups.pyx" in removed
    assert f"{SITE}/devpkg/_speedups.c" not in removed
    assert any(k.path == f"{SITE}/devpkg/_speedups.c" and "devpkg/build.py" in k.reason
               for k in the_plan.kept)


def test_a_locale_a_check_asks_for_stays_with_keep_locale(opt_in_prefix: Path) -> None:
    check = ("python -c \"import devpkg, sys; "
             "sys.exit(devpkg.greet('de') != 'Hallo')\"")
    assert prefix_python(opt_in_prefix, "import devpkg; print(devpkg.greet('de'))"
                         ).stdout.strip() == "Hallo"
    broken = shrink(opt_in_prefix, Options(only=("locales",), strip_mode=None,
                                           verify_commands=(check,)))
    assert broken.rolled_back and (opt_in_prefix / "share/locale/de").exists()
    kept = shrink(opt_in_prefix, Options(only=("locales",), strip_mode=None,
                                         verify_commands=(check,), keep_locales=("de",)))
    assert not kept.rolled_back
    assert not (opt_in_prefix / "share/locale/fr").exists()
    assert prefix_python(opt_in_prefix, "import devpkg; print(devpkg.greet('de'))"
                         ).stdout.strip() == "Hallo"


def test_keep_locale_matches_the_language_not_a_prefix_of_its_name() -> None:
    assert locales._unless_kept(5, "de_AT", ("de",)) != 5
    assert locales._unless_kept(5, "de@euro", ("de",)) != 5
    assert locales._unless_kept(5, "dsb", ("d",)) == 5
    assert locales._unless_kept(5, "fr", ("de",)) == 5


def test_dev_tools_empties_the_records_and_pip_is_not_expected_to_import(
        opt_in_prefix: Path) -> None:
    report = shrink(opt_in_prefix, Options(only=("dev-tools",), strip_mode=None))
    assert report.verified and not report.rolled_back
    for name in ("pip-24.0-py311_0", "setuptools-69.0-py311_0", "wheel-0.42.0-py311_0"):
        record = opt_in_prefix / "conda-meta" / f"{name}.json"
        if record.exists():  # else removed with its last file
            doc = json.loads(record.read_text())
            assert doc["files"] == [] and doc["paths_data"]["paths"] == []
    done = prefix_python(opt_in_prefix, "import importlib.util as u, devpkg, demopkg; "
                                        "print(u.find_spec('pip'), u.find_spec('setuptools'))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None"]
    assert "Error processing" not in done.stderr  # the .pth went with _distutils_hack


def test_only_dev_tools_may_take_a_dist_info(opt_in_prefix: Path) -> None:
    result = scan(opt_in_prefix)
    index = result.find(f"{SITE}/pip-24.0.dist-info")
    assert index is not None
    grabby = next(s for s in BUILTIN if s.name == "docs")
    from dataclasses import replace

    taker = replace(grabby, name="grabby", select=lambda s: iter([index]))
    assert list(plan(result, [taker]).selections[0].indices) == []
    allowed = replace(taker, removes_distributions=True)
    assert index in plan(result, [allowed]).selections[0].indices
    kept = plan(result, [allowed], keep=[f"{SITE}/pip-*.dist-info"])
    assert list(kept.selections[0].indices) == []


def test_breaking_import_of_a_removed_distribution_rolls_back(opt_in_prefix: Path) -> None:
    # A package that needs setuptools at import time: dev-tools must not take it away.
    needy = opt_in_prefix / SITE / "needy"
    needy.mkdir()
    (needy / "__init__.py").write_text("import pkg_resources\n")
    info = opt_in_prefix / SITE / "needy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: needy\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("needy\n")
    report = shrink(opt_in_prefix, Options(only=("dev-tools",), strip_mode=None))
    assert report.rolled_back
    assert [b.check for b in report.broken] == ["needy"]
    assert (opt_in_prefix / SITE / "pkg_resources" / "__init__.py").exists()


@pytest.mark.parametrize("source", [
    b'build("fast.pyx")\n', b"x = 'src/fast.pyx'", b"fast.pyx.bak", b"_fast.pyx", b"fast.pyxz",
    b"fast-1.pyx fast.c fast.h", b"a.c.h a.c", b"fast.pyx\nfast.pyx", b"\xc3\xa9fast.pyx",
    b"sub.fast.pyx", b"fast.f90 fast.f", b"",
])
def test_the_fast_name_search_finds_what_the_one_regex_finds(source: bytes) -> None:
    names = {b"fast.pyx", b"fast.c", b"fast.h", b"a.c", b"fast-1.pyx", b"fast.f90",
             b"fast.f", b"pyx"}
    assert set(sources._names_in(source, names)) == set(sources._names_in_slowly(source, names))
