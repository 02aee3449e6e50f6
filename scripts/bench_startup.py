"""The start-up benchmark: bytes and read-only cold start, side by side, for every way of
shipping the realistic environment.

    .venv/bin/python scripts/bench.py startup [--reps 7] [--no-pyinstaller] [--only NAME ...]

Each contender makes its own fresh ``cp -a`` copy of the realistic prefix (or, for
PyInstaller, a bundle) and changes it as it would in a Dockerfile: the unshrunk env as
installed; that env after every file time is reset to 1980 (what ``sam build``'s zips
do); ``python -m compileall`` over it (what uv's ``--compile-bytecode`` gives); the docker
recipe; ``shrinkconda shrink`` with each profile and ``--python-code`` form; ``--used-by``
of the service and native workloads; PyInstaller ``--onedir`` of the same imports.

A start is a fresh process of the copy's python importing what a small service imports
(numpy, pandas, scipy.optimize/stats, five scikit-learn modules, matplotlib.pyplot) with
``PYTHONDONTWRITEBYTECODE=1``, as in a read-only image: nothing compiled is written back,
so whatever a contender removed is compiled again at every start. The contenders
alternate, in an order rotated every round; each gets ``--reps`` starts and the median
is compared with the unshrunk env's median of the same rounds.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
APPS = REPO_ROOT / "scripts" / "bench_apps"
IMPORTS = ("import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot, numpy, pandas, "
           "scipy.optimize, scipy.stats, sklearn.ensemble, sklearn.linear_model, "
           "sklearn.model_selection, sklearn.pipeline, sklearn.preprocessing")
WORKLOADS = ("python service.py", "python native.py")
LAMBDA_LIMIT = 262_144_000
RESET_TIME = 315532800
"""1980-01-01, the earliest time a zip can hold: what packagers that zip set."""
MIB = 1024 * 1024


@dataclass
class Contender:
    """One way to ship the environment, ready to start."""

    name: str
    label: str
    start: list[str] = field(default_factory=list)
    """The command one start runs."""
    root: Path | None = None
    """What is shipped, measured with ``du -sb``."""
    prepare_s: float = 0.0
    error: str = ""
    walls: list[float] = field(default_factory=list)


def startup_bench(args: Any, shrinkconda_env: dict[str, str],
                  copy_tree: Callable[[Path, Path], Path]) -> dict[str, Any]:
    template: Path = args.prefix.resolve()
    if not (template / "conda-meta").is_dir():
        python = ["--python", args.python] if getattr(args, "python", None) else []
        subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "build_realistic_env.py"),
                        str(template), *python], check=True)
    work = args.workdir.resolve() / "startup"
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    plans = _plans(template, work, shrinkconda_env, copy_tree, args.no_pyinstaller)
    chosen = [p for p in plans if not args.only or p[0] in args.only or p[0] == "unshrunk"]
    contenders = []
    for name, label, prepare in chosen:
        print(f"preparing {name}", file=sys.stderr)
        contender = Contender(name, label)
        started = time.perf_counter()
        try:
            contender.root, contender.start = prepare()
        except (subprocess.CalledProcessError, OSError, ValueError) as exc:
            contender.error = _tail(exc)
        contender.prepare_s = round(time.perf_counter() - started, 1)
        contenders.append(contender)
    ready = [c for c in contenders if not c.error]
    for c in ready:  # a first start of each warms the page cache and matplotlib's fonts
        _start(c, home)
    for rep in range(args.reps):
        order = ready[rep % len(ready):] + ready[:rep % len(ready)]
        for c in order:
            c.walls.append(_start(c, home))
        print(f"round {rep + 1}/{args.reps} done", file=sys.stderr)
    base = statistics.median(next(c for c in ready if c.name == "unshrunk").walls)
    return {"kind": "startup", "prefix": str(template), "reps": args.reps,
            "python": _version(template),
            "imports": IMPORTS, "shrinkconda": args.shrinkconda_state,
            "contenders": [_result(c, base) for c in contenders]}


def _version(prefix: Path) -> str:
    """``3.13.5``, ``3.13.5t``: the prefix's interpreter, as it says."""
    code = "import sys; print('%d.%d.%d' % sys.version_info[:3] + sys.abiflags)"
    said = subprocess.run([str(prefix / "bin" / "python"), "-c", code],
                          capture_output=True, text=True, check=False)
    return said.stdout.strip()


def _start(c: Contender, home: Path) -> float:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(home),
           "MPLCONFIGDIR": str(home / "mpl"), "MPLBACKEND": "Agg",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1"}
    home.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    done = subprocess.run(c.start, env=env, cwd=home, capture_output=True, text=True,
                          check=False, timeout=600)
    wall = time.perf_counter() - started
    if done.returncode:
        c.error = (done.stderr or done.stdout).strip().splitlines()[-1:][0][:300] \
            if (done.stderr or done.stdout).strip() else f"exit {done.returncode}"
    return wall


def _result(c: Contender, base: float) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c.name, "label": c.label, "prepare_s": c.prepare_s,
                           "error": c.error or None}
    if c.root is not None and c.root.exists():
        out["bytes"] = du_bytes(c.root)
    if c.walls:
        median = statistics.median(c.walls)
        out.update(start_s=round(median, 3), start_min=round(min(c.walls), 3),
                   start_max=round(max(c.walls), 3), ratio=round(median / base, 3))
    return out


def _plans(template: Path, work: Path, env: dict[str, str],
           copy_tree: Callable[[Path, Path], Path], no_pyinstaller: bool
           ) -> list[tuple[str, str, Callable[[], tuple[Path, list[str]]]]]:
    def fresh(name: str) -> Path:
        copy = work / name
        if copy.exists():
            shutil.rmtree(copy)
        copy_tree(template, copy)
        return copy

    def python(prefix: Path) -> list[str]:
        return [str(prefix / "bin" / "python"), "-c", IMPORTS]

    def untouched() -> tuple[Path, list[str]]:
        return template, python(template)

    def reset() -> tuple[Path, list[str]]:
        copy = fresh("unshrunk-1980")
        reset_times(copy)
        return copy, python(copy)

    def compileall(then_reset: bool = False) -> Callable[[], tuple[Path, list[str]]]:
        def prepare() -> tuple[Path, list[str]]:
            copy = fresh("compileall-1980" if then_reset else "compileall")
            lib = next(copy.glob("lib/python3.*"))
            # timestamp .pyc where there were none or stale ones, as pip and uv write them
            subprocess.run([str(copy / "bin" / "python"), "-m", "compileall", "-q", "-j", "0",
                            "--invalidation-mode", "timestamp", str(lib)], check=False,
                           capture_output=True)
            if then_reset:
                reset_times(copy)
            return copy, python(copy)
        return prepare

    def docker() -> tuple[Path, list[str]]:
        from bench import DOCKER

        copy = fresh("docker")
        subprocess.run(["bash", "-c", DOCKER], env={"PATH": "/usr/bin:/bin", "P": str(copy)},
                       check=True, capture_output=True)
        return copy, python(copy)

    def shrunk(name: str, *options: str, then_reset: bool = False
               ) -> Callable[[], tuple[Path, list[str]]]:
        def prepare() -> tuple[Path, list[str]]:
            copy = fresh(name)
            home = work / "home"
            done = subprocess.run(
                [sys.executable, "-m", "shrinkconda", "shrink", "-y", "-q", *options,
                 str(copy)], env={**env, "HOME": str(home), "MPLCONFIGDIR": str(home / "mpl")},
                cwd=APPS, capture_output=True, text=True, check=False)
            if done.returncode:
                raise ValueError(f"shrinkconda exit {done.returncode}: "
                                 f"{done.stderr.strip()[-300:]}")
            if then_reset:
                reset_times(copy)
            return copy, python(copy)
        return prepare

    def frozen() -> tuple[Path, list[str]]:
        app = pyinstaller_onedir(template, work)
        return app, [str(app / "imports")]

    used_by = [a for w in WORKLOADS for a in ("--used-by", w)]
    plans: list[tuple[str, str, Callable[[], tuple[Path, list[str]]]]] = [
        ("unshrunk", "unshrunk env (pycs as installed)", untouched),
        ("unshrunk-1980", "unshrunk env, every mtime reset to 1980", reset),
        ("compileall", "unshrunk + python -m compileall (uv --compile-bytecode)", compileall()),
        ("compileall-1980", "unshrunk + compileall, then every mtime reset to 1980",
         compileall(then_reset=True)),
        ("docker", "docker recipe (conda clean -afy, find -delete *.pyc ...)", docker),
        ("safe", "shrinkconda shrink (safe, --python-code source)", shrunk("safe")),
        ("safe-bytecode", "shrinkconda shrink --python-code bytecode",
         shrunk("safe-bytecode", "--python-code", "bytecode")),
        ("safe-both", "shrinkconda shrink --python-code both",
         shrunk("safe-both", "--python-code", "both")),
        ("safe-both-1980", "shrinkconda shrink --python-code both, then mtimes reset to 1980",
         shrunk("safe-both-1980", "--python-code", "both", then_reset=True)),
        ("aggressive-source", "shrinkconda shrink --profile aggressive --python-code source",
         shrunk("aggressive-source", "--profile", "aggressive", "--python-code", "source")),
        ("aggressive", "shrinkconda shrink --profile aggressive (bytecode)",
         shrunk("aggressive", "--profile", "aggressive")),
        ("used-by", "shrinkconda shrink --used-by service.py --used-by native.py (bytecode)",
         shrunk("used-by", *used_by)),
    ]
    if not no_pyinstaller:
        plans.append(("pyinstaller", "PyInstaller --onedir of the same imports", frozen))
    return plans


def reset_times(root: Path) -> None:
    """Every file's and directory's mtime and atime to 1980, as a zip leaves them."""
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(os.path.join(directory, name), (RESET_TIME, RESET_TIME),
                     follow_symlinks=False)


def pyinstaller_onedir(template: Path, work: Path) -> Path:
    """A PyInstaller ``--onedir`` bundle of a script doing the benchmark's imports, built
    with the prefix's python (PyInstaller from PyPI on its ``PYTHONPATH``)."""
    lib = work / "pyinstaller-lib"
    if not (lib / "PyInstaller").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(lib),
                        "pyinstaller"], check=True)
    script = work / "imports.py"
    script.write_text(IMPORTS.replace("; ", "\n") + "\n")
    build = work / "pyi-onedir"
    shutil.rmtree(build, ignore_errors=True)
    env = {"PATH": f"{template}/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8",
           "HOME": str(work / "home"), "PYTHONPATH": str(lib), "PYTHONNOUSERSITE": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}  # the template must stay as installed
    subprocess.run([str(template / "bin" / "python"), "-m", "PyInstaller", "--onedir",
                    "--noconfirm", "--distpath", str(build / "dist"), "--workpath",
                    str(build / "build"), "--specpath", str(build), str(script)],
                   env=env, check=True, capture_output=True)
    return build / "dist" / "imports"


def du_bytes(path: Path) -> int:
    done = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0])


def _tail(exc: BaseException) -> str:
    stderr = getattr(exc, "stderr", None)
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    text = (stderr or str(exc)).strip().splitlines()
    return text[-1][:300] if text else repr(exc)


def startup_table(r: dict[str, Any]) -> str:
    """The markdown table: bytes and cold start per contender, with its ratio to the
    unshrunk env's start and to the compiled-everything env's (``compileall``)."""
    compiled = next((c.get("start_s") for c in r["contenders"] if c["name"] == "compileall"),
                    None)
    rows = [("| contender | bytes | MiB | cold start s (min–max) | × unshrunk | × compileall "
             "| starts |"),
            "|---|---:|---:|---:|---:|---:|---|"]
    for c in r["contenders"]:
        size = c.get("bytes")
        size_cells = f"{size:,} | {size / MIB:.1f}" if size else "- | -"
        if "start_s" in c:
            start = f"{c['start_s']:.2f} ({c['start_min']:.2f}–{c['start_max']:.2f})"
            ratio = f"{c['ratio']:.2f}"
            to_compiled = f"{c['start_s'] / compiled:.2f}" if compiled else "-"
        else:
            start = ratio = to_compiled = "-"
        works = "yes" if not c["error"] else f"NO: {c['error']}"
        rows.append(f"| {c['label']} | {size_cells} | {start} | {ratio} | {to_compiled} "
                    f"| {works} |")
    rows.append("")
    rows.append(f"Python {r.get('python') or '?'}; {r['reps']} starts each, alternating; "
                f"`PYTHONDONTWRITEBYTECODE=1 python -c \"{r['imports']}\"`")
    return "\n".join(rows)


