"""Check that a shrink broke nothing: what imported before must import after."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from shrinkconda.render.report import Broken
from shrinkconda.transaction import interrupt, journal

# Runs inside the environment's own interpreter: one JSON line before and after each
# import, so a crash (segfault, os._exit) still tells which module caused it.
_IMPORTER = """\
import json, sys
for name in sys.argv[1:]:
    print(json.dumps(["start", name]), flush=True)
    try:
        __import__(name)
    except BaseException as exc:
        message = (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:500]
        print(json.dumps(["error", name, message]), flush=True)
    else:
        print(json.dumps(["ok", name]), flush=True)
"""

IMPORTER_ARGS = ("-I", "-B", "-c", _IMPORTER)
"""How the checks run the importer (before the shrink; after it, ``-B`` gives way to a
bytecode cache outside the prefix)."""

TIMEOUT = 300.0
"""Seconds one importing interpreter may run before its current module counts as hung."""


def python_of(prefix: Path) -> Path | None:
    """The environment's own interpreter, if it has one."""
    for name in ("python", "python3"):
        candidate = prefix / "bin" / name
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def top_level_modules(prefix: Path) -> list[str]:
    """Every top-level module of every installed distribution (``top_level.txt``,
    else the first component of the importable paths in ``RECORD``)."""
    names: set[str] = set()
    for dist_info in sorted(prefix.glob("lib/python*/site-packages/*.dist-info")):
        top_level = dist_info / "top_level.txt"
        if top_level.is_file():
            names.update(line.strip().replace("/", ".") for line in
                         top_level.read_text(errors="replace").splitlines())
        elif (dist_info / "RECORD").is_file():
            names.update(_from_record((dist_info / "RECORD").read_text(errors="replace")))
    return sorted(n for n in names if n and all(p.isidentifier() for p in n.split(".")))


def _from_record(text: str) -> Iterable[str]:
    for line in text.splitlines():
        path = line.split(",", 1)[0]
        first = path.split("/", 1)[0]
        if not first or first.startswith("..") or first.endswith((".dist-info", ".data")):
            continue
        if "/" in path:
            if path.endswith(".py") or ".so" in path:
                yield first
        elif path.endswith(".py"):
            yield first[:-3]
        elif path.endswith(".so"):
            yield first.split(".", 1)[0]


class ImportCheck:
    """The environment's own Python importing modules, before and after a shrink.

    The pass before reads the prefix's own bytecode and writes none (``-B``). The pass
    after writes bytecode to a cache outside the prefix (``-X pycache_prefix``), seeded
    with the ``__pycache__`` directories the shrink staged, so it need not recompile
    what the bytecode strategy removed (that made it 2.5 times slower).
    """

    def __init__(self, prefix: Path, jobs: int = 2) -> None:
        self.prefix = prefix
        self.jobs = max(1, jobs)
        self._workdir = tempfile.mkdtemp(prefix="shrinkconda-verify-")
        self._cache = os.path.join(self._workdir, "pycache")

    def __enter__(self) -> ImportCheck:  # noqa: PYI034 (typing.Self needs 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self._workdir, ignore_errors=True)

    def reuse_bytecode(self, staged: Path, source_dir: Path) -> None:
        """Offer the bytecode of a staged ``__pycache__`` to the pass after the shrink."""
        mirror = Path(self._cache + str(source_dir.resolve()))
        mirror.mkdir(parents=True, exist_ok=True)
        for name in os.listdir(staged):
            try:
                os.link(staged / name, mirror / name)
            except OSError:
                shutil.copyfile(staged / name, mirror / name)

    def failing(self, modules: Sequence[str], after: bool = False,
                bytecode_in_place: bool = False) -> dict[str, str]:
        """Import each module; return ``{module: error}`` for those that fail.

        After a shrink that left valid bytecode in place (``--python-code bytecode`` or
        ``both``), that bytecode is what is checked, without writing any; otherwise the
        pass writes what it compiles to a cache outside the prefix.

        Modules are split over ``jobs`` interpreters; when one crashes, the module it
        was importing is charged with the crash and a fresh interpreter takes the rest.
        """
        python = python_of(self.prefix)
        if python is None or not modules:
            return {}
        home = self._workdir
        env = {"PATH": f"{self.prefix / 'bin'}:/usr/bin:/bin", "HOME": home,
               "LANG": "C.UTF-8", "CONDA_PREFIX": str(self.prefix), "MPLBACKEND": "Agg"}
        cache = ["-X", f"pycache_prefix={self._cache}"] if after and not bytecode_in_place \
            else ["-B"]
        command = [str(python), "-I", *cache, "-c", _IMPORTER]
        failures: dict[str, str] = {}
        threads = [threading.Thread(target=_import_all,
                                    args=(command, list(modules[i::self.jobs]), env, home,
                                          failures))
                   for i in range(self.jobs) if modules[i::self.jobs]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return failures


def _import_all(command: list[str], modules: list[str], env: dict[str, str], cwd: str,
                failures: dict[str, str]) -> None:
    remaining = list(modules)
    while remaining and not interrupt.requested():  # the signal killed the interpreter
        # -I: ignore PYTHON* variables and user site. No bytecode into the prefix: it
        # would undo the bytecode strategy and change the numbers.
        proc = subprocess.Popen([*command, *remaining],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd, text=True)
        timer = threading.Timer(TIMEOUT, proc.kill)
        timer.start()
        current = None
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a module printed something of its own
            if not isinstance(event, list) or len(event) < 2:
                continue
            if event[0] == "start":
                current = event[1]
                continue
            if event[0] == "error":
                failures[event[1]] = event[2]
            remaining.remove(event[1])
            current = None
        code = proc.wait()
        timer.cancel()
        if current is None:
            break
        failures[current] = (f"import hung (killed after {TIMEOUT:.0f}s)" if code == -9
                             else f"the interpreter crashed (exit status {code})")
        remaining.remove(current)


def failing_commands(prefix: Path, commands: Sequence[str],
                     timeout: float = TIMEOUT) -> dict[str, str]:
    """Run each user command with the prefix's ``bin/`` first on ``PATH``."""
    # No bytecode: a command that runs the env's python must not refill __pycache__.
    env = {**os.environ, "PATH": f"{prefix / 'bin'}:{os.environ.get('PATH', '')}",
           "CONDA_PREFIX": str(prefix), "PYTHONDONTWRITEBYTECODE": "1"}
    failures = {}
    for command in commands:
        try:
            run = subprocess.run(command, check=False, shell=True, env=env, capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            failures[command] = f"timed out after {timeout:.0f}s"
            continue
        if run.returncode:
            tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or [""]
            failures[command] = f"exit status {run.returncode}: {tail[0][:500]}"
    return failures


def importable(imports: ImportCheck, wanted: bool = True, modules: list[str] | None = None
               ) -> tuple[list[str], tuple[str, ...]]:
    """The modules that import before the shrink (default: every distribution's
    top-level modules): the ones it must keep; none unless ``wanted``. Also a note when
    there is no interpreter to ask."""
    if not wanted:
        return [], ()
    if python_of(imports.prefix) is None:
        return [], ("the prefix has no bin/python: imports were not verified",)
    if modules is None:
        modules = top_level_modules(imports.prefix)
    failing = imports.failing(modules)
    return [m for m in modules if m not in failing], ()


def reuse_staged_bytecode(imports: ImportCheck, staging: Path,
                          steps: Iterable[journal.Step]) -> None:
    """Offer the staged ``__pycache__`` directories to the pass after the shrink."""
    for step in steps:
        staged = staging / step.staged
        if step.path.endswith("/__pycache__") and step.staged and staged.is_dir():
            imports.reuse_bytecode(staged, imports.prefix / os.path.dirname(step.path))


def broken(imports: ImportCheck, modules: list[str], distributed: set[str],
           commands: Sequence[str], timeout: float, bytecode_in_place: bool = False
           ) -> tuple[Broken, ...]:
    """What the shrink broke: ``modules`` (those that imported before) that no longer
    import, and ``commands`` that no longer exit 0 within ``timeout`` (at least
    :data:`TIMEOUT`). ``distributed`` are the top-level modules before the shrink."""
    # A distribution removed whole (dev-tools, --used-by) took its metadata along: its
    # modules are meant to be gone. Every other module that imported before (stdlib ones
    # included) must still import.
    gone = distributed - set(top_level_modules(imports.prefix))
    failing = imports.failing([m for m in modules if m.partition(".")[0] not in gone],
                              after=True, bytecode_in_place=bytecode_in_place)
    failed = failing_commands(imports.prefix, commands, max(TIMEOUT, timeout))
    return tuple([Broken(m, "import", e) for m, e in sorted(failing.items())]
                 + [Broken(c, "command", e) for c, e in failed.items()])
