"""Import-aware pruning: test modules that runtime code imports stay."""

from __future__ import annotations

from pathlib import Path

import pytest
from treeutil import prefix_python

from shrinkconda import Options, shrink
from shrinkconda.imports import imported_names, may_import_tests, module_of

SITE = "lib/python3.11/site-packages"


@pytest.mark.parametrize(
    ("source", "module", "is_package", "expected"),
    [
        ("from .tests.runner import TestRunner", "astro", True,
         {"astro.tests.runner", "astro.tests.runner.TestRunner"}),
        ("from ..tests import _natype", "numpy._core.x", False,
         {"numpy.tests", "numpy.tests._natype"}),
        ("from numpy._core.tests._natype import pd_NA", "numpy.testing._private.utils", False,
         {"numpy._core.tests._natype", "numpy._core.tests._natype.pd_NA"}),
        ("import a.tests.b as c", "x", False, {"a.tests.b"}),
        ("def f():\n    import importlib\n    importlib.import_module('p.tests.q')", "p", True,
         {"importlib", "p.tests.q"}),
        ("from . import *", "p.sub", False, {"p"}),
        ("this is not python", "p", True, set()),
    ],
)
def test_imported_names(source: str, module: str, is_package: bool, expected: set[str]) -> None:
    assert set(imported_names(source.encode(), module, is_package)) == expected


def test_module_of() -> None:
    assert module_of("astro/tests/__init__.py") == ("astro.tests", True)
    assert module_of("np/_core/tests/_natype.cpython-311-x86_64-linux-gnu.so") == (
        "np._core.tests._natype", False)


def test_package_importing_its_tests_at_import_time_still_imports(prefix: Path) -> None:
    report = shrink(prefix, Options(only=("tests",)))
    astro = prefix / SITE / "astro"
    assert (astro / "tests/runner.py").exists() and (astro / "tests/__init__.py").exists()
    assert not (astro / "tests/test_astro.py").exists()
    assert not (prefix / SITE / "demopkg/tests").exists()
    kept = {k.path: k.reason for k in report.kept}
    assert kept[f"{SITE}/astro/tests/runner.py"] == f"imported by {SITE}/astro/__init__.py"
    result = prefix_python(prefix, "import astro; print(astro.test.__self__.base_path)")
    assert result.returncode == 0, result.stderr


def test_chain_through_a_kept_module_and_a_subpackage(prefix: Path) -> None:
    # numpy 2.x: numpy.testing imports numpy._core.tests._natype, which imports a sibling.
    pkg = prefix / SITE / "numpyish"
    (pkg / "_core/tests").mkdir(parents=True)
    (pkg / "testing").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_core/__init__.py").write_text("")
    (pkg / "_core/tests/__init__.py").write_text("")
    (pkg / "_core/tests/_natype.py").write_text("from ._helper import NA\n")
    (pkg / "_core/tests/_helper.py").write_text("NA = object()\n")
    (pkg / "_core/tests/test_big.py").write_text("def test_x():\n    pass\n" * 200)
    (pkg / "testing/__init__.py").write_text(
        "def f():\n    from numpyish._core.tests._natype import NA\n    return NA\n")
    shrink(prefix, Options(only=("tests",)))
    assert not (pkg / "_core/tests/test_big.py").exists()
    result = prefix_python(prefix, "import numpyish.testing as t; t.f()")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("source", "may_import"), [
    (b"from .tests.runner import X", True),
    (b"def f():\n    from numpy._core.tests._natype import pd_NA", True),
    (b"from . import tests", True),
    (b"from . import (\n    a,\n    tests,\n)", True),
    (b"import a.tests.b as c", True),
    (b"importlib.import_module('p.tests.q')", True),
    (b"from numpy.testing import assert_equal", False),
    (b"import pytest", False),
    (b'"""These tests are run by the test suite."""', False),
    (b"def test_x():\n    pass", False),
])
def test_prefilter_only_passes_files_that_may_import_tests(source: bytes,
                                                           may_import: bool) -> None:
    # The filter must never miss an import the ast would find.
    assert may_import_tests(source) is may_import
    if may_import:
        assert any("tests" in n.split(".") for n in imported_names(source, "p.sub", False))
