"""A package is a unit: what an imported package brings along, and what a package only
probed for loses.

A trace sees one run; production reaches other parts of the packages it imported.

- **The stdlib**: a package the workloads imported from (``multiprocessing``, ``email``,
  ``xml``, ...) keeps all of its modules, except its test suites; and the modules those
  import (``lib-dynload`` extensions, other stdlib modules) are learnt by tracing the
  env's python importing every one of them (:func:`expander`).
- **Third-party packages**: a package keeps the submodules it announces: the ones a
  module ``__getattr__`` serves for names listed in ``__all__`` or ``__dir__`` (scipy's
  and scikit-learn's submodule tables, ``lazy_loader`` stubs, ``networkx.lazy_imports``,
  numpy's ``testing``/``f2py``), and the submodules its ``__all__`` names (what
  ``from package import *`` imports). The same traced run asks the package for each,
  through its own loader, so whatever that loads stays. A private table read by
  ``importlib.import_module`` (PIL's ``_plugins``) is not followed: on the benchmark's
  service it cost 6.7 MB, mostly codecs no request used; the report names what went.
  An imported package's time zone database (``pytz/zoneinfo``, :data:`DATA_FAMILIES`)
  stays whole: which zone a request names is up to the request.
- **Optional dependencies** of what the packages announce: a package no workload
  imported, which only the expansion's imports loaded (torch's ``_inductor`` imports
  triton when it is installed), goes whole when every module the expansion imported
  imports as well without it, checked by running the expansion again as if it were not
  installed (:func:`optional`); the report names it.
- **Packages only probed** (``importlib.util.find_spec``, ``os.stat``, a metadata read)
  and never opened go whole, with their ``*.dist-info`` (:func:`probed_only`); a package
  whose distribution was used otherwise stays whole. Never half: what stays imports.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from shrinkconda.scan import DIR, Scan

SKIPPED_PARTS = frozenset({"test", "tests", "idle_test", "__main__"})
"""Module names (at any depth) never imported by the expansion nor kept whole: test
suites (``ctypes.test``, ``unittest.test``) and ``__main__`` modules, which would run."""
NOT_WHOLE = frozenset({"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
                       "pydoc_data"})
"""Stdlib packages that keep only what the workloads used: the development parts the
``dev-tools`` strategy removes, and CPython's own tests."""
ALWAYS = ("encodings",)
"""Stdlib packages expanded whatever the trace saw: the codec Python starts with follows
the locale of wherever it runs next (the CJK codecs need their ``lib-dynload`` parts)."""
DATA_FAMILIES = ("zoneinfo",)
"""Data directories an imported package keeps whole: which entry a run reads depends on
its input (``pytz/zoneinfo/Europe/Paris`` for one request, ``Asia/Tokyo`` for the next),
as the stdlib's ``encodings`` do."""
_INIT = ("__init__.py", "__init__.pyc")
_MAX_OPTIONAL = 16
"""More candidates than this for :func:`optional` and they all stay: each check is an
import of every announced submodule."""
_METADATA = (".dist-info", ".egg-info")

# Runs inside the environment's own interpreter under the trace. argv: the output file,
# the site-packages top-level names to hide (comma-separated), the stdlib packages to
# import whole, then "--", then the third-party packages the workloads imported. Writes
# the JSON list of the modules it imported on request.
_EXPANDER = """\
import importlib, io, json, pkgutil, sys, warnings
warnings.simplefilter("ignore")
out, hidden, rest = sys.argv[1], set(filter(None, sys.argv[2].split(","))), sys.argv[3:]
class Hide:
    # As if the hidden packages were not installed: import and find_spec do not find
    # them, importlib.metadata does not list their distributions.
    def __init__(self, inner):
        self.inner = inner
    def __getattr__(self, name):
        return getattr(self.inner, name)
    def find_spec(self, name, path=None, target=None):
        find = getattr(self.inner, "find_spec", None)
        if name.partition(".")[0] in hidden or find is None:
            return None
        return find(name, path, target)
    def find_distributions(self, *args, **kwargs):
        find = getattr(self.inner, "find_distributions", None)
        for dist in find(*args, **kwargs) if find is not None else ():
            tops = set((dist.read_text("top_level.txt") or "").split()) or {
                str(f).split("/")[0].split(".")[0] for f in dist.files or ()}
            if not tops & hidden:
                yield dist
if hidden:
    sys.meta_path[:] = [Hide(finder) for finder in sys.meta_path]
cut = rest.index("--")
stdlib, third = rest[:cut], rest[cut + 1:]
skipped = set(SKIPPED)
done = []
def quiet(call, *args):
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = io.StringIO()
    try:
        return call(*args)
    except BaseException:
        return None
    finally:
        sys.stdout, sys.stderr = saved
def wanted(name):
    return not skipped.intersection(name.split("."))
def whole(name):
    # Not pkgutil.walk_packages: it imports every package it finds, test suites too.
    package = quiet(importlib.import_module, name)
    if package is None:
        return
    done.append(name)
    for found in quiet(lambda: list(pkgutil.iter_modules(package.__path__))) or []:
        sub = name + "." + found.name
        if not wanted(sub):
            continue
        if found.ispkg:
            whole(sub)
        elif quiet(importlib.import_module, sub) is not None:
            done.append(sub)
for name in stdlib:
    whole(name)
tops = {n.split(".")[0] for n in third}
for name in third:
    quiet(importlib.import_module, name)
asked = set()
for _ in range(20):
    fresh = [m for n, m in list(sys.modules.items()) if n.split(".")[0] in tops
             and n not in asked and hasattr(m, "__path__")]
    if not fresh:
        break
    for module in fresh:
        asked.add(module.__name__)
        own = vars(module)
        names = set()
        subs = quiet(lambda: {m.name for m in pkgutil.iter_modules(module.__path__)}) or set()
        listed = own.get("__all__")
        if isinstance(listed, (list, tuple, set, frozenset)):
            # The submodules "from package import *" imports.
            names.update(n for n in listed if isinstance(n, str) and n in subs)
        if "__getattr__" in own:
            for listed in (listed, quiet(own["__dir__"]) if "__dir__" in own else None):
                if isinstance(listed, (list, tuple, set, frozenset)):
                    names.update(n for n in listed if isinstance(n, str) and n not in own)
        for attr in sorted(names):
            if attr.startswith("_") or not wanted(attr):
                continue
            sub = module.__name__ + "." + attr
            if attr in own or quiet(getattr, module, attr) is None or sub not in sys.modules:
                quiet(importlib.import_module, sub)
            if sub in sys.modules:
                done.append(sub)
with open(out, "w") as f:
    json.dump(done, f)
""".replace("set(SKIPPED)", repr(set(SKIPPED_PARTS)))


def imported_packages(usage_opened: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(stdlib, third_party)``: the stdlib's top-level packages the workloads opened
    a file of (those of :data:`NOT_WHOLE` aside, :data:`ALWAYS` added), and the
    site-packages packages (dotted) whose ``__init__`` they loaded."""
    stdlib: set[str] = set(ALWAYS)
    third: set[str] = set()
    for path in usage_opened:
        parts = path.split("/")
        if len(parts) < 4 or parts[0] != "lib" or not parts[1].startswith("python") \
                or not parts[-1].endswith((".py", ".pyc", ".so")):
            continue  # a directory listed (pkgutil, find_spec) is not a module loaded
        if parts[2] == "site-packages":
            dotted = _init_package(parts[3:])
            if dotted:
                third.add(dotted)
        elif parts[2] != "lib-dynload" and parts[2].isidentifier() \
                and parts[2] not in NOT_WHOLE:
            stdlib.add(parts[2])
    return sorted(stdlib), sorted(third)


def _init_package(parts: list[str]) -> str | None:
    """``scipy.stats`` for ``scipy/stats/__init__.py`` (or its ``__pycache__`` file)."""
    if parts[-1].startswith("__init__.") and parts[-1].endswith((".py", ".pyc", ".so")):
        names = parts[:-2] if len(parts) > 1 and parts[-2] == "__pycache__" else parts[:-1]
        if names and all(n.isidentifier() for n in names):
            return ".".join(names)
    return None


def expander(python: Path, workdir: Path, stdlib: Iterable[str], third: Iterable[str],
             hidden: Iterable[str] = ()) -> tuple[list[str], Path]:
    """The command that imports what :func:`imported_packages` found, whole or lazily
    (traced, so what it loads stays), as if the site-packages packages ``hidden`` were
    not installed, and where it writes the modules it imported."""
    out = workdir / "expanded.json"
    return [str(python), "-I", "-B", "-c", _EXPANDER, str(out), ",".join(sorted(hidden)),
            *stdlib, "--", *third], out


def only_expanded(expansion_opened: Iterable[str], workloads_opened: Iterable[str]
                  ) -> frozenset[str]:
    """The site-packages top-level modules whose code the expansion loaded and no
    workload did: the optional dependencies of what the packages announce (torch's
    ``_inductor`` imports triton when it is there)."""
    return _loaded_tops(expansion_opened) - _loaded_tops(workloads_opened)


def _loaded_tops(opened: Iterable[str]) -> frozenset[str]:
    tops = set()
    for path in opened:
        parts = path.split("/")
        if len(parts) >= 4 and parts[0] == "lib" and parts[2] == "site-packages" \
                and parts[-1].endswith((".py", ".pyc", ".so")):
            top = parts[3].split(".", 1)[0] if len(parts) == 4 else parts[3]
            if top.isidentifier():
                tops.add(top)
    return frozenset(tops)


def optional(python: Path, workdir: Path, stdlib: Sequence[str], third: Sequence[str],
             expanded: frozenset[str], candidates: Iterable[str], timeout: float,
             env: Mapping[str, str] | None = None) -> frozenset[str]:
    """Of ``candidates`` (:func:`only_expanded`), those without which every module the
    expansion imported (``expanded``, its own aside) still imports: all of them if they
    can go together, else each one that can go alone, checked together once more. Each
    check runs the expansion untraced, in ``env`` (the traced runs' environment)."""
    pending = sorted(candidates)

    def without(hidden: Sequence[str]) -> bool:
        argv, out = expander(python, workdir, stdlib, third, hidden)
        out.unlink(missing_ok=True)
        try:
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=timeout, check=False,
                           env=None if env is None else dict(env))
        except subprocess.TimeoutExpired:
            return False
        gone = set(hidden)
        wanted = {m for m in expanded if m.split(".")[0] not in gone}
        return wanted <= read_expanded(out)

    if not pending or len(pending) > _MAX_OPTIONAL:
        return frozenset()
    if without(pending):
        return frozenset(pending)
    alone = [name for name in pending if without([name])]
    if len(alone) > 1 and not without(alone):
        return frozenset()
    return frozenset(alone)


def read_expanded(out: Path) -> frozenset[str]:
    """The modules :func:`expander`'s run imported on request."""
    try:
        found = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return frozenset()
    return frozenset(n for n in found if isinstance(n, str)) if isinstance(found, list) \
        else frozenset()


def whole(scan: Scan, stdlib: Iterable[str]) -> Iterator[int]:
    """The entries of the stdlib packages in ``stdlib`` (:func:`imported_packages`),
    but not their test suites: they stay whatever the trace saw."""
    for lib in stdlib_dirs(scan):
        for name in stdlib:
            top = scan.find(f"{scan.paths[lib]}/{name}")
            if top is None or scan.kinds[top] != DIR:
                continue
            index = top
            while index < scan.ends[top]:
                if scan.name(index) in SKIPPED_PARTS and scan.kinds[index] == DIR:
                    index = scan.ends[index]
                    continue
                yield index
                index += 1


def families(scan: Scan, third: Iterable[str]) -> Iterator[int]:
    """The :data:`DATA_FAMILIES` directories of the imported site-packages packages
    ``third`` (dotted, :func:`imported_packages`): they stay whole."""
    for lib in stdlib_dirs(scan):
        for name in third:
            for family in DATA_FAMILIES:
                found = scan.find(f"{scan.paths[lib]}/site-packages/{name.replace('.', '/')}"
                                  f"/{family}")
                if found is not None and scan.kinds[found] == DIR:
                    yield found


def probed_only(scan: Scan, used: bytearray, opened: bytearray) -> tuple[list[int], list[int]]:
    """Python packages (directories with an ``__init__``) in ``lib/pythonX.Y`` that the
    workloads looked at (``used``) but opened nothing in: ``(to_drop, to_keep)``, the
    packages that go whole (unless their distribution was used otherwise: then they
    stay whole, in ``to_keep``), and with the dropped top-level ones, their metadata
    directories, so that their distributions go whole too."""
    # A file opened, or a directory holding one; a directory opened to list it
    # (pkgutil.iter_modules, a FileFinder) opens nothing of the package.
    holds = bytearray(o if scan.kinds[i] != DIR else 0 for i, o in enumerate(opened))
    for index in range(len(scan) - 1, 0, -1):
        if holds[index]:
            holds[scan.parents[index]] = 1
    owners = scan.owners
    users = {owners[i] for i in range(len(scan)) if holds[i] and owners[i] >= 0
             and scan.kinds[i] != DIR
             and not any(part.endswith(_METADATA) for part in scan.paths[i].split("/"))}
    drop: list[int] = []
    keep: list[int] = []
    for lib in stdlib_dirs(scan):
        site = scan.find(f"{scan.paths[lib]}/site-packages")
        index = lib + 1
        while index < scan.ends[lib]:
            end = scan.ends[index]
            if scan.kinds[index] == DIR and not holds[index] and any(used[index:end]) \
                    and is_package(scan, index):
                if site is not None and scan.parents[index] == site:
                    drop_top, keep_top = _top_level(scan, index, site, users)
                    drop += drop_top
                    keep += keep_top
                else:
                    drop.append(index)
                index = end
                continue
            index += 1
    return drop, keep


def _top_level(scan: Scan, package: int, site: int, users: set[int]
               ) -> tuple[list[int], list[int]]:
    """A top-level package only probed: with its distribution's metadata if nothing
    else of the distribution was opened (``users``: the conda packages something of
    which was opened); kept whole otherwise."""
    if scan.owners[package] in users:
        return [], [package]
    return [package, *_metadata_of(scan, package, site)], []


def _metadata_of(scan: Scan, package: int, site: int) -> Iterator[int]:
    """The ``*.dist-info``/``*.egg-info`` beside ``package`` of its distribution: the
    same conda package's, or (installed by pip) one whose ``RECORD`` or
    ``top_level.txt`` names it."""
    owner = scan.owners[package]
    name = scan.name(package)
    for child in scan.children(site):
        if not scan.name(child).endswith(_METADATA):
            continue
        if owner >= 0:
            if scan.owners[child] == owner:
                yield child
            continue
        if scan.owners[child] < 0 and name in _listed_tops(scan.prefix / scan.paths[child]):
            yield child


def _listed_tops(metadata: Path) -> set[str]:
    for listing, first in (("top_level.txt", False), ("RECORD", True)):
        try:
            text = (metadata / listing).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        lines = text.splitlines()
        return {line.split(",", 1)[0].split("/", 1)[0] if first else line.strip()
                for line in lines}
    return set()


def is_package(scan: Scan, index: int) -> bool:
    """Whether the directory at ``index`` holds an ``__init__`` module."""
    return any(scan.name(child) in _INIT or (scan.name(child).startswith("__init__.")
                                             and scan.name(child).endswith(".so"))
               for child in scan.children(index))


def stdlib_dirs(scan: Scan) -> Iterator[int]:
    """The ``lib/pythonX.Y`` directories."""
    lib = scan.find("lib")
    if lib is None:
        return
    for child in scan.children(lib):
        if scan.name(child).startswith("python") and scan.kinds[child] == DIR:
            yield child


def module_name(scan: Scan, index: int) -> str | None:
    """The module name of the entry at ``index`` (a package directory, a ``.py``, a
    sourceless ``.pyc``, an extension module), or ``None``."""
    name = scan.name(index)
    if scan.kinds[index] == DIR:
        return name if name.isidentifier() and is_package(scan, index) else None
    if name.endswith((".py", ".pyc", ".so")):
        stem = name.split(".", 1)[0]
        return stem if stem.isidentifier() else None
    return None


def describe(names: Iterable[str], shown: int = 8) -> str:
    """``a, b, c and 4 more`` for a note."""
    ordered = sorted(names)
    listed = ", ".join(ordered[:shown])
    return listed + (f" and {len(ordered) - shown} more" if len(ordered) > shown else "")

