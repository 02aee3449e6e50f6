#!/usr/bin/env python3
"""A GPU workload: the realistic data-science env plus ``pip install torch`` (CUDA 13
wheels, about 4 GB of downloads, cached), shrunk by profile and by ``--used-by`` of a
small CPU training script, on a machine without a GPU.

    .venv/bin/python scripts/bench.py gpu [--env DIR] [--wheels DIR] [--reps 5]
        [--only safe aggressive used-by]

The env is built once (``build_realistic_env.py --with-dev-tools``, then the env's own
``python -m pip install torch==2.14.1`` from ``--wheels``, downloading what is missing
there) and reused. Each contender shrinks its own ``cp -a`` copy through the CLI; the
table gives bytes before and after (``du -sb``, hard links once), what stays of cuDNN,
whether the training script, ``pip check``/``pip show torch`` and (after aggressive) a
``torch.compile`` still work, and the median cold start of ``import torch``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from fixtures.install import copy_tree
from shrinkconda.runtime_compilers import TORCH_CHECK

TORCH = "torch==2.14.1"
APP = REPO_ROOT / "scripts" / "bench_apps" / "torch_train.py"
MIB = 1 << 20
CUDNN = "lib/python3.11/site-packages/nvidia/cudnn/lib"
#: name -> shrinkconda shrink arguments ({APP}: the training script).
CONTENDERS: dict[str, tuple[str, ...]] = {
    "safe": (),
    "aggressive": ("--profile", "aggressive"),
    "used-by": ("--used-by", "python {APP}"),
}


def build_env(dest: Path, wheels: Path) -> Path:
    """The torch env at ``dest``, built once."""
    if (dest / "lib/python3.11/site-packages/torch/__init__.py").is_file():
        return dest
    building = dest.with_name(dest.name + ".building")
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts/build_realistic_env.py"),
                    str(building), "--force", "--with-dev-tools"], check=True)
    python = str(building / "bin/python")
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, "-m", "pip", "download", "-q", "-d", str(wheels), TORCH,
                    "--find-links", str(wheels)], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--find-links",
                    str(wheels), TORCH], check=True)
    building.rename(dest)  # the env's python finds its prefix from its own path
    return dest


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def run(prefix: Path, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """A command with the prefix's bin/ first on PATH, in a clean environment."""
    env = {"PATH": f"{prefix}/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/tmp",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}  # the checks must not grow the original
    return subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False,
                          timeout=timeout, cwd="/tmp")


def cold_start(prefix: Path, reps: int) -> float:
    """Median seconds of ``import torch`` in fresh processes that write no bytecode."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        done = run(prefix, str(prefix / "bin/python"), "-B", "-c", "import torch")
        times.append(time.perf_counter() - start)
        if done.returncode:
            return float("nan")
    return statistics.median(times)


def checks(prefix: Path, compile_check: bool) -> dict[str, Any]:
    """What still works in the prefix."""
    python = str(prefix / "bin/python")
    out: dict[str, Any] = {
        "train": run(prefix, python, str(APP)).returncode == 0,
        "pip_check": run(prefix, python, "-m", "pip", "check").returncode == 0,
        "pip_show": run(prefix, python, "-m", "pip", "show", "-f", "torch").returncode == 0,
        "cudnn_bytes": sum(p.stat().st_size for p in (prefix / CUDNN).glob("*")
                           if p.is_file()) if (prefix / CUDNN).is_dir() else 0,
    }
    if compile_check:
        work = Path("/tmp/shrinkconda-bench-compile")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        done = run(prefix, python, "-c", TORCH_CHECK, str(work))
        out["torch_compile"] = done.returncode == 0
        if done.returncode:
            out["torch_compile_error"] = (done.stderr.strip().splitlines() or [""])[-1]
    return out


def gpu_bench(env: Path, wheels: Path, workdir: Path, reps: int, only: Sequence[str],
              shrink_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Build (once) and measure; the results as JSON-able data. ``shrink_env`` is the
    environment shrinkconda runs in (``bench.py``'s snapshot)."""
    original = build_env(env, wheels)
    results: dict[str, Any] = {"env": str(original), "before": du(original),
                               "original": {**checks(original, True),
                                            "import_torch_s": cold_start(original, reps)}}
    workdir.mkdir(parents=True, exist_ok=True)
    for name, args in CONTENDERS.items():
        if only and name not in only:
            continue
        copy = workdir / f"torch-{name}"
        shutil.rmtree(copy, ignore_errors=True)
        copy_tree(original, copy)
        before = du(copy)
        argv = [sys.executable, "-m", "shrinkconda", "shrink", "-y", "--json",
                *(a.replace("{APP}", str(APP)) for a in args), str(copy)]
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              cwd=str(REPO_ROOT), env=shrink_env)
        seconds = time.perf_counter() - start
        report = _json(done.stdout)
        results[name] = {
            "command": "shrinkconda shrink -y " + " ".join(
                a if " " not in a else repr(a) for a in args).replace(str(APP), "APP") + " P",
            "exit": done.returncode, "seconds": round(seconds, 1), "before": before,
            "after": du(copy), "rolled_back": report.get("rolled_back"),
            "notes": [n for n in report.get("notes", []) if "GPU" in n or "compile" in n],
            "broken": report.get("broken", []),
            "stderr": done.stderr.strip().splitlines()[-3:],
            **checks(copy, name == "aggressive"),
            "import_torch_s": cold_start(copy, reps),
        }
        shutil.rmtree(copy, ignore_errors=True)
    if not only or "used-by-audit" in only:
        results["used-by-audit"] = audit_used_by(original, shrink_env)
    return results


def audit_used_by(prefix: Path, shrink_env: dict[str, str] | None) -> dict[str, Any]:
    """``shrinkconda audit --used-by``: what the app-aware shrink would free and keep,
    whether or not its verification would then pass."""
    argv = [sys.executable, "-m", "shrinkconda", "audit", "--json", "--used-by",
            f"python {APP}", str(prefix)]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False,
                          cwd=str(REPO_ROOT), env=shrink_env)
    report = _json(done.stdout)
    return {"command": "shrinkconda audit --used-by 'python APP' P", "exit": done.returncode,
            "seconds": round(time.perf_counter() - start, 1),
            "bytes_saved": report.get("bytes_saved"),
            "notes": [n for n in report.get("notes", []) if "GPU" in n],
            "stderr": done.stderr.strip().splitlines()[-3:]}


def _json(text: str) -> dict[str, Any]:
    try:
        return dict(json.loads(text))
    except ValueError:
        return {}


def gpu_table(results: dict[str, Any]) -> str:
    """The markdown table of BENCHMARKS.md."""
    rows = [("| contender | after (MiB) | freed (MiB) | cuDNN kept (MiB) | training script | "
            "pip check / show | torch.compile | `import torch` (s) |"),
            "|---|--:|--:|--:|---|---|---|--:|"]
    base = results["original"]
    rows.append(f"| original | {results['before'] / MIB:,.1f} | | "
                f"{base['cudnn_bytes'] / MIB:,.1f} | {_ok(base['train'])} | "
                f"{_ok(base['pip_check'])} / {_ok(base['pip_show'])} | "
                f"{_ok(base.get('torch_compile'))} | {base['import_torch_s']:.2f} |")
    for name in CONTENDERS:
        r = results.get(name)
        if r is None:
            continue
        freed = r["before"] - r["after"]
        rows.append(f"| `{r['command']}` | {r['after'] / MIB:,.1f} | {freed / MIB:,.1f} | "
                    f"{r['cudnn_bytes'] / MIB:,.1f} | {_ok(r['train'])} | "
                    f"{_ok(r['pip_check'])} / {_ok(r['pip_show'])} | "
                    f"{_ok(r.get('torch_compile'))} | {r['import_torch_s']:.2f} |")
    audit = results.get("used-by-audit")
    if audit and audit.get("bytes_saved") is not None:
        rows.append(f"| `{audit['command']}` (predicted) | "
                    f"{(results['before'] - audit['bytes_saved']) / MIB:,.1f} | "
                    f"{audit['bytes_saved'] / MIB:,.1f} | | | | | |")
    notes = [f"- {name}: {note}" for name in (*CONTENDERS, "used-by-audit") for note in
             (results.get(name) or {}).get("notes", [])]
    return "\n".join(rows + ([""] + notes if notes else []))


def _ok(value: object) -> str:
    return "-" if value is None else ("yes" if value else "**no**")


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", type=Path, default=Path("/work/cache/gpu/torch-env"))
    parser.add_argument("--wheels", type=Path, default=Path("/work/cache/torch-wheels"))
    parser.add_argument("--workdir", type=Path, default=Path("/work/cache/gpu/bench"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    results = gpu_bench(args.env, args.wheels, args.workdir, args.reps, args.only)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    print(gpu_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
