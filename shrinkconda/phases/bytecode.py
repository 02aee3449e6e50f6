"""The python-code phase: the env's Python code in the form the user chose
(``--python-code``).

- ``source``: nothing to do here; the ``bytecode`` strategy removes compiled files.
- ``bytecode``: each module becomes a sourceless ``m.pyc`` where ``m.py`` was, compiled
  by the env's own python; its ``.py`` and ``__pycache__`` files go. Code that reads its
  own sources at run time keeps them, with a fresh unchecked-hash ``__pycache__`` file.
- ``both``: ``.py`` stay and every module gets an unchecked-hash ``__pycache__`` file
  (PEP 552), valid whatever a ``COPY``, tar or zip does to file times.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from shrinkconda import links, plugins
from shrinkconda.errors import ShrinkError
from shrinkconda.phases import pycompile
from shrinkconda.phases.base import Added, Outcome, Progress, Replacement
from shrinkconda.plan import Kept, protected_by
from shrinkconda.scan import DIR, FILE, SYMLINK, Problem, Scan
from shrinkconda.strategies import _python
from shrinkconda.transaction import journal
from shrinkconda.transaction.preflight import Need, blocks
from shrinkconda.units import counted, human

NAME = "python-code"
"""The phase's line in the report."""
SOURCE, BYTECODE, BOTH = "source", "bytecode", "both"
FORMS = (SOURCE, BYTECODE, BOTH)
ENTRY_POINT_GROUP = "shrinkconda.source_readers"
_NO_PYTHON = "no lib/pythonX.Y: there is no Python code to compile"
_TEMP = "python-code"
"""Where in staging the compiled files wait to be swapped in (a failed write there is
"writing compiled bytecode" in :mod:`~shrinkconda.transaction.faults`' messages)."""


@dataclass(frozen=True)
class SourceReader:
    """A top-level package known to need its ``.py`` files at run time. Plugins add
    their own under the entry-point group ``shrinkconda.source_readers``."""

    name: str
    """The top-level module (``torch``)."""
    reason: str
    """Why, shown as ``kept: PATH, REASON``."""
    origin: str = "built-in"


_PYINSTALLER = "PyInstaller's hooks collect it as source"
KNOWN_READERS: tuple[SourceReader, ...] = (
    *(SourceReader(n, f"reads its own sources (inspect.getsource, torch.jit); {_PYINSTALLER}")
      for n in ("torch", "torchvision", "torchaudio", "functorch", "transformers")),
    SourceReader("triton", "@triton.jit reads the source of the kernels it compiles"),
    SourceReader("typeguard", "@typechecked instruments code from its source"),
    SourceReader("numba", "numba's on-disk cache (cache=True) is keyed by source files"),
    SourceReader("cv2", "its loader opens its own .py files by path"),
    SourceReader("cairocffi", "opens its own .py files by path"),
    SourceReader("_pytest", "assertion rewriting reads sources"),
    SourceReader("librosa", f"numba-cached functions need their sources; {_PYINSTALLER}"),
)

_READS = re.compile(rb"\b(getsource|getsourcelines|findsource)\(|"
                    rb"\blinecache\.(getline|getlines|updatecache)\(")
_PY_LITERAL = re.compile(rb"['\"]([^'\"]*\.py)['\"]")
_OPENS_PY = re.compile(rb"^.*__file__.*\.py['\"].*$|^.*\.py['\"].*__file__.*$", re.MULTILINE)


class PythonCodeUsageError(ShrinkError):
    """An unknown ``--python-code`` form."""


@dataclass(frozen=True)
class _Module:
    index: int
    """The ``.py``."""
    cached: tuple[int, ...]
    """Its ``__pycache__`` files that survive the removals."""
    current: int | None
    """Of those, the one the env's python loads (``m.cpython-311.pyc``)."""
    pycache: int | None
    """The ``__pycache__`` directory beside it, if it survives."""


@dataclass(frozen=True)
class PythonCodePhase:
    """The phase for one ``--python-code`` form."""

    form: str
    keep: Sequence[str] = ()
    """``--keep`` globs: what they match stays exactly as it is."""
    sources_read: Collection[str] = frozenset()
    """``.py`` files (relative) a ``--used-by`` command opened for reading."""
    convert: Collection[str] = frozenset()
    """Top-level packages (``--python-code-convert``) converted in ``bytecode`` form
    although their code reads sources (what a ``--used-by`` command read stays)."""
    jobs: int = 2
    progress: Progress = None
    name: str = NAME

    def predict(self, scan: Scan, removed: bytearray, earlier: Sequence[Outcome]) -> Outcome:
        """The changes, measured by compiling in memory: nothing is written."""
        return self._run(scan, removed, None)

    def make(self, scan: Scan, removed: bytearray, earlier: Sequence[Outcome],
             txn: journal.Transaction) -> Outcome:
        """The compiled files, written into ``txn``'s staging."""
        return self._run(scan, removed, txn.staging / _TEMP)

    def room(self, scan: Scan, removed: bytearray) -> Need | None:
        """An estimate without compiling: one ``.pyc`` per module to compile (in ``both``,
        those without an unchecked-hash one already), each 1.3x its ``.py`` (measured
        1.13x over the realistic env without debug ranges), in whole blocks."""
        if self.form == SOURCE or not any(True for _ in _python.python_libs(scan)):
            return None
        python = pycompile.probe(scan.prefix)
        tree = scan.find(python.tree)
        if tree is None:
            return None
        modules = [m for m in _modules(scan, removed, protected_by(scan, self.keep), tree,
                                       python.cache_tag)
                   if self.form == BYTECODE or not _unchecked(scan, m.current)]
        size = sum(blocks(scan.sizes[m.index] * 13 // 10) for m in modules)
        paths = tuple(scan.paths[m.index] for m in modules)
        return Need(NAME, "compiled bytecode", size, len(modules),
                    "pass --python-code source",
                    dirs=tuple(sorted({os.path.dirname(p) for p in paths})), steps=paths)

    def _run(self, scan: Scan, removed: bytearray, out: Path | None) -> Outcome:
        if self.form == SOURCE:
            return Outcome(NAME)
        if not any(True for _ in _python.python_libs(scan)):
            return Outcome(NAME, notes=(_NO_PYTHON,))
        python = pycompile.probe(scan.prefix)
        tree = scan.find(python.tree)
        notes = tuple(f"{scan.paths[i]} belongs to another Python than bin/python "
                      f"({python.version}{python.abiflags}): its code was left as it is"
                      for i in _python.python_libs(scan) if scan.paths[i] != python.tree)
        notes += unmatched(self.convert, scan) if self.form == BYTECODE else ()
        if tree is None:
            return Outcome(NAME, notes=notes)
        modules = list(_modules(scan, removed, protected_by(scan, self.keep), tree,
                                python.cache_tag))
        readers, plugin_problems = source_readers()
        kept, as_source = self._kept(scan, removed, tree, modules, readers)
        converting = self.form == BYTECODE
        jobs, fresh_dirs = _jobs(scan, modules, as_source, converting, python, out)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            for directory in fresh_dirs.values():
                (out / directory).mkdir(parents=True, exist_ok=True)
        results = pycompile.compile_all(python, [job for _, job in jobs], self.jobs,
                                        self.progress)
        done = _outcome(scan, removed, modules, jobs, results, fresh_dirs, out,
                        python.cache_tag, kept, notes)
        return replace(done, problems=[*plugin_problems, *done.problems])

    def _kept(self, scan: Scan, removed: bytearray, tree: int, modules: list[_Module],
              readers: Sequence[SourceReader]) -> tuple[tuple[Kept, ...], set[int]]:
        """What keeps its ``.py`` in ``bytecode`` form, and why; in ``both``, nothing
        loses its source anyway."""
        if self.form != BYTECODE:
            return (), set()
        kept: list[Kept] = []
        as_source: set[int] = set()
        by_top: dict[int, list[int]] = {}
        site = scan.find(f"{scan.paths[tree]}/site-packages")
        for module in modules:
            if site is not None and site < module.index < scan.ends[site]:
                top = _python.top_package(scan, site, module.index)
                by_top.setdefault(top, []).append(module.index)
        known = {r.name: r for r in readers}
        for top, indices in by_top.items():
            name = scan.name(top).split(".")[0]
            if name in self.convert:
                continue  # the user's call: converted like any other package
            reason = known[name].reason if name in known else _reads_sources(scan, indices)
            if reason:
                kept.append(Kept(scan.paths[top], f"{reason}; {_convert_hint(scan, name, indices)}"))
                as_source.update(indices)
                continue
            for found, why in _opens_py(scan, indices):
                within = [i for i in indices if found <= i < scan.ends[found]]
                kept.append(Kept(scan.paths[found], f"{why}; {_convert_hint(scan, name, within)}"))
                as_source.update(within)
        for module in modules:
            if scan.paths[module.index] in self.sources_read and module.index not in as_source:
                kept.append(Kept(scan.paths[module.index],
                                 "opened for reading by a --used-by command"))
                as_source.add(module.index)
        linked = _link_targets(scan, removed, {m.index for m in modules} - as_source)
        for index, link in sorted(linked.items()):
            kept.append(Kept(scan.paths[index], f"the target of the symlink {scan.paths[link]}"))
            as_source.add(index)
        return tuple(kept), as_source


def _convert_hint(scan: Scan, name: str, sources: Sequence[int]) -> str:
    """What ``--python-code-convert NAME`` would save: the ``.py`` files kept here."""
    size = sum(scan.sizes[i] for i in sources)
    return (f"--python-code-convert {name} would convert it anyway, removing "
            f"{counted(len(sources), '.py file')} ({human(size)})")


def unmatched(convert: Collection[str], scan: Scan) -> tuple[str, ...]:
    """Notes for ``--python-code-convert`` names that match no top-level package in
    ``site-packages``: a typo converts nothing."""
    tops = {scan.name(c).split(".")[0] for lib in _python.python_libs(scan)
            for site in [scan.find(f"{scan.paths[lib]}/site-packages")] if site is not None
            for c in scan.children(site)}
    return tuple(f"--python-code-convert {name}: no such package in site-packages"
                 for name in sorted(convert) if name not in tops)


def source_readers() -> tuple[tuple[SourceReader, ...], tuple[Problem, ...]]:
    """The built-in readers, then the plugins' (sorted), and plugins that failed."""
    return plugins.load(ENTRY_POINT_GROUP, KNOWN_READERS, SourceReader, "source readers",
                        "source-reader plugin", PythonCodeUsageError)


def _modules(scan: Scan, removed: bytearray, protected: bytearray, tree: int,
             cache_tag: str) -> Iterator[_Module]:
    """The importable ``.py`` files of the env's own tree that survive and are not kept
    by ``--keep``: every component an identifier, below ``lib/pythonX.Y`` or its
    ``site-packages``."""
    root = scan.paths[tree] + "/"
    site = root + "site-packages/"
    pycaches: dict[int, int | None] = {}
    for index in range(tree + 1, scan.ends[tree]):
        path = scan.paths[index]
        if scan.kinds[index] != FILE or not path.endswith(".py") or removed[index] \
                or protected[index]:
            continue
        inner = path[len(site):] if path.startswith(site) else path[len(root):]
        if not all(part.isidentifier() for part in inner[:-3].split("/")):
            continue
        parent = scan.parents[index]
        if parent not in pycaches:
            found = scan.find(f"{scan.paths[parent]}/__pycache__")
            pycaches[parent] = found if found is not None and scan.kinds[found] == DIR \
                and not removed[found] else None
        pycache = pycaches[parent]
        cached: list[int] = []
        current = None
        if pycache is not None:
            stem = scan.name(index)[:-3] + "."
            for child in scan.children(pycache):
                name = scan.name(child)
                if name.startswith(stem) and name.endswith(".pyc") and not removed[child] \
                        and scan.kinds[child] == FILE:
                    cached.append(child)
                    if name == f"{stem}{cache_tag}.pyc":
                        current = child
        yield _Module(index, tuple(cached), current, pycache)


def _unchecked(scan: Scan, pyc: int | None) -> bool:
    """Whether the ``.pyc`` at ``pyc`` is a PEP 552 unchecked-hash file (its flags)."""
    if pyc is None:
        return False
    try:
        with open(scan.prefix / scan.paths[pyc], "rb") as f:
            return f.read(8)[4:8] == b"\x01\0\0\0"
    except OSError:
        return False


def _link_targets(scan: Scan, removed: bytearray, modules: set[int]) -> dict[int, int]:
    """Of ``modules``, those a surviving symlink resolves to (a ``bin/`` script linked
    to a package's ``cli.py``): converting them would leave the link dangling."""
    resolver = links.Resolver(scan)
    found: dict[int, int] = {}
    for index in range(len(scan)):
        if scan.kinds[index] == SYMLINK and not removed[index]:
            through = resolver.through(index)
            if through and through[-1] in modules:
                found.setdefault(through[-1], index)
    return found


def _reads_sources(scan: Scan, indices: list[int]) -> str:
    """Why a package needs its sources, if its runtime code reads sources."""
    for index in indices:
        if "/tests/" in scan.paths[index] or "/test/" in scan.paths[index]:
            continue
        text = _python.read(scan, index)
        if text is None or not (b"source" in text or b"linecache" in text):
            continue
        if not _READS.search(text):
            continue
        call = _unguarded_read(text)
        if call is not None:
            name, line = call
            return f"its runtime code reads sources ({name} in {scan.paths[index]}:{line})"
    return ""


def _unguarded_read(source: bytes) -> tuple[str, int] | None:
    """The first call that reads sources (``inspect.getsource``, ``linecache.getline``,
    ...) outside a ``try`` whose handler catches what a missing source raises
    (``OSError``, ``Exception`` or anything): such code copes without its sources, as
    joblib's ``Memory`` does when it hashes a function. A file that does not parse
    counts as reading."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ("unparsable code", 1)
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_missing(h) for h in node.handlers):
            guarded.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and id(node) not in guarded:
            name = _read_call(node.func)
            if name:
                return (name, node.lineno)
    return None


def _read_call(func: ast.expr) -> str:
    name = func.attr if isinstance(func, ast.Attribute) else \
        func.id if isinstance(func, ast.Name) else ""
    if name in ("getsource", "getsourcelines", "findsource"):
        return name
    if name in ("getline", "getlines", "updatecache") and isinstance(func, ast.Attribute) \
            and isinstance(func.value, ast.Name) and func.value.id == "linecache":
        return f"linecache.{name}"
    return ""


def _catches_missing(handler: ast.ExceptHandler) -> bool:
    """A handler that catches the ``OSError`` of a missing source."""
    caught = handler.type
    names = [caught] if caught is None or not isinstance(caught, ast.Tuple) else caught.elts
    return any(n is None or (isinstance(n, ast.Name) and n.id in _CATCH_MISSING)
               or (isinstance(n, ast.Attribute) and n.attr in _CATCH_MISSING) for n in names)


_CATCH_MISSING = {"Exception", "BaseException", "OSError", "IOError", "EnvironmentError"}


def _opens_py(scan: Scan, indices: list[int]) -> Iterator[tuple[int, str]]:
    """What runtime code opens by a path beside ``__file__`` that ends in ``.py``: the
    file it names (``"../__init__.py"``), or the directory's modules for a pattern
    (``"*.py"``). Yields the scan index of that file or directory, and why."""
    seen: set[int] = set()
    for index in indices:
        text = _python.read(scan, index)
        if text is None or b"__file__" not in text:
            continue
        for found in _OPENS_PY.finditer(text):
            named = _PY_LITERAL.search(found.group(0))
            if named is None:
                continue
            here = os.path.dirname(scan.paths[index])
            target = os.path.normpath(os.path.join(here, named.group(1).decode(errors="replace")))
            if "*" in target:
                target = os.path.dirname(target)
            kept = scan.find(target)
            if kept is not None and kept not in seen:
                seen.add(kept)
                line = text.count(b"\n", 0, found.start()) + 1
                yield kept, (f"opened by path beside __file__ "
                             f"({scan.paths[index]}:{line})")


def _jobs(scan: Scan, modules: list[_Module], as_source: set[int], converting: bool,
          python: pycompile.Interpreter, out: Path | None
          ) -> tuple[list[tuple[_Module, pycompile.Job]], dict[int, str]]:
    """A compile job per module, and the new ``__pycache__`` directories (by the scan
    index of the directory they go into) named by their place in staging."""
    prefix = scan.prefix
    jobs = []
    fresh: dict[int, str] = {}
    for n, module in enumerate(modules):
        path = scan.paths[module.index]
        source = str(prefix / path)
        if converting and module.index not in as_source:
            target = f"{n}.pyc"
            jobs.append((module, pycompile.Job(source, source, pycompile.SOURCELESS,
                                               out=str(out / target) if out else "")))
            continue
        name = pycompile.pycache_name(scan.name(module.index), python.cache_tag)
        existing = str(prefix / scan.paths[module.current]) if module.current is not None \
            else ""
        if module.current is not None or module.pycache is not None:
            target = f"{n}.pyc"
        else:
            parent = scan.parents[module.index]
            target = f"{fresh.setdefault(parent, f'd{len(fresh)}')}/{name}"
        jobs.append((module, pycompile.Job(source, source, pycompile.UNCHECKED, existing,
                                           out=str(out / target) if out else "")))
    return jobs, fresh


def _outcome(scan: Scan, removed: bytearray, modules: list[_Module],
             jobs: list[tuple[_Module, pycompile.Job]], results: list[pycompile.Compiled],
             fresh: dict[int, str], out: Path | None, cache_tag: str,
             kept: tuple[Kept, ...], notes: tuple[str, ...]) -> Outcome:
    paths = scan.paths
    gone: list[int] = []
    replaced: list[Replacement] = []
    added: list[Added] = []
    in_fresh: dict[int, list[tuple[str, int, str]]] = {}
    problems = []
    for (module, job), result in zip(jobs, results):
        path = paths[module.index]
        if result.error is not None:
            problems.append(Problem(path, f"kept as source: it does not compile with the "
                                          f"env's python ({result.error})"))
            continue
        if result.current:
            continue
        if job.form == pycompile.SOURCELESS:
            gone.append(module.index)
            gone.extend(module.cached)
            pyc = path + "c"
            added.append(Added(pyc, result.size, _allocated(job.out, result.size),
                               job.out, ((pyc, result.size, path),)))
            continue
        name = pycompile.pycache_name(scan.name(module.index), cache_tag)
        if module.current is not None:
            replaced.append(Replacement(module.current, result.size,
                                        _allocated(job.out, result.size), job.out))
        elif module.pycache is not None:
            pyc = f"{paths[module.pycache]}/{name}"
            added.append(Added(pyc, result.size, _allocated(job.out, result.size), job.out,
                               ((pyc, result.size, path),)))
        else:
            parent = scan.parents[module.index]
            in_fresh.setdefault(parent, []).append(
                (f"{paths[parent]}/__pycache__/{name}", result.size, path))
    for parent, files in in_fresh.items():
        temp = str(out / fresh[parent]) if out is not None else ""
        size = sum(s for _, s, _ in files)
        allocated = 4096 + sum(_allocated(os.path.join(temp, os.path.basename(p)) if temp
                                          else "", s) for p, s, _ in files)
        added.append(Added(f"{paths[parent]}/__pycache__", 4096 + size, allocated, temp,
                           tuple(files)))
    return Outcome(NAME, removed=tuple(_roots(scan, removed, gone)), replaced=replaced,
                   added=added, problems=problems, notes=notes, kept=kept)


def _roots(scan: Scan, removed: bytearray, gone: list[int]) -> list[int]:
    """``gone`` with each ``__pycache__`` whose surviving files all go taken whole."""
    going = set(gone)
    by_dir: dict[int, list[int]] = {}
    for index in gone:
        parent = scan.parents[index]
        if scan.name(parent) == "__pycache__":
            by_dir.setdefault(parent, []).append(index)
    roots = [i for i in gone if scan.parents[i] not in by_dir]
    for directory, files in by_dir.items():
        rest = [c for c in scan.children(directory) if not removed[c] and c not in going]
        roots.extend([directory] if not rest else files)
    return sorted(roots)


def _allocated(temp: str, size: int) -> int:
    """Bytes a written file takes on disk; for a prediction, whole 4 KiB blocks."""
    if temp:
        try:
            return os.lstat(temp).st_blocks * 512
        except OSError:
            pass
    return -(-size // 4096) * 4096
