"""The ``tests`` strategy: test suites shipped inside installed Python packages."""

from __future__ import annotations

import re
from typing import Iterator

from shrinkconda.scan import DIR, Scan
from shrinkconda.strategies.base import Strategy

_PYTHON_LIB = re.compile(r"^lib/python\d+\.\d+t?$")
_TEST_NAMES = frozenset({"tests", "test"})


def select(scan: Scan) -> Iterator[int]:
    """``tests``/``test`` directories inside packages, and the stdlib ``test`` package.

    A top-level ``site-packages/tests`` is importable as ``tests`` and stays; modules
    named ``testing`` (``numpy.testing``) are runtime code and never match.
    """
    lib = scan.find("lib")
    if lib is None:
        return
    for pylib in scan.children(lib):
        if scan.kinds[pylib] == DIR and _PYTHON_LIB.match(scan.paths[pylib]):
            yield from _test_dirs(scan, pylib)


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


STRATEGY = Strategy(
    name="tests",
    summary="test suites of installed packages (tests/, test/) and the stdlib test package",
    select=select,
)
