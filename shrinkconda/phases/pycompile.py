"""The environment's own python, asked what it is and made to compile modules.

Bytecode is only ever compiled by the prefix's interpreter: a ``.pyc`` carries the magic
number of one Python X.Y, and the python running shrinkconda may be another one.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from shrinkconda import verify
from shrinkconda.errors import ShrinkError

SOURCELESS = "sourceless"
"""A legacy ``m.pyc`` where ``m.py`` was: the module itself, without its source."""
UNCHECKED = "unchecked"
"""A PEP 552 unchecked-hash ``__pycache__`` file: valid whatever the source's mtime."""

_PROBE = ("import importlib.util, json, sys; print(json.dumps(["
          "'%d.%d' % sys.version_info[:2], sys.implementation.cache_tag, "
          "importlib.util.MAGIC_NUMBER.hex()]))")

# Runs inside the environment's python (3.9 or newer): one JSON job per line on stdin,
# one JSON answer per line on stdout. A pyc that is already an unchecked-hash file of
# this source is left alone (size 0, "ok").
_COMPILER = r"""
import importlib.util, json, os, sys
from importlib._bootstrap_external import _code_to_hash_pyc, _code_to_timestamp_pyc
MAGIC = importlib.util.MAGIC_NUMBER
for line in sys.stdin:
    n, source, dfile, existing, out, form = json.loads(line)
    try:
        with open(source, "rb") as f:
            data = f.read()
        if form == "unchecked":
            digest = importlib.util.source_hash(data)
            if existing:
                try:
                    with open(existing, "rb") as f:
                        head = f.read(16)
                except OSError:
                    head = b""
                if head[:4] == MAGIC and head[4:8] == b"\x01\0\0\0" and head[8:16] == digest:
                    print(json.dumps([n, 0, None, True]), flush=True)
                    continue
        code = compile(data, dfile, "exec", dont_inherit=True)
        if form == "unchecked":
            pyc = _code_to_hash_pyc(code, digest, False)
        else:
            st = os.stat(source)
            pyc = _code_to_timestamp_pyc(code, int(st.st_mtime), st.st_size)
        if out:
            with open(out, "wb") as f:
                f.write(pyc)
        print(json.dumps([n, len(pyc), None, False]), flush=True)
    except Exception as exc:
        message = (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:300]
        print(json.dumps([n, 0, message, False]), flush=True)
"""


class PythonCodeError(ShrinkError):
    """The environment's python cannot run or cannot compile: nothing was changed."""


@dataclass(frozen=True)
class Interpreter:
    """The prefix's python, as it describes itself."""

    path: Path
    version: str
    """``3.11``: its tree is ``lib/python3.11``."""
    cache_tag: str
    """``cpython-311``: the middle of its ``__pycache__`` file names."""
    magic: str
    """Its bytecode magic number, in hex."""


@dataclass(frozen=True)
class Job:
    """One module to compile."""

    source: str
    """Absolute path of the ``.py``."""
    dfile: str
    """The path tracebacks will name (where the ``.py`` is, in the prefix)."""
    form: str
    """:data:`SOURCELESS` or :data:`UNCHECKED`."""
    existing: str = ""
    """An unchecked ``.pyc`` already there, that may already be right."""
    out: str = ""
    """Where to write the ``.pyc``; "" only measures it."""


@dataclass(frozen=True)
class Compiled:
    """What compiling one :class:`Job` gave."""

    size: int
    """Bytes of the ``.pyc`` (0 when it was already right, or on error)."""
    error: str | None = None
    current: bool = False
    """The existing ``.pyc`` was already an unchecked-hash file of this source."""


def probe(prefix: Path) -> Interpreter:
    """The prefix's python, or :class:`PythonCodeError` when it has none or it fails."""
    python = verify.python_of(prefix)
    if python is None:
        raise PythonCodeError(f"{prefix} has no bin/python to compile its modules with; "
                              "use --python-code source")
    try:
        run = subprocess.run([str(python), "-I", "-B", "-c", _PROBE], capture_output=True,
                             text=True, check=False, timeout=60, stdin=subprocess.DEVNULL)
        version, tag, magic = json.loads(run.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        why = (run.stderr.strip().splitlines() or [""])[-1] if "run" in locals() else str(exc)
        raise PythonCodeError(f"{python} does not run ({why or exc}); nothing was changed; "
                              "use --python-code source") from None
    if not tag:
        raise PythonCodeError(f"{python} cannot write bytecode (it has no cache tag); "
                              "use --python-code source")
    return Interpreter(python, version, tag, magic)


def compile_all(python: Interpreter, jobs: Sequence[Job], workers: int = 2,
                progress: Callable[[int], None] | None = None) -> list[Compiled]:
    """Compile ``jobs`` with the prefix's python in ``workers`` processes, without debug
    ranges (``-X no_debug_ranges``: 6-8 % smaller; tracebacks lose their carets)."""
    results: list[Compiled | None] = [None] * len(jobs)
    failures: list[str] = []
    workers = max(1, min(workers, len(jobs)))
    threads = [threading.Thread(target=_compile_part,
                                args=(python, jobs, range(w, len(jobs), workers), results,
                                      failures, progress))
               for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise PythonCodeError(f"{python.path} could not compile modules ({failures[0]}); "
                              "nothing was changed; use --python-code source")
    return [r if r is not None else Compiled(0, "not compiled") for r in results]


def _compile_part(python: Interpreter, jobs: Sequence[Job], part: range,
                  results: list[Compiled | None], failures: list[str],
                  progress: Callable[[int], None] | None) -> None:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONNODEBUGRANGES": "1"}
    try:
        proc = subprocess.Popen(
            [str(python.path), "-I", "-B", "-X", "no_debug_ranges", "-c", _COMPILER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, cwd="/")
    except OSError as exc:
        failures.append(str(exc))
        return
    assert proc.stdin is not None and proc.stdout is not None

    def feed() -> None:
        assert proc.stdin is not None
        try:
            for n in part:
                job = jobs[n]
                proc.stdin.write(json.dumps([n, job.source, job.dfile, job.existing, job.out,
                                             job.form]) + "\n")
            proc.stdin.close()
        except OSError:
            pass  # the interpreter died: the missing answers say so

    feeder = threading.Thread(target=feed)
    feeder.start()
    for line in proc.stdout:
        try:
            n, size, error, current = json.loads(line)
        except ValueError:
            continue
        results[n] = Compiled(size, error, current)
        if progress is not None:
            progress(1)
    feeder.join()
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    if proc.wait() != 0 or any(results[n] is None for n in part):
        failures.append((stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1])


def pycache_name(module_file: str, cache_tag: str) -> str:
    """``m.py`` -> ``m.cpython-311.pyc``, the name of its file in ``__pycache__``."""
    return f"{os.path.splitext(module_file)[0]}.{cache_tag}.pyc"
