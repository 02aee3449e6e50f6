"""The ``used-by`` benchmark: app-aware shrinking against its floor and PyInstaller.

    .venv/bin/python scripts/bench.py used-by [--reps 3] [--no-pyinstaller]

On fresh copies of the realistic prefix, with the workload apps in scripts/bench_apps/
(``service.py``: numpy, pandas, scipy.optimize/stats, scikit-learn, a matplotlib Agg
PNG; ``native.py``: spawn and loky workers, a console script, ctypes, threadpoolctl):

- the floor: the bytes of every prefix file the apps open or execute (a separate
  ``strace -f`` of open/openat/openat2/execve, successful calls only, each inode once),
  plus the metadata that must stay (``conda-meta/`` and the ``*.dist-info`` left after
  the ``--used-by`` shrink), in a bytecode-only copy of the default shrink: its stdlib and
  site-packages compiled by its own python (``-X no_debug_ranges -m compileall -b``)
  and every ``.py`` that got a ``.pyc`` removed, so that the apps open code in one form;
- ``shrinkconda shrink -y`` and ``shrinkconda shrink -y --used-by ...``: size after
  (``du -sb``), wall time, and both apps run on the result;
- PyInstaller ``--onedir`` and ``--onedir --strip`` of ``service.py``, built with the
  realistic prefix's python (PyInstaller from PyPI on its ``PYTHONPATH``), and
  the frozen app run the same way;
- each app's run time before and after (median of ``--reps`` runs);
- after ``--used-by``, the one-liners of ``scripts/bench_apps/probes.py`` (parts of the
  packages the apps imported that the apps never reach, and a lazily loaded submodule).

Every run of an app shares one ``HOME``, so matplotlib's font cache is warm for all of
them alike (a cold cache makes matplotlib read every font it ships).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
APPS = REPO_ROOT / "scripts" / "bench_apps"
WORKLOADS = ("python service.py", "python native.py")
LAMBDA_LIMIT = 262_144_000
_FD = re.compile(r"= \d+<((?:\\x[0-9a-f]{2})+)>")
_EXEC = re.compile(r'^\d+ +execve\("((?:\\x[0-9a-f]{2})+)"')


def app_env(prefix: Path, home: Path) -> dict[str, str]:
    """What the apps run with: a clean environment, the prefix's bin/ first on PATH."""
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": f"{prefix}/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(home),
            "MPLCONFIGDIR": str(home / "mpl"), "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "2"}


def run_app(argv: Sequence[str], env: dict[str, str], reps: int) -> dict[str, Any]:
    """Run an app ``reps`` times: whether every run passed, and the median wall time."""
    walls, failures = [], []
    for _ in range(reps):
        start = time.perf_counter()
        done = subprocess.run(list(argv), cwd=APPS, env=env, capture_output=True, text=True,
                              check=False, timeout=900)
        walls.append(time.perf_counter() - start)
        if done.returncode:
            failures.append((done.stderr or done.stdout).strip().splitlines()[-1:])
    return {"passed": not failures, "wall_s": round(statistics.median(walls), 2),
            "failure": failures[0] if failures else None}


def run_probes(env: dict[str, str]) -> dict[str, str | None]:
    """``scripts/bench_apps/probes.py`` on a prefix: ``{probe: None, or its error}``."""
    done = subprocess.run(["python", "probes.py"], cwd=APPS, env=env, capture_output=True,
                          text=True, check=False, timeout=1800)
    try:
        found: dict[str, str | None] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"probes.py": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return found


def du_bytes(*paths: Path) -> int:
    done = subprocess.run(["du", "-scb", *map(str, paths)], capture_output=True, text=True,
                          check=True)
    return int(done.stdout.splitlines()[-1].split()[0])


def opened_bytes(prefix: Path, env: dict[str, str], work: Path) -> tuple[int, int]:
    """(files, bytes) of what the workloads open or execute inside ``prefix``."""
    log = work / "floor.strace"
    subprocess.run(["strace", "-f", "-z", "-y", "-xx", "-e",
                    "trace=open,openat,openat2,execve,execveat", "-o", str(log),
                    "sh", "-c", " && ".join(WORKLOADS)], cwd=APPS, env=env, check=True,
                   capture_output=True, timeout=900)
    inside = str(prefix) + "/"
    paths = set()
    for line in log.read_text().splitlines():
        found = _FD.findall(line)
        executed = _EXEC.match(line)
        if executed:
            found.append(executed.group(1))
        for hexed in found:
            path = os.path.realpath(os.fsdecode(bytes.fromhex(hexed.replace("\\x", ""))))
            if path.startswith(inside) and os.path.isfile(path):
                paths.add(path)
    inodes = {}
    for path in paths:
        st = os.stat(path)
        inodes[(st.st_dev, st.st_ino)] = st.st_size
    return len(inodes), sum(inodes.values())


def bytecode_only(prefix: Path) -> Path:
    """Turn the Python code of ``prefix`` into legacy sourceless ``.pyc`` files compiled
    by its own python without debug ranges; a ``.py`` that does not compile stays."""
    lib = next(prefix.glob("lib/python3.*"))
    subprocess.run([str(prefix / "bin" / "python"), "-X", "no_debug_ranges", "-m",
                    "compileall", "-b", "-q", "-j", "0", str(lib)], check=False,
                   capture_output=True, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
    for source in lib.rglob("*.py"):
        if source.with_suffix(".pyc").is_file():
            source.unlink()
    return prefix


def metadata_bytes(prefix: Path) -> int:
    """``conda-meta/`` and every ``*.dist-info``/``*.egg-info`` in the prefix."""
    found = [prefix / "conda-meta"]
    found += [p for p in prefix.glob("lib/python3*/site-packages/*")
              if p.name.endswith((".dist-info", ".egg-info"))]
    return du_bytes(*found)


def shrink_copy(name: str, template: Path, work: Path, args: Sequence[str],
                shrinkconda_env: dict[str, str],
                copy_tree: Callable[[Path, Path], Path]) -> dict[str, Any]:
    copy = work / name
    if copy.exists():
        shutil.rmtree(copy)
    copy_tree(template, copy)
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    # The traced apps get the home the other runs use: matplotlib's font cache, built by
    # the first run, decides whether every font file is read or only the ones it needs.
    home = work / "home"
    env = {**shrinkconda_env, "HOME": str(home), "MPLCONFIGDIR": str(home / "mpl")}
    done = subprocess.run([sys.executable, "-m", "shrinkconda", "shrink", "-y", "--json",
                           *args, str(copy)], cwd=APPS, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    report = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return {"copy": copy, "returncode": done.returncode, "wall_s": round(wall, 2),
            "size_after": du_bytes(copy), "report_size_after": report.get("size_after"),
            "removed_packages": report.get("removed_packages"),
            "lines": {s["name"]: s["bytes_saved"] for s in report.get("strategies", [])},
            "stderr_tail": done.stderr.strip().splitlines()[-3:]}


def pyinstaller(template: Path, work: Path, reps: int) -> dict[str, Any]:
    """PyInstaller --onedir and --onedir --strip of service.py, with the prefix's python."""
    # The prefix's python has no ensurepip: PyInstaller goes into a directory of its own
    # (pip of this benchmark's interpreter, the same CPython), put on PYTHONPATH.
    lib = work / "pyinstaller-lib"
    if not (lib / "PyInstaller").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(lib),
                        "pyinstaller"], check=True)
    python = str(template / "bin" / "python")
    env = {**app_env(template, work / "pyi-home"), "PYTHONPATH": str(lib)}
    version = subprocess.run([python, "-m", "PyInstaller", "--version"], env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
    out: dict[str, Any] = {"version": version}
    for name, extra in (("onedir", []), ("onedir-strip", ["--strip"])):
        build = work / f"pyi-{name}"
        shutil.rmtree(build, ignore_errors=True)
        start = time.perf_counter()
        done = subprocess.run([python, "-m", "PyInstaller", "--onedir", "--noconfirm",
                               *extra, "--distpath", str(build / "dist"), "--workpath",
                               str(build / "build"), "--specpath", str(build),
                               str(APPS / "service.py")], env=env, capture_output=True,
                              text=True, check=False)
        wall = time.perf_counter() - start
        app = build / "dist" / "service"
        result: dict[str, Any] = {"build_s": round(wall, 1), "built": done.returncode == 0}
        if done.returncode == 0:
            result["size"] = du_bytes(app)
            result["run"] = run_app([str(app / "service")], app_env(app, work / "home"), reps)
        else:
            result["error"] = done.stderr.strip().splitlines()[-1:]
        out[name] = result
    return out


def used_by_bench(args: Any, shrinkconda_env: dict[str, str],
                  copy_tree: Callable[[Path, Path], Path]) -> dict[str, Any]:
    template: Path = args.prefix.resolve()
    if not (template / "conda-meta").is_dir():
        subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "build_realistic_env.py"),
                        str(template)], check=True)
    work = args.workdir.resolve() / "used-by"
    work.mkdir(parents=True, exist_ok=True)
    env = app_env(template, work / "home")
    before = {w: run_app(w.split(), env, args.reps) for w in WORKLOADS}
    if not all(r["passed"] for r in before.values()):
        raise SystemExit(f"the apps fail on the untouched prefix: {before}")
    used_by_args = [a for w in WORKLOADS for a in ("--used-by", w)]
    default = shrink_copy("default", template, work, [], shrinkconda_env, copy_tree)
    floor_copy = bytecode_only(default.pop("copy"))
    floor_env = app_env(floor_copy, work / "home")
    floor_apps = {w: run_app(w.split(), floor_env, 1) for w in WORKLOADS}
    files, opened = opened_bytes(floor_copy, floor_env, work)
    shutil.rmtree(floor_copy)
    used = shrink_copy("used-by", template, work, used_by_args, shrinkconda_env, copy_tree)
    copy = used.pop("copy")
    after_env = app_env(copy, work / "home")
    used["apps"] = {w: run_app(w.split(), after_env, args.reps) for w in WORKLOADS}
    used["probes"] = run_probes(after_env)
    metadata = metadata_bytes(copy)
    shutil.rmtree(copy)
    results: dict[str, Any] = {
        "kind": "used-by", "prefix": str(template), "size_before": du_bytes(template),
        "reps": args.reps, "workloads": list(WORKLOADS),
        "floor": {"opened_files": files, "opened_bytes": opened, "metadata_bytes": metadata,
                  "bytes": opened + metadata, "apps": floor_apps},
        "apps_before": before, "default": default, "used_by": used,
        "shrinkconda": args.shrinkconda_state,
    }
    if not args.no_pyinstaller:
        results["pyinstaller"] = pyinstaller(template, work, args.reps)
    return results


def used_by_table(r: dict[str, Any]) -> str:
    mib = 1024 * 1024
    floor = r["floor"]["bytes"]

    def row(label: str, size: int | None, works: str, wall: str) -> str:
        if size is None:
            return f"| {label} | - | - | - | {works} | {wall} |"
        return (f"| {label} | {size:,} | {size / mib:.1f} MiB | {size / floor:.3f} | {works} "
                f"| {wall} |")

    apps_before = " / ".join(f"{v['wall_s']:.2f}" for v in r["apps_before"].values())
    used = r["used_by"]
    apps_after = " / ".join(f"{v['wall_s']:.2f}" for v in used["apps"].values())
    ok = all(v["passed"] for v in used["apps"].values())
    lines = ["| | bytes | MiB | × floor | app passes | time |", "|---|---:|---:|---:|---|---|",
             row("before (untouched prefix)", r["size_before"], "yes",
                 f"apps {apps_before} s"),
             row("floor: files the apps open in a bytecode-only default shrink + metadata",
                 floor, "yes" if all(v["passed"] for v in r["floor"]["apps"].values())
                 else "NO", ""),
             row("`shrinkconda shrink -y`", r["default"]["size_after"], "yes (verified)",
                 f"shrink {r['default']['wall_s']:.1f} s"),
             row("`shrinkconda shrink -y --used-by ...`", used["size_after"],
                 "yes" if ok and used["returncode"] == 0 else "NO",
                 f"shrink {used['wall_s']:.1f} s; apps {apps_after} s")]
    pyi = r.get("pyinstaller")
    if pyi:
        for name, label in (("onedir", "PyInstaller `--onedir`"),
                            ("onedir-strip", "PyInstaller `--onedir --strip`")):
            v = pyi[name]
            if not v["built"]:
                lines.append(row(label, None, f"build failed: {v['error']}", ""))
                continue
            works = "yes" if v["run"]["passed"] else f"NO: {v['run']['failure']}"
            lines.append(row(label + " (service.py only)", v["size"], works,
                             f"build {v['build_s']:.0f} s; app {v['run']['wall_s']:.2f} s"))
    verdict = used["size_after"] <= 1.10 * floor and used["size_after"] < LAMBDA_LIMIT and ok
    probes = used.get("probes") or {}
    failing = {k: v for k, v in probes.items() if v}
    lines.append("")
    lines.append(f"probes (scripts/bench_apps/probes.py, none in the traced apps) after "
                 f"--used-by: {len(probes) - len(failing)} of {len(probes)} pass"
                 + "".join(f"; {k}: {v}" for k, v in failing.items()))
    lines.append("")
    lines.append(f"target (≤ 1.10 × floor, < {LAMBDA_LIMIT:,} bytes, apps pass): "
                 f"{'met' if verdict else 'NOT met'}; used-by line "
                 f"{used['lines'].get('used-by', 0):,} bytes; packages removed whole: "
                 f"{', '.join(used['removed_packages'] or []) or 'none'}")
    return "\n".join(lines)
