"""Check that a shrink broke nothing: what imported before must import after."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

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


def failing_imports(prefix: Path, modules: Sequence[str], jobs: int = 2) -> dict[str, str]:
    """Import each module with the prefix's Python; return ``{module: error}``.

    Modules are split over ``jobs`` interpreters; when one crashes, the module it was
    importing is charged with the crash and a fresh interpreter takes the rest.
    """
    python = python_of(prefix)
    if python is None or not modules:
        return {}
    chunks = [list(modules[i::jobs]) for i in range(max(1, jobs))]
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="shrinkconda-verify-") as home:
        env = {"PATH": f"{prefix / 'bin'}:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8",
               "CONDA_PREFIX": str(prefix), "MPLBACKEND": "Agg"}
        threads = [threading.Thread(target=_import_all, args=(python, c, env, home, failures))
                   for c in chunks if c]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return failures


def _import_all(python: Path, modules: list[str], env: dict[str, str], cwd: str,
                failures: dict[str, str]) -> None:
    remaining = list(modules)
    while remaining:
        # -I: ignore PYTHON* variables and user site; -B: write no bytecode into the
        # prefix (that would undo the bytecode strategy and change the numbers).
        proc = subprocess.Popen([str(python), "-I", "-B", "-c", _IMPORTER, *remaining],
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


def failing_commands(prefix: Path, commands: Sequence[str]) -> dict[str, str]:
    """Run each user command with the prefix's ``bin/`` first on ``PATH``."""
    # No bytecode: a command that runs the env's python must not refill __pycache__.
    env = {**os.environ, "PATH": f"{prefix / 'bin'}:{os.environ.get('PATH', '')}",
           "CONDA_PREFIX": str(prefix), "PYTHONDONTWRITEBYTECODE": "1"}
    failures = {}
    for command in commands:
        try:
            run = subprocess.run(command, check=False, shell=True, env=env, capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            failures[command] = f"timed out after {TIMEOUT:.0f}s"
            continue
        if run.returncode:
            tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or [""]
            failures[command] = f"exit status {run.returncode}: {tail[0][:500]}"
    return failures
