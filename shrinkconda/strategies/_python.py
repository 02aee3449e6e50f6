"""What the opt-in strategies share: where the site-packages are, and what runtime code does."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Callable

from shrinkconda.scan import DIR, FILE, Scan

_PYTHON_LIB = re.compile(r"^lib/python\d+\.\d+t?$")
_TEST_DIRS = ("/tests/", "/test/")


def python_libs(scan: Scan) -> Iterator[int]:
    """``lib/pythonX.Y`` directories of the prefix."""
    lib = scan.find("lib")
    if lib is None:
        return
    for child in scan.children(lib):
        if scan.kinds[child] == DIR and _PYTHON_LIB.match(scan.paths[child]):
            yield child


def site_packages(scan: Scan) -> Iterator[int]:
    """``lib/pythonX.Y/site-packages`` directories of the prefix."""
    for pylib in python_libs(scan):
        site = scan.find(scan.paths[pylib] + "/site-packages")
        if site is not None and scan.kinds[site] == DIR:
            yield site


def top_package(scan: Scan, site: int, index: int) -> int:
    """The child of ``site`` whose subtree holds ``index``."""
    while scan.parents[index] != site:
        index = scan.parents[index]
    return index


def runtime_files(scan: Scan, top: int) -> Iterator[int]:
    """The ``*.py`` files of a package that are not in a test directory."""
    for index in range(top, scan.ends[top]):
        path = scan.paths[index]
        if scan.kinds[index] == FILE and path.endswith(".py") \
                and not any(t in path for t in _TEST_DIRS) and not path.endswith("/conftest.py"):
            yield index


def read(scan: Scan, index: int) -> bytes | None:
    """The bytes of the scanned file ``index``; ``None`` if it cannot be read."""
    try:
        with open(scan.prefix / scan.paths[index], "rb") as f:
            return f.read()
    except OSError:
        return None


def first_match(scan: Scan, top: int, word: bytes,
                found: Callable[[ast.AST], bool]) -> int | None:
    """The first runtime file of package ``top`` whose code has a node ``found`` accepts.

    ``word`` is a cheap filter: files without it are never parsed.
    """
    for index in runtime_files(scan, top):
        source = read(scan, index)
        if source is None or word not in source:
            continue
        if first_match_in(source, found):
            return index
    return None


def first_match_in(source: bytes, found: Callable[[ast.AST], bool]) -> bool:
    """Whether the code in ``source`` has a node ``found`` accepts; yes if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return True  # cannot tell: assume it does
    return any(found(node) for node in ast.walk(tree))


def matches_at_import(source: bytes, found: Callable[[ast.AST], bool]) -> bool:
    """Whether code that runs when ``source`` is imported has a node ``found`` accepts:
    module level, class bodies, ``if``/``try`` blocks, not function bodies; yes if it
    does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return True  # cannot tell: assume it does
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if found(node):
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))
    return False


def calls(name: str) -> Callable[[ast.AST], bool]:
    """A node test: a call of ``name(...)`` or ``something.name(...)``."""

    def found(node: ast.AST) -> bool:
        if not isinstance(node, ast.Call):
            return False
        func = node.func
        return (isinstance(func, ast.Attribute) and func.attr == name) or \
            (isinstance(func, ast.Name) and func.id == name)

    return found


def imports(module: str) -> Callable[[ast.AST], bool]:
    """A node test: ``import module`` or ``from module import ...`` (or its submodules)."""

    def found(node: ast.AST) -> bool:
        if isinstance(node, ast.Import):
            return any(a.name == module or a.name.startswith(module + ".") for a in node.names)
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            return node.module == module or node.module.startswith(module + ".")
        return False

    return found
