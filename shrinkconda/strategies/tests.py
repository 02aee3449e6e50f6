"""The ``tests`` strategy: test suites shipped inside installed Python packages."""

from __future__ import annotations

import re
from collections.abc import Iterator

from shrinkconda import imports
from shrinkconda.scan import DIR, FILE, Scan
from shrinkconda.strategies.base import Choice, Keep, Strategy

_PYTHON_LIB = re.compile(r"^lib/python\d+\.\d+t?$")
_TEST_NAMES = frozenset({"tests", "test"})


def select(scan: Scan) -> Iterator[Choice]:
    """``tests``/``test`` directories inside packages, and the stdlib ``test`` package.

    A top-level ``site-packages/tests`` is importable as ``tests`` and stays; modules
    named ``testing`` (``numpy.testing``) are runtime code and never match. Modules in
    a test directory that the package's runtime code imports stay, with the
    ``__init__.py`` files on their path.
    """
    lib = scan.find("lib")
    if lib is None:
        return
    for pylib in scan.children(lib):
        if scan.kinds[pylib] == DIR and _PYTHON_LIB.match(scan.paths[pylib]):
            found = list(_test_dirs(scan, pylib))
            yield from found
            yield from _imported_from_tests(scan, pylib, found)


def _test_dirs(scan: Scan, pylib: int) -> Iterator[int]:
    depth = scan.paths[pylib].count("/") + 1
    site_packages = scan.paths[pylib] + "/site-packages/"
    index, end = pylib + 1, scan.ends[pylib]
    while index < end:
        path = scan.paths[index]
        if scan.kinds[index] == DIR and path.rpartition("/")[2] in _TEST_NAMES:
            in_site = path.startswith(site_packages)
            # Inside site-packages a test suite sits below a package; in the stdlib,
            # lib/pythonX.Y/test itself is the stdlib's test package.
            if not in_site or path.count("/") > depth + 1:
                yield index
                index = scan.ends[index]
                continue
        index += 1


def _imported_from_tests(scan: Scan, pylib: int, test_dirs: list[int]) -> Iterator[Keep]:
    """Keep the test-directory modules that runtime code of the same package imports."""
    site = scan.find(scan.paths[pylib] + "/site-packages")
    if site is None:
        return
    base = scan.paths[site] + "/"
    in_tests = bytearray(len(scan))
    tops: set[int] = set()
    test_files: dict[str, str] = {}
    for top in test_dirs:
        if not scan.paths[top].startswith(base):
            continue
        tops.add(_top_package(scan, site, top))
        for index in range(top, scan.ends[top]):
            in_tests[index] = 1
            if scan.kinds[index] == FILE and imports.is_module_file(scan.name(index)):
                relpath = scan.paths[index][len(base):]
                test_files[imports.module_of(relpath)[0]] = relpath
    runtime = [
        scan.paths[i][len(base):]
        for top in sorted(tops)
        for i in range(top, scan.ends[top])
        if not in_tests[i] and scan.kinds[i] == FILE and scan.paths[i].endswith(".py")
        and not scan.paths[i].endswith("/conftest.py")  # pytest's, not runtime code
    ]
    needed = imports.needed_test_modules(scan.prefix / scan.paths[site], runtime, test_files)
    for relpath, importer in needed.items():
        found = scan.find(base + relpath)
        if found is not None:
            yield Keep(found, f"imported by {base}{importer}")


def _top_package(scan: Scan, site: int, index: int) -> int:
    while scan.parents[index] != site:
        index = scan.parents[index]
    return index


STRATEGY = Strategy(
    name="tests",
    summary="test suites of installed packages (tests/, test/) and the stdlib test package",
    select=select,
)
