"""The environment's own python, asked what it is and made to compile modules.

Bytecode is only ever compiled by the prefix's interpreter: a ``.pyc`` carries the magic
number of one Python X.Y, and the python running shrinkconda may be another one.
"""

from __future__ import annotations

import marshal
import os
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from shrinkconda import verify
from shrinkconda.errors import ShrinkError
from shrinkconda.transaction import faults, testhooks

SOURCELESS = "sourceless"
"""A legacy ``m.pyc`` where ``m.py`` was: the module itself, without its source."""
UNCHECKED = "unchecked"
"""A PEP 552 unchecked-hash ``__pycache__`` file: valid whatever the source's mtime."""

# The probe and the compiler run inside the environment's python (3.9 or newer) and use
# only what it has built in or frozen: after a --used-by shrink, its stdlib holds only what
# the workloads loaded, and json or importlib.util may be gone.
# abiflags: a free-threaded 3.13's tree is lib/python3.13t; "-" stands for none.
_PROBE = ("import sys, _frozen_importlib_external as e; "
          "print('%d.%d' % sys.version_info[:2], sys.implementation.cache_tag, "
          "e.MAGIC_NUMBER.hex(), getattr(sys, 'abiflags', '') or '-')")

# Jobs arrive on stdin and answers leave on stdout as marshal-encoded tuples, each after
# its length in 4 bytes. A pyc that is already an unchecked-hash file of its source is
# left alone (size 0, current). A failed read or write answers with its errno and path:
# the filesystem's fault, not the module's.
_COMPILER = r"""
import _imp, marshal, os, sys
import _frozen_importlib_external as e
MAGIC = e.MAGIC_NUMBER
read, write = sys.stdin.buffer.read, sys.stdout.buffer.write
def answer(*values):
    blob = marshal.dumps(values, 2)
    write(len(blob).to_bytes(4, "little") + blob)
    sys.stdout.buffer.flush()
while True:
    size = read(4)
    if len(size) < 4:
        break
    n, source, dfile, existing, out, form = marshal.loads(read(int.from_bytes(size, "little")))
    path = source  # what a failed read() or write(), which names no file, was about
    try:
        with open(source, "rb") as f:
            data = f.read()
        if form == "unchecked":
            digest = _imp.source_hash(e._RAW_MAGIC_NUMBER, data)
            if existing:
                try:
                    with open(existing, "rb") as f:
                        head = f.read(16)
                except OSError:
                    head = b""
                if head[:4] == MAGIC and head[4:8] == b"\x01\0\0\0" and head[8:16] == digest:
                    answer(n, 0, None, True, 0, b"")
                    continue
        code = compile(data, os.fsdecode(dfile), "exec", dont_inherit=True)
        if form == "unchecked":
            pyc = e._code_to_hash_pyc(code, digest, False)
        else:
            st = os.stat(source)
            pyc = e._code_to_timestamp_pyc(code, int(st.st_mtime), st.st_size)
        if out:
            path = out
            with open(out, "wb") as f:
                f.write(pyc)
        answer(n, len(pyc), None, False, 0, b"")
    except OSError as exc:
        where = exc.filename if isinstance(exc.filename, (str, bytes)) else path
        answer(n, 0, (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:300], False,
               exc.errno or 0, os.fsencode(where))
    except Exception as exc:
        answer(n, 0, (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:300], False,
               0, b"")
"""


class PythonCodeError(ShrinkError):
    """The environment's python cannot run or cannot compile: nothing was changed."""


@dataclass(frozen=True)
class Interpreter:
    """The prefix's python, as it describes itself."""

    path: Path
    version: str
    """``3.11``."""
    cache_tag: str
    """``cpython-311``: the middle of its ``__pycache__`` file names (``cpython-313``
    for a free-threaded 3.13 too)."""
    magic: str
    """Its bytecode magic number, in hex."""
    abiflags: str = ""
    """``t`` for a free-threaded build."""

    @property
    def tree(self) -> str:
        """``lib/python3.11``; ``lib/python3.13t`` for a free-threaded 3.13."""
        return f"lib/python{self.version}{self.abiflags}"


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
        version, tag, magic, abiflags = run.stdout.strip().splitlines()[-1].split()
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        why = (run.stderr.strip().splitlines() or [""])[-1] if "run" in locals() else str(exc)
        raise PythonCodeError(f"{python} does not run ({why or exc}); nothing was changed; "
                              "use --python-code source") from None
    if not tag:
        raise PythonCodeError(f"{python} cannot write bytecode (it has no cache tag); "
                              "use --python-code source")
    return Interpreter(python, version, tag, magic, abiflags.strip("-"))


def compile_all(python: Interpreter, jobs: Sequence[Job], workers: int = 2,
                progress: Callable[[int], None] | None = None) -> list[Compiled]:
    """Compile ``jobs`` with the prefix's python in ``workers`` processes, without debug
    ranges (``-X no_debug_ranges``: 6-8 % smaller; tracebacks lose their carets).

    A module that does not compile gets its error in its :class:`Compiled`; a read or
    write the filesystem fails as a whole (:data:`~shrinkconda.transaction.faults.FATAL`:
    full, read-only, I/O error) raises that :class:`OSError` instead, for the shrink to be
    undone like any other fault rather than half converted."""
    results: list[Compiled | None] = [None] * len(jobs)
    failures: list[str] = []
    faulted: list[OSError] = []
    workers = max(1, min(workers, len(jobs)))
    first = threading.Lock()  # held by the thread that got the first answer, for good

    def answered(n: int) -> None:
        if first.acquire(blocking=False) and jobs[n].out:
            testhooks.reached("python-code")  # one module written, the rest under way
        if progress is not None:
            progress(1)

    threads = [threading.Thread(target=_compile_part,
                                args=(python, jobs, range(w, len(jobs), workers), results,
                                      failures, faulted, answered))
               for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if faulted:
        raise faulted[0]
    if failures:
        raise PythonCodeError(f"{python.path} could not compile modules ({failures[0]}); "
                              "nothing was changed; use --python-code source")
    return [r if r is not None else Compiled(0, "not compiled") for r in results]


def _compile_part(python: Interpreter, jobs: Sequence[Job], part: range,
                  results: list[Compiled | None], failures: list[str],
                  faulted: list[OSError], answered: Callable[[int], None]) -> None:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONNODEBUGRANGES": "1"}
    try:
        proc = subprocess.Popen(
            [str(python.path), "-I", "-B", "-X", "no_debug_ranges", "-c", _COMPILER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd="/")
    except OSError as exc:
        failures.append(str(exc))
        return
    assert proc.stdin is not None and proc.stdout is not None

    def feed() -> None:
        assert proc.stdin is not None
        try:
            for n in part:
                job = jobs[n]
                blob = marshal.dumps((n, os.fsencode(job.source), os.fsencode(job.dfile),
                                      os.fsencode(job.existing), os.fsencode(job.out),
                                      job.form), 2)
                proc.stdin.write(len(blob).to_bytes(4, "little") + blob)
            proc.stdin.close()
        except OSError:
            pass  # the interpreter died: the missing answers say so

    feeder = threading.Thread(target=feed)
    feeder.start()
    while True:
        head = proc.stdout.read(4)
        if len(head) < 4:
            break
        try:
            n, size, error, current, code, where = marshal.loads(
                proc.stdout.read(int.from_bytes(head, "little")))
        except (EOFError, ValueError, TypeError):
            break
        if code in faults.FATAL:
            faulted.append(OSError(code, os.strerror(code), os.fsdecode(where)))
        results[n] = Compiled(size, error, current)
        answered(n)
    feeder.join()
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr is not None else ""
    if proc.wait() != 0 or any(results[n] is None for n in part):
        failures.append((stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1])


def pycache_name(module_file: str, cache_tag: str) -> str:
    """``m.py`` -> ``m.cpython-311.pyc``, the name of its file in ``__pycache__``."""
    return f"{os.path.splitext(module_file)[0]}.{cache_tag}.pyc"
