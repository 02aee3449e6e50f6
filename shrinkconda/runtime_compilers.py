"""Packages that compile at run time, as data: what each compiles against (Python's
headers, its own include directories, sources it opens by a name built at run time,
setuptools), so the ``headers``, ``sources`` and ``dev-tools`` strategies spare them,
and a small real compile that verification runs before and after a shrink.

torch's Inductor (``torch.compile``) and ``cpp_extension`` build C++ against
``include/pythonX.Y`` and ``torch/include`` and import setuptools; triton builds its
launcher stubs against Python's and its backends' headers; cffi, pyximport and numba
compile against Python's headers; numpy.distutils compiles ``checks/cpu_%s.c``, a name
no scan of its code can see. None of them does so at import, so an import check passes.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from shrinkconda.scan import Scan
from shrinkconda.strategies.base import Keep

_SITE = "lib/python3*/site-packages"
_PYTHON_HEADERS = "include/python3*"


@dataclass(frozen=True)
class RuntimeCompiler:
    """A package that compiles code when it runs, and what that compile needs."""

    name: str
    """What the report calls it (``torch``)."""
    marker: str
    """A glob (relative to the prefix) whose match means the package is installed."""
    does: str
    """What compiles, for the report (``torch.compile and cpp_extension compile C++``)."""
    against: tuple[str, ...]
    """Globs (relative to the prefix) of what the compile reads; a matched directory
    stays with its subtree."""
    distributions: tuple[str, ...] = ()
    """Installers it imports when it compiles (``setuptools``), kept whole."""
    check: str = ""
    """Python source the env's python runs in a temporary directory (``argv[1]``);
    exit 0 means the compiler still works."""


#: A small function through Inductor on the CPU (C++ built by the host's compiler).
TORCH_CHECK = """\
import os, sys
os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(sys.argv[1], "inductor")
import torch
f = torch.compile(lambda x: torch.sin(x) * 2 + 1)
x = torch.arange(8, dtype=torch.float32)
if not torch.allclose(f(x), torch.sin(x) * 2 + 1):
    sys.exit("torch.compile gave a wrong result")
"""

COMPILERS: tuple[RuntimeCompiler, ...] = (
    RuntimeCompiler("torch", f"{_SITE}/torch/utils/cpp_extension.py",
                    "torch.compile (Inductor) and torch.utils.cpp_extension compile C++",
                    (_PYTHON_HEADERS, f"{_SITE}/torch/include"), ("setuptools",), TORCH_CHECK),
    RuntimeCompiler("triton", f"{_SITE}/triton/__init__.py",
                    "triton compiles its kernel launchers",
                    (_PYTHON_HEADERS, f"{_SITE}/triton/backends/*/include",
                     f"{_SITE}/triton/backends/*/driver.c")),
    RuntimeCompiler("cffi", f"{_SITE}/cffi/__init__.py", "cffi's ffi.compile() builds C",
                    (_PYTHON_HEADERS, f"{_SITE}/cffi/*.h"), ("setuptools",)),
    RuntimeCompiler("pyximport", f"{_SITE}/pyximport/__init__.py",
                    "pyximport compiles .pyx files at import",
                    (_PYTHON_HEADERS, f"{_SITE}/Cython/Includes", f"{_SITE}/Cython/Utility"),
                    ("setuptools",)),
    RuntimeCompiler("numba", f"{_SITE}/numba/__init__.py",
                    "numba's ahead-of-time compiler (numba.pycc) builds C",
                    (_PYTHON_HEADERS, f"{_SITE}/numba/*.h", f"{_SITE}/numba/*.c")),
    RuntimeCompiler("numpy-distutils", f"{_SITE}/numpy/distutils/checks",
                    "numpy.distutils compiles checks/cpu_%s.c, named at run time",
                    (_PYTHON_HEADERS, f"{_SITE}/numpy/distutils/checks")),
)
"""Built in; matched by the package's presence, not by reading its code."""


def present(scan: Scan, known: Sequence[RuntimeCompiler] = COMPILERS
            ) -> list[RuntimeCompiler]:
    """The compilers installed in the scanned prefix."""
    if not known:
        return []
    markers = [re.compile(fnmatch.translate(c.marker)) for c in known]
    found = [False] * len(known)
    for path in scan.paths:
        for n, marker in enumerate(markers):
            if not found[n] and marker.match(path):
                found[n] = True
    return [c for c, hit in zip(known, found) if hit]


def needed(scan: Scan, known: Sequence[RuntimeCompiler] | None = None
           ) -> Iterator[tuple[int, str]]:
    """Entries a present compiler compiles against, each with why: the topmost match
    of each glob (its subtree is implied)."""
    for compiler in present(scan, COMPILERS if known is None else known):
        pattern = re.compile("|".join(fnmatch.translate(g) for g in compiler.against))
        index = 1
        while index < len(scan):
            if pattern.match(scan.paths[index]):
                yield index, f"{compiler.does} against it"
                index = scan.ends[index]
            else:
                index += 1


def spare(scan: Scan, chosen: Sequence[int]) -> Iterator[Keep]:
    """A :class:`Keep` for each entry a present compiler needs that ``chosen`` (a
    strategy's removals) would take: inside a chosen subtree, or holding a chosen entry."""
    needed_here: dict[int, list[str]] = {}
    for index, why in needed(scan):
        needed_here.setdefault(index, []).append(why)
    if not needed_here:
        return
    chosen_set = set(chosen)
    for index, whys in needed_here.items():
        inside = any(c <= index < scan.ends[c] for c in chosen_set)
        holding = any(index <= c < scan.ends[index] for c in chosen_set)
        if inside or holding:  # every compiler that needs it, so none is hidden
            yield Keep(index, "; ".join(whys))


def needed_distributions(scan: Scan) -> dict[str, str]:
    """Installer name -> why a present compiler needs it."""
    out: dict[str, str] = {}
    for compiler in present(scan):
        for name in compiler.distributions:
            out.setdefault(name, f"{compiler.does}, importing {name}")
    return out


def working(prefix: Path, python: Path | None) -> list[str]:
    """The names of the present compilers whose check passes now (before a shrink)."""
    if python is None:
        return []
    names = []
    for compiler in _with_checks(prefix):
        if _run(python, compiler) is None:
            names.append(compiler.name)
    return names


def broken(prefix: Path, python: Path | None, names: Sequence[str]) -> list[tuple[str, str]]:
    """The checks of ``names`` (which passed before) that fail now: what, and its error."""
    if python is None:
        return []
    out = []
    for compiler in _with_checks(prefix):
        if compiler.name in names:
            error = _run(python, compiler)
            if error is not None:
                out.append((f"{compiler.name}: {compiler.does}", error))
    return out


def _with_checks(prefix: Path) -> Iterator[RuntimeCompiler]:
    for compiler in COMPILERS:
        if compiler.check and any(prefix.glob(compiler.marker)):
            yield compiler


def _run(python: Path, compiler: RuntimeCompiler, timeout: float = 600.0) -> str | None:
    """``None`` if the check passes, else its last line of output."""
    with tempfile.TemporaryDirectory(prefix="shrinkconda-compile-") as work:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            done = subprocess.run([str(python), "-c", compiler.check, work], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return f"did not finish in {timeout:.0f} s"
    if done.returncode == 0:
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1][:500] if lines else f"exit status {done.returncode}"
