"""Which modules inside test directories does a package's own runtime code import?

Some packages import from their test suites at import time (old astropy's
``__init__`` did ``from .tests.runner import TestRunner``; numpy 2.0-2.3's
``numpy.testing`` imports ``numpy._core.tests._natype``). The ``tests`` strategy keeps
those modules; this module finds them by reading the code with :mod:`ast`.
"""

from __future__ import annotations

import ast
import os
import re
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path

_TEST_WORD = re.compile(rb"tests?\b")
"""``test``/``tests`` ending a word; starting with a literal lets the regex engine skip
ahead fast (a leading ``\b`` makes it ten times slower), so the start is checked by hand."""
_EXTENSION = re.compile(r"^[^.]+(\.[A-Za-z0-9_-]+)?\.so$")


def imported_names(source: bytes, module: str, is_package: bool) -> Iterator[str]:
    """Every module name ``source`` may import, absolute, including ``from x import y``
    as ``x.y`` (``y`` may be a submodule) and ``importlib.import_module("...")``."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, package)
            if base is None:
                continue
            yield base
            for alias in node.names:
                if alias.name != "*":
                    yield f"{base}.{alias.name}"
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and _callee(node) in ("import_module", "__import__")):
            yield node.args[0].value


def _resolve(name: str | None, level: int, package: str) -> str | None:
    if not level:
        return name
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([name] if name else [])) or None


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def module_of(relpath: str) -> tuple[str, bool]:
    """``astro/tests/__init__.py`` -> (``astro.tests``, True); relative to site-packages."""
    parts = relpath.split("/")
    name = parts[-1].split(".", 1)[0]
    if name == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts[:-1] + [name]), False


def needed_test_modules(
    site: Path, runtime: list[str], test_files: Mapping[str, str]
) -> dict[str, str]:
    """Test-directory files that runtime code needs, mapped to the first importer.

    ``runtime`` are runtime ``.py`` files and ``test_files`` maps module names to files
    inside test directories, all relative to ``site`` (site-packages). Kept modules are
    runtime code too, so what they import is followed in turn.
    """
    needed: dict[str, str] = {}
    queue = deque(runtime)
    while queue:
        relpath = queue.popleft()
        try:
            with open(os.path.join(site, relpath), "rb") as f:
                source = f.read()
        except OSError:
            continue
        if not may_import_tests(source) and relpath not in needed:
            continue
        module, is_package = module_of(relpath)
        for name in imported_names(source, module, is_package):
            for target in _files_for(name, test_files):
                if target not in needed:
                    needed[target] = relpath
                    queue.append(target)
    return needed


def may_import_tests(source: bytes) -> bool:
    """A cheap filter before :mod:`ast`: could ``source`` import a test module?

    It errs on the side of yes (the parse then decides) and skips the many files that
    say "test" only in docstrings, names, or ``numpy.testing``.
    """
    blocks: list[tuple[int, int]] | None = None
    for match in _TEST_WORD.finditer(source):
        at = match.start()
        if at and (source[at - 1:at].isalnum() or source[at - 1:at] == b"_"):
            continue  # "pytest", "_test": not the word
        line = source[source.rfind(b"\n", 0, at) + 1:at].lstrip()
        if line.startswith((b"from ", b"import ")) or b"import_module(" in line \
                or b"__import__(" in line:
            return True
        if blocks is None:
            blocks = _import_blocks(source)
        if any(opener < at < closer for opener, closer in blocks):
            return True
    return False


def _import_blocks(source: bytes) -> list[tuple[int, int]]:
    """The spans of ``from x import (...)``, which may cover several lines."""
    blocks = []
    opener = source.find(b"import (")
    while opener != -1:
        closer = source.find(b")", opener)
        closer = len(source) if closer == -1 else closer
        blocks.append((opener, closer))
        opener = source.find(b"import (", closer)
    return blocks


def _files_for(name: str, test_files: Mapping[str, str]) -> Iterator[str]:
    """The file of module ``name``, and the ``__init__.py`` files Python runs to reach it."""
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        relpath = test_files.get(".".join(parts[:depth]))
        if relpath is not None:
            yield relpath


def is_module_file(name: str) -> bool:
    """A file Python can import as a module: ``*.py`` or an extension ``*.so``."""
    return name.endswith(".py") or bool(_EXTENSION.match(name))
