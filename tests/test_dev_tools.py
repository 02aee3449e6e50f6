"""``dev-tools`` on a python that ships what conda-forge's does: the stdlib's development
parts, and the ``tk`` package (Tcl/Tk) that ``_tkinter`` loads from the prefix."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from treeutil import file_digests

from fixtures.builder import build_full_python_prefix
from fixtures.install import copy_tree
from shrinkconda import Options, audit, shrink
from shrinkconda.strategies import _python as python_code

STDLIB = "lib/python3.11"
SITE = f"{STDLIB}/site-packages"
DYNLOAD = f"{STDLIB}/lib-dynload/_tkinter.cpython-311-x86_64-linux-gnu.so"
TKINTER = [f"{STDLIB}/tkinter", f"{STDLIB}/turtle.py", DYNLOAD]
OTHER_TOOLS = [f"{STDLIB}/idlelib", f"{STDLIB}/pydoc_data", f"{STDLIB}/turtledemo",
               f"{STDLIB}/ensurepip", f"{STDLIB}/lib2to3", "bin/idle3.11", "bin/idle3", "bin/2to3-3.11", "bin/2to3"]
TCLTK = ["lib/libtcl8.6.so", "lib/libtk8.6.so", "lib/tcl8.6", "lib/tk8.6", "bin/tclsh8.6",
         "bin/tclsh", "include/tcl.h"]
ONLY = Options(only=("dev-tools",), strip_mode=None)


@pytest.fixture(scope="module")
def template_full_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_full_python_prefix(tmp_path_factory.mktemp("full") / "prefix", ("demopkg",))


@pytest.fixture
def full_prefix(template_full_prefix: Path, tmp_path: Path) -> Iterator[Path]:
    copy = copy_tree(template_full_prefix, tmp_path / "prefix")
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


def _python(prefix: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(prefix / "bin" / "python"), "-c", code],
                          check=False, capture_output=True, text=True)


def _add_package(prefix: Path, name: str, source: str) -> None:
    """A pip-installed distribution (no conda record) whose module is ``source``."""
    (prefix / SITE / name).mkdir()
    (prefix / SITE / name / "__init__.py").write_text(source)
    info = prefix / SITE / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "top_level.txt").write_text(f"{name}\n")


def test_tkinter_goes_with_tcltk_and_the_other_tools(full_prefix: Path) -> None:
    # The fixture is real: _tkinter runs Tcl from the prefix's own libtcl8.6.so.
    probe = _python(full_prefix, "import tkinter; print(tkinter.Tcl().eval('expr 6*7'));"
                    "print(any('" + str(full_prefix / "lib/libtcl8.6.so") + "' in line"
                    " for line in open('/proc/self/maps')))")
    assert probe.stdout.split() == ["42", "True"], probe.stderr
    for path in TKINTER + OTHER_TOOLS + TCLTK:
        assert (full_prefix / path).exists(), path
    cache_before = file_digests(full_prefix / "pkgs")
    predicted = audit(full_prefix, ONLY)

    report = shrink(full_prefix, ONLY)

    assert report.verified and not report.rolled_back
    for path in TKINTER + OTHER_TOOLS + TCLTK:
        assert not (full_prefix / path).exists() and not (full_prefix / path).is_symlink(), path
    assert not list((full_prefix / "conda-meta").glob("tk-*.json"))
    assert [p.split("-")[0] for p in report.removed_packages] == ["tk"]
    assert [p.split("-")[0] for p in predicted.removed_packages] == ["tk"]
    assert abs(report.bytes_saved - predicted.bytes_saved) <= predicted.bytes_saved // 100
    assert file_digests(full_prefix / "pkgs") == cache_before
    # What runs programs still does; functions that used the tools now raise ImportError.
    after = _python(full_prefix, "import json, distutils.util, venv, demopkg; print('ok')")
    assert after.stdout.strip() == "ok", after.stderr
    assert "No module named 'turtle'" in _python(full_prefix, "import turtle").stderr
    venv = subprocess.run([str(full_prefix / "bin/python"), "-m", "venv", "--without-pip",
                           str(full_prefix.parent / "venv")], check=False, capture_output=True,
                          text=True)
    assert venv.returncode == 0, venv.stderr


@pytest.mark.parametrize("source, at_import", [
    (b"import tkinter\n", True),
    (b"try:\n    from tkinter import ttk\nexcept ImportError:\n    ttk = None\n", True),
    (b"if True:\n    import tkinter.font as f\n", True),
    (b"class Gui:\n    import tkinter.ttk\n", True),
    (b"def show():\n    import tkinter\n    return tkinter.Tk()\n", False),
    (b"show = lambda: __import__('tkinter')\n", False),
    (b"import tkinterx\nimport mytkinter\n", False),
    (b"import tkinter(\n", True),  # does not parse: assume it imports
])
def test_only_imports_that_run_when_the_module_is_imported_count(
        source: bytes, at_import: bool) -> None:
    assert python_code.matches_at_import(source, python_code.imports("tkinter")) == at_import


@pytest.mark.parametrize("source, keeps", [
    ("import tkinter\n", True),
    ("def show():\n    import tkinter\n    return tkinter.Tk()\n", False),
])
def test_code_that_imports_tkinter_when_imported_keeps_it_and_tcltk(
        full_prefix: Path, source: str, keeps: bool) -> None:
    _add_package(full_prefix, "tkapp", source)
    kept = {k.path: k.reason for k in audit(full_prefix, ONLY).kept}
    report = shrink(full_prefix, ONLY)
    assert report.verified and not report.rolled_back
    for path in TKINTER + TCLTK:
        assert (full_prefix / path).exists() == keeps, path
    if keeps:
        for path in TKINTER:
            assert kept[path] == f"imported by {SITE}/tkapp/__init__.py"
        assert _python(full_prefix, "import tkapp; import tkinter").returncode == 0
    for path in OTHER_TOOLS:
        assert not (full_prefix / path).exists(), path


def test_a_kept_tool_keeps_what_it_imports(full_prefix: Path) -> None:
    # turtledemo imports turtle (tkinter's) and idlelib's colorizer: code that imports
    # turtledemo keeps all three, and Tcl/Tk; ensurepip and lib2to3 still go.
    _add_package(full_prefix, "demos", "import turtledemo\n")
    kept = {k.path: k.reason for k in audit(full_prefix, ONLY).kept}
    assert kept[f"{STDLIB}/turtledemo"] == f"imported by {SITE}/demos/__init__.py"
    assert kept[f"{STDLIB}/turtle.py"].startswith(f"imported by {STDLIB}/turtledemo/")
    assert kept[f"{STDLIB}/idlelib"] == f"imported by {STDLIB}/turtledemo/__main__.py"
    assert f"{STDLIB}/ensurepip" not in kept and f"{STDLIB}/lib2to3" not in kept
    report = shrink(full_prefix, ONLY)
    assert report.verified and report.removed_packages == ()
    for path in TKINTER + TCLTK + [f"{STDLIB}/idlelib", "bin/idle3"]:
        assert (full_prefix / path).exists(), path
    assert not (full_prefix / STDLIB / "ensurepip").exists()


def test_an_object_that_needs_libtcl_keeps_tcltk(full_prefix: Path) -> None:
    source = full_prefix.parent / "tclext.c"
    source.write_text("#include <tcl.h>\nint Tclext_Init(Tcl_Interp *i) {\n"
                      "  return Tcl_PkgProvide(i, \"tclext\", \"1.0\");\n}\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(full_prefix / "lib/libtclext.so"),
                    str(source), f"-I{full_prefix / 'include'}", f"-L{full_prefix / 'lib'}",
                    "-l:libtcl8.6.so"], check=True)
    report = shrink(full_prefix, ONLY)
    assert report.verified and not report.rolled_back
    for path in TKINTER + OTHER_TOOLS:
        assert not (full_prefix / path).exists(), path
    for path in TCLTK:
        assert (full_prefix / path).exists(), path
    assert report.removed_packages == ()
    assert {k.path: k.reason for k in report.kept}["lib/libtcl8.6.so"] == \
        "needed by lib/libtclext.so"


def test_an_object_whose_headers_do_not_parse_keeps_tcltk(full_prefix: Path) -> None:
    (full_prefix / "lib/libodd.so").write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\xff" * 8)
    report = audit(full_prefix, ONLY)
    assert report.removed_packages == ()
    assert {k.path: k.reason for k in report.kept}["lib/libtcl8.6.so"] == \
        "may be needed by lib/libodd.so, whose ELF headers do not parse"
