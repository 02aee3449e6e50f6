"""Run the user's workloads under ``strace -f`` and learn which prefix paths they used.

ptrace sees every process the workload starts (fork, vfork, clone, threads, execve)
and every file syscall, whoever makes it: Python's imports, the dynamic loader mapping
NEEDED libraries, ``dlopen`` by path, data files opened by native code. Only calls
that succeeded count: the loader's failed RUNPATH probes keep nothing. Each path is
resolved component by component afterwards, so the symlinks on the way
(``libfoo.so.3`` -> ``libfoo.so.3.1.0``) are used too.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Optional

from shrinkconda.errors import StraceMissing, TraceIncomplete, WorkloadError

TIMEOUT = 600.0
"""Seconds a ``--used-by`` command may run (with everything it starts) by default."""

Output = Optional[Callable[[bytes], None]]
"""Where a workload's stdout and stderr go as they arrive (the CLI: stderr); ``None``
discards them."""

#: File syscalls (paths), process syscalls (to see every child), fchdir,
#: open_by_handle_at (no path, but -y names the file it returns), and io_uring, whose
#: opens bypass syscalls: its use means the trace cannot be complete.
_SYSCALLS = "%file,%process,fchdir,open_by_handle_at,io_uring_setup"
_SECCOMP_SINCE = (5, 3)
"""strace versions before this lack ``--seccomp-bpf`` (it only makes tracing faster)."""
FLAGS = ("-f", "-y", "-xx", "--seccomp-bpf", "-e", f"trace={_SYSCALLS}")
"""Follow every process; decode fds to paths (AT_FDCWD too: each process' cwd); strings
hex-escaped, so any byte in a name survives. strace never shortens a path (``-s``
applies to other strings only)."""
_TAIL = 20
"""Lines of a failing workload's output (stdout and stderr) kept for the error message."""

_LINE = re.compile(r"^(\d+) +(.*)$")
_CALL = re.compile(r"^([a-z0-9_]+)\((.*)\) += (-?\d+|\?)(?:<((?:\\x[0-9a-f]{2})*)>)?")
_RESUMED = re.compile(r"^<\.\.\. [a-z0-9_]+ resumed>")
_UNFINISHED = " <unfinished ...>"
_HEX = r"((?:\\x[0-9a-f]{2})*)"
_ARG = re.compile(r'(?:(?:AT_FDCWD|\d+)<' + _HEX + r'>, )?"' + _HEX + r'"')
_FD = re.compile(r"<" + _HEX + r">")
_AT_CWD = re.compile(r"AT_FDCWD<" + _HEX + r">")
_MODULE_FILE = re.compile(r"\.(?:py|pyc|so)$")
_OPENS = ("open", "openat", "openat2")
_DRIVER_HEX = tuple("".join(f"\\x{b:02x}" for b in s.encode()) for s in ("libcuda.so",
                                                                         "/dev/nvidia"))
"""The CUDA driver's library and NVIDIA's device nodes as ``-xx`` spells them (never
inside the env: the host's driver provides them)."""
DRIVER_OPENED, DRIVER_MISSING = "opened", "missing"
_DRIVER_RANK = ("", DRIVER_MISSING, DRIVER_OPENED)
_PY_HEX = tuple("".join(f"\\x{b:02x}" for b in s.encode()) for s in (".py", ".pyc"))
"""``.py`` and ``.pyc`` as strace's ``-xx`` spells the end of a path."""


@dataclass(frozen=True)
class Usage:
    """What the workloads used inside the prefix."""

    paths: frozenset[str]
    """Paths relative to the prefix: every entry used, the symlinks on the way to each,
    and their targets. Directories above them are implied."""
    modules: frozenset[str]
    """Top-level modules whose code the workloads loaded (a ``.py``, ``.pyc`` or
    extension module file opened under ``lib/pythonX.Y``)."""
    sources_read: frozenset[str] = frozenset()
    """``.py`` files (relative) a workload read as text, not only to import them: opened
    although that process loaded their bytecode, or opened more than once."""
    opened: frozenset[str] = frozenset()
    """Entries (relative, symlinks resolved) a workload opened or executed, not only
    looked at: what separates a package that was imported from one that was only probed
    (``importlib.util.find_spec`` and metadata reads ``stat`` and list, never open its
    modules)."""

    expanded: frozenset[str] = frozenset()
    """Modules (dotted) imported on the workloads' behalf because a package they imported
    is a unit (:mod:`shrinkconda.appaware.packages`): the verification imports them too."""

    optional: frozenset[str] = frozenset()
    """site-packages top-level modules only the expansion loaded, without which what it
    imported imports as well (:func:`shrinkconda.appaware.packages.optional`): they go."""

    gpu_driver: str = ""
    """What the trace saw of a GPU: :data:`DRIVER_OPENED` (a process opened the CUDA
    driver ``libcuda.so*`` or a ``/dev/nvidia*`` device), :data:`DRIVER_MISSING` (one
    looked for the driver and did not find it), or "" (nothing asked for a GPU)."""

    def __or__(self, other: Usage) -> Usage:
        """What either traced run used (the GPU driver: opened over missing over none)."""
        driver = max(self.gpu_driver, other.gpu_driver, key=_DRIVER_RANK.index)
        return Usage(self.paths | other.paths, self.modules | other.modules,
                     self.sources_read | other.sources_read, opened=self.opened | other.opened,
                     expanded=self.expanded | other.expanded,
                     optional=self.optional | other.optional, gpu_driver=driver)


def find_strace() -> str:
    """The ``strace`` program, or :class:`StraceMissing` with an install hint."""
    found = shutil.which("strace")
    if found is None:
        raise StraceMissing(
            "--used-by traces the commands with strace, which is not on PATH: install it "
            "(apt-get install strace, dnf install strace, apk add strace)")
    return found


@functools.cache
def _version(strace: str) -> tuple[int, ...]:
    """``strace -V``'s version, ``(6, 1)``; ``(0,)`` if it does not say."""
    said = subprocess.run([strace, "-V"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"version (\d+(?:\.\d+)*)", said)
    return tuple(int(n) for n in found.group(1).split(".")) if found else (0,)


def command_env(prefix: Path) -> dict[str, str]:
    """The caller's environment with the prefix's ``bin/`` first on ``PATH``, and no
    bytecode written back into the prefix."""
    return {**os.environ, "PATH": f"{prefix / 'bin'}:{os.environ.get('PATH', '')}",
            "CONDA_PREFIX": str(prefix), "PYTHONDONTWRITEBYTECODE": "1"}


def trace(prefix: Path, commands: Sequence[str], timeout: float = TIMEOUT,
          output: Output = None, extra: Sequence[Sequence[str]] = (),
          labels: Sequence[str] = ()) -> Usage:
    """Run each shell command under strace, then each ``extra`` argv (named in messages
    by ``labels``, else by the argv); the union of what they used. Raises if one fails
    or the trace may have missed something."""
    for command in commands:
        if not command.strip():
            raise WorkloadError("--used-by needs a command; it was given an empty one")
    strace = find_strace()
    resolver = _Resolver(prefix)
    env = command_env(prefix)
    runs = [(c, ["/bin/sh", "-c", c]) for c in commands]
    named = list(labels) + [" ".join(argv) for argv in extra[len(labels):]]
    runs += [(label, list(argv)) for label, argv in zip(named, extra)]
    for label, argv in runs:
        _run_one(strace, label, argv, env, timeout, output, resolver)
    return Usage(frozenset(resolver.used), frozenset(_modules(resolver.opened)),
                 frozenset(resolver.sources_read), opened=frozenset(resolver.opened),
                 gpu_driver=resolver.driver)


def loaded_modules_in(prefix: Path) -> list[str]:
    """Files of the modules this very process has loaded from ``prefix``: when
    shrinkconda runs on the prefix's own python, it must still be able to finish."""
    root = str(prefix) + "/"
    files = []
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and os.path.realpath(path).startswith(root):
            files.append(path)
    return files


def resolve(prefix: Path, paths: Iterable[str]) -> frozenset[str]:
    """The prefix entries on the way to each absolute path (symlinks followed)."""
    resolver = _Resolver(prefix)
    for path in paths:
        resolver.add(path)
    return frozenset(resolver.used)


def _run_one(strace: str, label: str, argv: list[str], env: dict[str, str], timeout: float,
             output: Output, resolver: _Resolver) -> None:
    with tempfile.TemporaryDirectory(prefix="shrinkconda-trace-") as tmp:
        log = os.path.join(tmp, "trace")
        # The tracee's stderr joins its stdout, so strace's own messages stay apart.
        wrapper = 'exec 2>&1; exec "$@"'
        # Not -z (successful calls only): with it, strace 6.1 prints the rest of an
        # interrupted call on a line without its pid. Failures are dropped below instead.
        flags = [f for f in FLAGS if f != "--seccomp-bpf" or _version(strace) >= _SECCOMP_SINCE]
        command = [strace, *flags, "-o", log, "--",
                   "/bin/sh", "-c", wrapper, "shrinkconda-trace", *argv]
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        assert proc.stdout is not None and proc.stderr is not None
        tail: deque[bytes] = deque(maxlen=_TAIL)
        strace_says: list[str] = []
        pumps = [_pump(proc.stdout, output, tail), _pump(proc.stderr, None, None, strace_says)]
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise WorkloadError(
                f"--used-by command {label!r} did not finish within {timeout:g}s and was "
                "killed with everything it started; nothing was changed (raise "
                "--used-by-timeout if it needs longer)") from None
        finally:
            _kill_group(proc)  # what it left behind must not outlive the trace
            for pump in pumps:
                pump.join(timeout=5)
        problems = [m for m in strace_says if not _benign(m)]
        if problems:
            hint = (" (ptrace is not allowed here; a container needs the SYS_PTRACE "
                    "capability, e.g. docker run --cap-add SYS_PTRACE)"
                    if "Operation not permitted" in problems[0] else "")
            raise TraceIncomplete(f"strace could not fully trace {label!r}, so nothing was "
                                  f"pruned: {problems[0]}{hint}")
        if code:
            _fail(label, code, tail)
        with open(log, encoding="ascii", errors="replace") as lines:
            _parse(lines, label, resolver)


def _fail(label: str, code: int, tail: deque[bytes]) -> None:
    if code == 127:
        raise WorkloadError(f"--used-by command not found: {label!r} (sh exit status 127); "
                            "nothing was changed")
    what = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    text = b"".join(tail).decode(errors="replace").rstrip().splitlines()[-5:]
    said = ("; its output ended with:\n  " + "\n  ".join(text)) if text else ""
    raise WorkloadError(f"--used-by command {label!r} {what} before the shrink, so it "
                        f"cannot show what the app uses; nothing was changed{said}")


def _pump(stream: IO[bytes], output: Output, tail: deque[bytes] | None,
          lines: list[str] | None = None) -> threading.Thread:
    def run() -> None:
        for chunk in iter(stream.readline, b""):
            if output is not None:
                output(chunk)
            if tail is not None:
                tail.append(chunk)
            if lines is not None:
                lines.append(chunk.decode(errors="replace").strip())
        stream.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _benign(message: str) -> bool:
    """strace's remarks that do not mean lost events."""
    return (not message or re.match(r"^strace: Process \d+ attached$", message) is not None
            or "seccomp" in message)


def _parse(lines: Iterable[str], label: str, resolver: _Resolver) -> None:
    """Feed every path of every successful call to ``resolver``; check nothing was lost."""
    seen: set[str] = set()
    ended: set[str] = set()
    opened: dict[tuple[str, str], int] = {}  # (pid, .py or .pyc) -> opens
    cwd: dict[str, str] = {}
    pending: dict[str, str] = {}
    initial = os.getcwd()
    for raw in lines:
        line = _LINE.match(raw.rstrip("\n"))
        if line is None:
            raise TraceIncomplete(f"tracing {label!r} gave an unreadable trace line "
                                  f"({raw[:80]!r}); nothing was pruned")
        pid, rest = line.groups()
        seen.add(pid)
        if rest.startswith("+++"):
            ended.add(pid)
            continue
        if rest.endswith(_UNFINISHED):  # another process' call came in between
            pending[pid] = rest[:-len(_UNFINISHED)]
            continue
        resumed = _RESUMED.match(rest)
        if resumed:
            if pid not in pending:
                raise TraceIncomplete(f"tracing {label!r} resumed a call it never began "
                                      f"({raw[:80]!r}); nothing was pruned")
            rest = pending.pop(pid) + rest[resumed.end():]
        call = _CALL.match(rest)
        if call is None:
            continue  # a signal, or a call that never returned
        name, args, result, returned = call.groups()
        if name in _OPENS and any(h in args for h in _DRIVER_HEX):
            resolver.driver_seen(ok=result != "?" and not result.startswith("-"))
        if result == "?" or result.startswith("-"):
            continue  # failed: a probe for a path that is not there keeps nothing
        if name == "io_uring_setup":
            raise TraceIncomplete(
                f"{label!r} uses io_uring, whose file opens strace cannot see, so what it "
                "uses cannot be known; nothing was pruned")
        if name.startswith("execve"):
            args = args.split(", [", 1)[0]  # argv strings are not paths
        at_cwd = _AT_CWD.search(args)
        if at_cwd:  # -y decodes AT_FDCWD: the process' working directory, first hand
            cwd[pid] = _unhex(at_cwd.group(1))
        here = cwd.get(pid, initial)
        for dirfd, path in _ARG.findall(args):
            base = _unhex(dirfd) if dirfd else here
            resolver.add(os.path.join(base, _unhex(path)) if path else base)
        for fd_path in _FD.findall(args):
            resolver.add(_unhex(fd_path))
        if returned:
            resolver.add(_unhex(returned))
            if name in _OPENS:
                resolver.add_opened(_unhex(returned))
            if name in _OPENS and returned.endswith(_PY_HEX):
                key = (pid, _unhex(returned))
                opened[key] = opened.get(key, 0) + 1
        if name in ("chdir", "fchdir"):
            target = _FD.search(args)
            quoted = _ARG.search(args)
            if name == "fchdir" and target:
                cwd[pid] = _unhex(target.group(1))
            elif quoted:
                cwd[pid] = os.path.join(here, _unhex(quoted.group(2)))
        if name in ("execve", "execveat"):
            for path in _ARG.findall(args)[:1]:
                resolver.add_opened(os.path.realpath(os.path.join(here, _unhex(path[1]))))
                resolver.add_interpreter(os.path.join(here, _unhex(path[1])))
    resolver.add_sources_read(_read_as_text(opened))
    lost = sorted(seen - ended, key=int)
    if lost:
        raise TraceIncomplete(
            f"tracing {label!r} lost track of process {lost[0]} (no exit in the trace: it "
            "escaped or the trace was cut short), so what it used may be incomplete; "
            "nothing was pruned")


def _read_as_text(opened: dict[tuple[str, str], int]) -> Iterator[str]:
    """The ``.py`` files a process read as text, not just to compile them on import.

    An import opens a source once, and only when it has no valid bytecode: it opens the
    ``__pycache__`` file first, and the ``.py`` only if that file is stale or missing
    (or, for a checked-hash file, to check it). So a ``.py`` was read as text when its
    process opened it twice, or once after opening a ``__pycache__`` file that is valid
    for it without reading it (a timestamp one that matches it, or an unchecked-hash
    one). Both are still on disk as they were: nothing has changed since the trace."""
    cached: dict[tuple[str, str, str], str] = {}
    for pid, path in opened:
        directory, name = os.path.split(path)
        if name.endswith(".pyc") and os.path.basename(directory) == "__pycache__":
            cached[(pid, os.path.dirname(directory), name.split(".", 1)[0])] = path
    for (pid, path), count in opened.items():
        if not path.endswith(".py"):
            continue
        directory, name = os.path.split(path)
        pyc = cached.get((pid, directory, name[:-3]))
        if count > 1 or (pyc is not None and _valid_without_source(pyc, path)):
            yield path


def _valid_without_source(pyc: str, source: str) -> bool:
    """Whether Python loads ``pyc`` for ``source`` without opening the source: an
    unchecked-hash file, or a timestamp one recording the source's mtime and size."""
    try:
        with open(pyc, "rb") as f:
            head = f.read(16)
        st = os.stat(source)
    except OSError:
        return False
    if len(head) < 16:
        return False
    flags = int.from_bytes(head[4:8], "little")
    if flags == 0b01:
        return True
    if flags:
        return False  # checked-hash: the source is opened to check it
    return (int.from_bytes(head[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(head[12:16], "little") == st.st_size & 0xFFFFFFFF)


def _unhex(text: str) -> str:
    return os.fsdecode(bytes.fromhex(text.replace("\\x", "")))


class _Resolver:
    """Turns traced paths into the prefix entries they went through."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = str(prefix)
        self._inside = self.prefix + "/"
        self.used: set[str] = set()
        self.sources_read: set[str] = set()
        self.opened: set[str] = set()
        self._dirs: dict[str, str | None] = {}
        self._done: set[str] = set()
        self.driver = ""
        """:attr:`Usage.gpu_driver` so far."""

    def driver_seen(self, ok: bool) -> None:
        """A process opened (``ok``) or failed to open the GPU driver or a device."""
        if ok:
            self.driver = DRIVER_OPENED
        elif not self.driver:
            self.driver = DRIVER_MISSING

    def add(self, path: str) -> None:
        if path in self._done:
            return
        self._done.add(path)
        self._follow(path, 0)

    def add_interpreter(self, path: str) -> None:
        """A script's ``#!`` interpreter: the kernel opens it, no syscall shows it."""
        for _ in range(4):
            try:
                with open(path, "rb") as f:
                    head = f.read(256)
            except OSError:
                return
            if not head.startswith(b"#!"):
                return
            words = head[2:].split(b"\n", 1)[0].split()
            if not words:
                return
            path = os.fsdecode(words[0])
            self.add(path)

    def add_sources_read(self, paths: Iterable[str]) -> None:
        """``.py`` files read as text (see :func:`_read_as_text`), if in the prefix."""
        for path in paths:
            if path.startswith(self._inside):
                self.sources_read.add(path[len(self._inside):])

    def add_opened(self, path: str) -> None:
        """A file a process opened (its fd's path: symlinks already resolved)."""
        if path.startswith(self._inside):
            self.opened.add(path[len(self._inside):])

    def _record(self, path: str) -> None:
        if path.startswith(self._inside):
            self.used.add(path[len(self._inside):])

    def _follow(self, path: str, depth: int) -> None:
        if depth > 40 or not path.startswith("/"):
            return
        head, _, name = path.rstrip("/").rpartition("/")
        real_dir = self._real_dir(head or "/", depth)
        if real_dir is None or name in ("", "."):
            return
        if name == "..":
            return
        full = os.path.join(real_dir, name)
        try:
            st = os.lstat(full)
        except OSError:
            return
        self._record(full)
        if stat.S_ISLNK(st.st_mode):
            self._follow(os.path.join(real_dir, os.readlink(full)), depth + 1)

    def _real_dir(self, path: str, depth: int) -> str | None:
        """The real directory ``path`` names, recording the entries on the way."""
        if path in self._dirs:
            return self._dirs[path]
        real: str | None = "/"
        for part in path.split("/"):
            if real is None:
                break
            if part in ("", "."):
                continue
            if part == "..":
                real = os.path.dirname(real)
                continue
            candidate = os.path.join(real, part)
            try:
                st = os.lstat(candidate)
            except OSError:
                real = None
                break
            self._record(candidate)
            if stat.S_ISLNK(st.st_mode):
                if depth > 40:
                    real = None
                    break
                real = self._real_dir(os.path.join(real, os.readlink(candidate)), depth + 1)
            else:
                real = candidate
        self._dirs[path] = real
        return real


def _modules(used: Iterable[str]) -> set[str]:
    """Top-level module names of the module files among ``used`` (opened files: a
    module only probed for is not loaded)."""
    names = set()
    for path in used:
        if not _MODULE_FILE.search(path):
            continue
        parts = path.split("/")
        if len(parts) < 3 or parts[0] != "lib" or not parts[1].startswith("python"):
            continue
        rest = parts[2:]
        if rest[0] in ("site-packages", "lib-dynload"):
            rest = rest[1:]
        if not rest:
            continue
        if rest[0] == "__pycache__" and len(rest) == 2:
            first = rest[1].split(".", 1)[0]
        elif len(rest) == 1:
            first = rest[0].split(".", 1)[0]
        else:
            first = rest[0]
        if first.isidentifier() and not first.startswith("__") and first not in _NEVER_IMPORT:
            names.add(first)
    return names


#: Modules whose import has side effects a check must not cause again.
_NEVER_IMPORT = frozenset({"this", "antigravity"})
