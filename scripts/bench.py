#!/usr/bin/env python3
"""Benchmark shrinkconda against the shell recipes people use, and audit against find.

    .venv/bin/python scripts/bench.py shrink [--prefix P] [--reps 3] [--profile aggressive]
    .venv/bin/python scripts/bench.py audit [--sizes 10000 100000 1000000] [--reps 3]
    .venv/bin/python scripts/bench.py profile audit|shrink PREFIX [--args='--no-verify']
    .venv/bin/python scripts/bench.py used-by [--reps 3] [--no-pyinstaller]
    .venv/bin/python scripts/bench.py startup [--reps 7] [--no-pyinstaller] [--only NAME ...]
        [--python 3.13]
    .venv/bin/python scripts/bench.py gpu [--env DIR] [--wheels DIR] [--reps 5] [--only NAME ...]

``shrink``: each contender runs on its own fresh ``cp -a`` copy of the realistic prefix
(built by ``build_realistic_env.py`` if missing), contenders alternating within each
repetition, medians reported: bytes saved (``du -sb``, hard links once), wall time, CPU
time, peak RSS (``/usr/bin/time``: the largest process of the contender's tree), and
whether the environment still works (``fixtures/envcheck.py`` run by the copy's python,
compared with the untouched prefix).

``--profile NAME`` (repeatable) adds ``shrinkconda shrink -y --profile NAME`` as a
contender; every shrinkconda contender also reports its bytes per strategy.

``audit``: ``shrinkconda audit`` on synthetic prefixes (``synth_prefix.py``, generated once
and reused) against ``find PREFIX -printf '%s %i %n\\n' > /dev/null``, alternating.

``used-by``: app-aware shrinking against its floor, the default shrink and PyInstaller;
see ``scripts/bench_used_by.py``.

``startup``: bytes and read-only cold start (fresh processes, ``PYTHONDONTWRITEBYTECODE=1``,
alternating, medians) of the service imports for every contender, profile and
``--python-code`` form, PyInstaller and compileall; see ``scripts/bench_startup.py``.

``gpu``: the realistic env plus ``pip install torch`` (CUDA wheels, built once): bytes per
profile and for ``--used-by`` of a CPU training script, what stays of cuDNN, whether
training, ``pip check``, ``torch.compile`` and ``import torch`` still work; see
``scripts/bench_gpu.py``.

``profile``: cProfile of one ``shrinkconda audit PREFIX`` or ``shrink`` of a fresh copy;
prints the functions with the most own and cumulative time.

Results go to ``--out`` (JSON) and stdout (markdown tables).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from fixtures.install import copy_tree

SHRINKCONDA = (sys.executable, "-m", "shrinkconda")
#: PYTHONPATH of the shrinkconda snapshot being measured (see :func:`use_shrinkconda`).
_SNAPSHOT_ENV: dict[str, str] = {}
ENVCHECK = REPO_ROOT / "fixtures" / "envcheck.py"
WORKDIR = Path(os.environ.get("SHRINKCONDA_BENCH_DIR", "/tmp/shrinkconda-bench"))
MIB = 1024 * 1024
#: A minimal environment: nothing from the caller's shell or venv leaks into a contender.
CLEAN_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}

#: "Smaller Docker images with conda": `conda clean -afy` then find -delete. With
#: --force-pkgs-dirs, conda rm_rf's every writable package cache and returns (its other
#: flags are then ignored), so without conda in the prefix that is `rm -rf $P/pkgs`.
#: The recipe's bokeh line is left out: no bokeh in this environment.
DOCKER = r"""
rm -rf "$P/pkgs"
find "$P/" -follow -type f -name '*.a' -delete
find "$P/" -follow -type f -name '*.pyc' -delete
find "$P/" -follow -type f -name '*.js.map' -delete
"""

#: pywren's runtime shrinker (pywren/runtimes, shrinkruntime.py), its tasks in order.
#: `conda clean -y -i -t -p` is subsumed by the `rm -Rf pkgs` that follows it; the MKL
#: patterns match nothing here (no MKL) and are kept for fidelity.
PYWREN = r"""
rm -Rf "$P/pkgs"
for g in "*_mc.so" "*_mc2.so" "*_mc3.so" "*_avx512*" "*_avx.*"; do
  find "$P/lib" -name "$g" -delete
done
find "$P" -name "*.so" -exec strip --strip-all {} \;
find "$P" -name "*.pyc" -delete
"""

#: shrinkconda's default removals, the way a careful shell user would write them: one
#: find per kind, rm batched with `+`, strip --strip-debug two at a time.
TUNED = r"""
find "$P/pkgs" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
for lib in "$P"/lib/python3.*/; do
  find "$lib" -path "${lib}site-packages" -prune -o \
       -type d \( -name tests -o -name test \) -prune -exec rm -rf {} +
  find "${lib}site-packages" -mindepth 2 -type d \( -name tests -o -name test \) \
       -prune -exec rm -rf {} +
done
find "$P" \( -type d -name __pycache__ -prune -o \
             -type f \( -name '*.a' -o -name '*.pyc' -o -name '*.pyo' \) \) -exec rm -rf {} +
rm -rf "$P"/share/doc "$P"/share/man "$P"/share/info "$P"/share/gtk-doc \
       "$P"/share/help "$P"/share/devhelp
find "$P" -type f \( -name '*.so' -o -name '*.so.*' -o -perm -u+x \) STRIP_FILTER -print0 \
  | xargs -0 -r -P2 -n 32 strip --strip-debug 2>/dev/null
exit 0
"""


@dataclass(frozen=True)
class Contender:
    """One way to shrink a prefix."""

    name: str
    """Short key, used on the command line (``--only``) and in the JSON."""
    label: str
    """What the table calls it."""
    argv: tuple[str, ...]
    """The command; ``{P}`` stands for the prefix copy."""
    shrinkconda: bool = False
    """Runs shrinkconda: gets the snapshot's ``PYTHONPATH``."""

    def command(self, prefix: Path) -> list[str]:
        return [a.replace("{P}", str(prefix)) for a in self.argv]


def contenders(profiles: Sequence[str] = ()) -> list[Contender]:
    """The shell recipes, then shrinkconda with and (if it has the option) without verify,
    then shrinkconda with each of ``profiles``."""
    shell = ("bash", "-c")
    found = [
        Contender("docker", "docker recipe: conda clean -afy + find -delete *.a *.pyc *.js.map",
                  (*shell, DOCKER)),
        Contender("pywren", "pywren: rm -rf pkgs + strip --strip-all *.so + rm *.pyc",
                  (*shell, PYWREN)),
        Contender("tuned", "tuned shell: shrinkconda's removals + xargs -P2 strip --strip-debug",
                  (*shell, TUNED.replace("STRIP_FILTER", ""))),
        Contender("tuned-safe", "tuned shell, *.libs/ not stripped",
                  (*shell, TUNED.replace("STRIP_FILTER", r"-not -path '*.libs/*'"))),
        Contender("shrinkconda", "shrinkconda shrink -y (default)",
                  (*SHRINKCONDA, "shrink", "-y", "--json", "{P}"), shrinkconda=True),
    ]
    if "--no-verify" in _shrink_help():
        found.append(Contender("shrinkconda-no-verify", "shrinkconda shrink -y --no-verify",
                               (*SHRINKCONDA, "shrink", "-y", "--no-verify", "--json", "{P}"),
                               shrinkconda=True))
    for name in profiles:
        found.append(Contender(f"shrinkconda-{name}", f"shrinkconda shrink -y --profile {name}",
                               (*SHRINKCONDA, "shrink", "-y", "--profile", name, "--json",
                                "{P}"), shrinkconda=True))
    return found


def _shrink_help() -> str:
    done = subprocess.run([*SHRINKCONDA, "shrink", "--help"], capture_output=True, text=True,
                          check=False, env=shrinkconda_env())
    return done.stdout


def use_shrinkconda(mode: str, workdir: Path) -> dict[str, Any]:
    """Pin the shrinkconda every run of this benchmark measures.

    Others edit the working tree while a benchmark runs; a snapshot keeps all runs on one
    version. ``worktree`` copies ``shrinkconda/`` as it is now, ``head`` takes the last
    commit's, ``live`` runs whatever the editable install finds at each call.
    """
    state = {"mode": mode, **_tree_state()}
    if mode == "live":
        return state
    snap = workdir / "snapshots" / time.strftime("%Y%m%d-%H%M%S")
    snap.mkdir(parents=True, exist_ok=True)
    if mode == "head":
        archive = subprocess.run(["git", "archive", "HEAD", "shrinkconda"], cwd=REPO_ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(snap)], input=archive, check=True)
    else:
        shutil.copytree(REPO_ROOT / "shrinkconda", snap / "shrinkconda",
                        ignore=shutil.ignore_patterns("__pycache__"))
    _SNAPSHOT_ENV["PYTHONPATH"] = str(snap)
    state["snapshot"] = str(snap)
    check = subprocess.run([*SHRINKCONDA, "shrink", "--help"], capture_output=True, text=True,
                           check=False, env=shrinkconda_env())
    if check.returncode != 0:
        raise SystemExit(f"the shrinkconda snapshot in {snap} does not run (a half-done edit "
                         f"in the working tree?); retry, or pass --shrinkconda head:\n"
                         f"{check.stderr[-800:]}")
    return state


def shrinkconda_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment shrinkconda runs in: clean, plus the snapshot's ``PYTHONPATH``."""
    return {**CLEAN_ENV, **_SNAPSHOT_ENV, **(extra or {})}


# ---------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Timed:
    """One command's wall time, CPU time and peak RSS."""

    wall: float
    cpu: float
    maxrss: int
    """Bytes: the largest single process of the command's tree (``ru_maxrss``)."""
    returncode: int
    stdout: str
    stderr: str


def timed(cmd: Sequence[str], env: dict[str, str] | None = None,
          stdout_to_null: bool = False) -> Timed:
    """Run ``cmd`` under ``/usr/bin/time``; wall from here, CPU and RSS from ``wait4``."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        start = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%U %S %M", "-o", stats.name, *cmd],
            env=env or CLEAN_ENV, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if stdout_to_null else subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, check=False)
        wall = time.perf_counter() - start
        # A failing command makes time(1) write "Command exited with ..." first.
        user, system, rss_kib = Path(stats.name).read_text().split("\n")[-2].split()
    return Timed(wall, float(user) + float(system), int(rss_kib) * 1024, done.returncode,
                 done.stdout or "", done.stderr)


def du_bytes(path: Path) -> int:
    """``du -sb``: apparent bytes, each hard-linked inode counted once."""
    done = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0])


def run_envcheck(prefix: Path, out: Path, baseline: Path | None) -> dict[str, Any]:
    """Run the environment check with the prefix's own python; never writes into it."""
    scratch = out.parent / f"{out.stem}-home"
    scratch.mkdir(parents=True, exist_ok=True)
    env = {**CLEAN_ENV, "HOME": str(scratch), "MPLCONFIGDIR": str(scratch / "mpl"),
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "2"}
    cmd = [str(prefix / "bin" / "python"), str(ENVCHECK), str(out)]
    if baseline is not None:
        cmd += ["--modules", str(baseline)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False,
                          timeout=900)
    shutil.rmtree(scratch, ignore_errors=True)
    if done.returncode != 0 or not out.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"crashed": f"exit {done.returncode}: {tail[0][:300]}"}
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def verdict(base: dict[str, Any], after: dict[str, Any],
            removed: tuple[set[str], set[str]] = (set(), set())) -> dict[str, Any]:
    """How ``after`` differs from the untouched prefix's check ``base``.

    ``removed`` is (distributions, their top-level modules) that the contender removed
    whole on purpose (``dev-tools``, reported as ``removed_packages``): they, their
    modules and their console scripts are expected to be gone, everything else the same.
    """
    if "crashed" in after:
        return {"works": False, "python": after["crashed"]}
    gone, gone_modules = removed
    base = {**base,
            "distributions": {k: v for k, v in base["distributions"].items() if k not in gone},
            "entry_points": [e for e in base["entry_points"] if e[0] not in gone]}
    gone_scripts = {m for m in base["console_scripts"]
                    if m not in {e[2] for e in base["entry_points"]}}
    functional = {k: v for k, v in after["functional"].items() if v != "ok"}
    top = {m: v for m, v in after["top_level"].items()
           if v != "ok" and base["top_level"].get(m) == "ok" and m not in gone_modules}
    top.update({m: "no longer listed" for m in base["top_level"]
                if m not in after["top_level"] and m not in gone_modules})
    scripts = {m: v for m, v in after["console_scripts"].items()
               if v != "ok" and base["console_scripts"].get(m) == "ok" and m not in gone_scripts}
    dists = after["distributions"] == base["distributions"]
    entry_points = after["entry_points"] == base["entry_points"]
    modules = {m: v for m, v in after["modules"].items()
               if v != "ok" and m.split(".")[0] not in gone_modules}
    return {
        "works": not functional and not top and not scripts and dists and entry_points,
        "functional": functional, "top_level": top, "console_scripts": scripts,
        "distributions_same": dists, "entry_points_same": entry_points,
        "modules_checked": len(after["modules"]), "modules_failing": modules,
    }


# ---------------------------------------------------------------------------- shrink


def shrink_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Every contender on fresh copies of the realistic prefix, alternating."""
    template: Path = args.prefix.resolve()
    if not (template / "conda-meta").is_dir():
        print(f"building the realistic prefix at {template}", file=sys.stderr)
        subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "build_realistic_env.py"),
                        str(template)], check=True)
    work = args.workdir.resolve() / "shrink"
    work.mkdir(parents=True, exist_ok=True)
    chosen = [c for c in contenders(args.profile)
              if not args.only or c.name in args.only or c.name.startswith("shrinkconda-")
              and c.name[len("shrinkconda-"):] in args.profile]
    base_json = work / "envcheck-untouched.json"
    size_before = du_bytes(template)
    base = run_envcheck(template, base_json, None)
    if "crashed" in base or any(v != "ok" for v in base["functional"].values()):
        raise SystemExit(f"the untouched prefix fails its own check: {base}")
    if du_bytes(template) != size_before:
        raise SystemExit("the check wrote into the untouched prefix; fix envcheck first")
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        # Rotate the order so no contender always runs first (cold) or last.
        order = chosen[rep % len(chosen):] + chosen[:rep % len(chosen)]
        for contender in order:
            runs.append(_one_shrink(contender, rep, template, work, base_json, base))
            _progress(runs[-1])
    return {"kind": "shrink", "prefix": str(template), "size_before": size_before,
            "reps": args.reps, "machine": _machine(), "shrinkconda": args.shrinkconda_state,
            "untouched_check": {k: base[k] for k in ("distributions", "functional")}
            | {"modules_importable": sum(v == "ok" for v in base["modules"].values())},
            "contenders": [{"name": c.name, "label": c.label, "argv": list(c.argv)}
                           for c in chosen],
            "runs": runs}


def _one_shrink(contender: Contender, rep: int, template: Path, work: Path, base_json: Path,
                base: dict[str, Any]) -> dict[str, Any]:
    copy = work / f"{contender.name}-{rep}"
    if copy.exists():
        shutil.rmtree(copy)
    copy_tree(template, copy)
    subprocess.run(["sync"], check=True)  # no writeback of the copy during the timed run
    before = du_bytes(copy)
    env = {**CLEAN_ENV, "P": str(copy)}
    result = timed(contender.command(copy),
                   env=shrinkconda_env(env) if contender.shrinkconda else env)
    after = du_bytes(copy)
    check = run_envcheck(copy, work / f"envcheck-{contender.name}-{rep}.json", base_json)
    report: dict[str, Any] = {}
    if contender.name.startswith("shrinkconda") and result.stdout.strip():
        try:
            report = json.loads(result.stdout)
        except ValueError:
            report = {}
    run: dict[str, Any] = {
        "contender": contender.name, "rep": rep, "before": before, "after": after,
        "saved": before - after, "wall": result.wall, "cpu": result.cpu,
        "maxrss": result.maxrss, "returncode": result.returncode,
        "stderr_tail": result.stderr.strip().splitlines()[-5:],
        "removed_packages": report.get("removed_packages", []),
        "verdict": verdict(base, check,
                           removed_whole(template, report.get("removed_packages", []))),
    }
    if contender.name.startswith("shrinkconda") and result.stdout.strip():
        try:
            report = json.loads(result.stdout)
            run["reported_saved"] = report.get("bytes_saved")
            run["reported_errors"] = len(report.get("errors", []))
            run["by_strategy"] = {line["name"]: line["bytes_saved"]
                                  for line in report.get("strategies", [])}
            run["rolled_back"] = report.get("rolled_back")
        except ValueError:
            run["reported_saved"] = None
    shutil.rmtree(copy)
    return run


def removed_whole(template: Path, packages: Sequence[str]) -> tuple[set[str], set[str]]:
    """The distributions of ``packages`` and their top-level modules, read from the
    untouched prefix's ``*.dist-info``."""
    wanted = {p.lower().replace("_", "-") for p in packages}
    dists: set[str] = set()
    modules: set[str] = set()
    for info in template.glob("lib/python*/site-packages/*.dist-info"):
        dist = info.name[:-len(".dist-info")].rsplit("-", 1)[0]
        name = dist.lower().replace("_", "-")
        if name in wanted:
            dists.add(dist)
            top_level = info / "top_level.txt"
            if top_level.is_file():
                modules |= {m.strip() for m in top_level.read_text().splitlines() if m.strip()}
            else:
                modules.add(name.replace("-", "_"))
    return dists, modules


def _progress(run: dict[str, Any]) -> None:
    v = run["verdict"]
    print(f"  {run['contender']:<22} rep {run['rep']}  saved {run['saved'] / MIB:8.1f} MiB  "
          f"wall {run['wall']:6.2f} s  rss {run['maxrss'] / MIB:6.1f} MiB  "
          f"works={v['works']}  exit={run['returncode']}", file=sys.stderr)


def shrink_table(results: dict[str, Any]) -> str:
    """The markdown table of a shrink benchmark: medians over repetitions."""
    before = results["size_before"]
    lines = [
        f"Prefix: {before / MIB:.1f} MiB (`du -sb`), {results['reps']} repetitions, medians.",
        "",
        ("| contender | saved MiB | saved % | wall s (min–max) | CPU s | peak RSS MiB "
         "| functional | top-level imports | metadata | modules failing | works |"),
        "|---|---:|---:|---:|---:|---:|---|---|---|---:|---|",
    ]
    for contender in results["contenders"]:
        runs = [r for r in results["runs"] if r["contender"] == contender["name"]]
        if not runs:
            continue
        saved = statistics.median(r["saved"] for r in runs)
        walls = [r["wall"] for r in runs]
        verdicts = [r["verdict"] for r in runs]
        lines.append(
            f"| {contender['label']} | {saved / MIB:.1f} | {100 * saved / before:.1f} "
            f"| {statistics.median(walls):.2f} ({min(walls):.2f}–{max(walls):.2f}) "
            f"| {statistics.median(r['cpu'] for r in runs):.2f} "
            f"| {statistics.median(r['maxrss'] for r in runs) / MIB:.1f} "
            f"| {_functional_cell(verdicts[0])} | {_top_cell(verdicts[0])} "
            f"| {_metadata_cell(verdicts[0])} "
            f"| {_modules_cell(verdicts[0])} "
            f"| {_works_cell(verdicts)} |")
    return "\n".join(lines)


def strategy_table(results: dict[str, Any]) -> str:
    """Bytes each strategy saved, per shrinkconda contender (medians over repetitions)."""
    shown = [c for c in results["contenders"]
             if any("by_strategy" in r for r in results["runs"] if r["contender"] == c["name"])]
    if not shown:
        return ""
    names: list[str] = []
    medians: dict[str, dict[str, float]] = {}
    for contender in shown:
        runs = [r["by_strategy"] for r in results["runs"]
                if r["contender"] == contender["name"] and "by_strategy" in r]
        for run in runs:
            names += [n for n in run if n not in names]
        medians[contender["name"]] = {n: statistics.median(r.get(n, 0) for r in runs)
                                      for n in names}
    lines = ["| strategy | " + " | ".join(c["label"] for c in shown) + " |",
             "|---|" + "---:|" * len(shown)]
    for name in names:
        cells = [f"{medians[c['name']].get(name, 0) / MIB:.1f}" for c in shown]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _functional_cell(v: dict[str, Any]) -> str:
    if "python" in v:
        return f"python fails: {v['python'][:60]}"
    if not v["functional"]:
        return "5/5 ok"
    return "fails: " + ", ".join(sorted(v["functional"]))


def _top_cell(v: dict[str, Any]) -> str:
    if "python" in v:
        return "–"
    bad = {**v["top_level"], **v["console_scripts"]}
    return "all ok" if not bad else f"{len(bad)} fail ({', '.join(sorted(bad)[:4])})"


def _metadata_cell(v: dict[str, Any]) -> str:
    if "python" in v:
        return "–"
    same = v["distributions_same"] and v["entry_points_same"]
    return "same" if same else "changed"


def _modules_cell(v: dict[str, Any]) -> str:
    if "python" in v:
        return "–"
    return f"{len(v['modules_failing'])} / {v['modules_checked']}"


def _works_cell(verdicts: list[dict[str, Any]]) -> str:
    good = sum(v["works"] for v in verdicts)
    if good == len(verdicts):
        return "yes"
    return "**no**" if good == 0 else f"{good}/{len(verdicts)} runs"


def failure_notes(results: dict[str, Any]) -> str:
    """Per broken contender: each distinct root cause, and what it took down."""
    notes = []
    for contender in results["contenders"]:
        runs = [r for r in results["runs"] if r["contender"] == contender["name"]]
        if not runs:
            continue
        v = runs[0]["verdict"]
        causes: dict[str, list[str]] = {}
        if "python" in v:
            causes.setdefault(v["python"], []).append("python itself")
        else:
            for group, failures in (("functional", v["functional"]),
                                    ("import", v["top_level"]),
                                    ("console script", v["console_scripts"]),
                                    ("module", v["modules_failing"])):
                for name, error in failures.items():
                    cause = error.split(" (raised as:")[0]
                    causes.setdefault(cause, []).append(f"{group} {name}")
        if causes:
            lines = [f"- **{contender['label']}**"]
            for cause, hit in sorted(causes.items(), key=lambda kv: -len(kv[1])):
                shown = ", ".join(hit[:6]) + (f" and {len(hit) - 6} more" if len(hit) > 6 else "")
                lines.append(f"  - `{cause[:200]}`: {shown}")
            notes.append("\n".join(lines))
    return "\n".join(notes)


# ---------------------------------------------------------------------------- audit


def audit_bench(args: argparse.Namespace) -> dict[str, Any]:
    """``shrinkconda audit`` against find on synthetic prefixes of each size, alternating."""
    synth_dir = args.synth_dir.resolve()
    elf_from = args.prefix.resolve()
    points = []
    for size in args.sizes:
        prefix, info = ensure_synth(synth_dir, size, elf_from, args.regenerate)
        find_cmd = ["find", str(prefix), "-printf", r"%s %i %n\n"]
        audit_cmd = [*SHRINKCONDA, "audit", str(prefix)]
        timed(find_cmd, stdout_to_null=True)  # warm the dentry and inode caches for both
        runs: dict[str, list[Timed]] = {"find": [], "audit": []}
        for rep in range(args.reps):
            pair = [("find", find_cmd), ("audit", audit_cmd)]
            for name, cmd in pair if rep % 2 == 0 else pair[::-1]:
                result = timed(cmd, stdout_to_null=True,
                               env=shrinkconda_env() if name == "audit" else None)
                if result.returncode != 0:
                    raise SystemExit(f"{name} failed on {prefix}: {result.stderr[-500:]}")
                runs[name].append(result)
        point = {"target_files": size, "files": info["files"], "entries": info["entries"],
                 "prefix": str(prefix)}
        for name, results in runs.items():
            point[name] = {"walls": [r.wall for r in results],
                           "wall": statistics.median(r.wall for r in results),
                           "cpu": statistics.median(r.cpu for r in results),
                           "maxrss": max(r.maxrss for r in results)}
        points.append(point)
        print(f"  {size:>9} files: find {point['find']['wall']:.2f} s, audit "
              f"{point['audit']['wall']:.2f} s, audit rss {point['audit']['maxrss'] / MIB:.0f} "
              "MiB", file=sys.stderr)
    return {"kind": "audit", "reps": args.reps, "machine": _machine(),
            "shrinkconda": args.shrinkconda_state, "points": points}


def ensure_synth(synth_dir: Path, size: int, elf_from: Path,
                 regenerate: bool) -> tuple[Path, dict[str, Any]]:
    """The synthetic prefix of ``size`` files, generated only when missing or asked."""
    prefix = synth_dir / f"synth-{size}"
    marker = synth_dir / f"synth-{size}.json"
    if regenerate or not marker.exists() or not prefix.is_dir():
        print(f"generating {prefix}", file=sys.stderr)
        done = subprocess.run(
            [sys.executable, str(REPO_ROOT / "scripts" / "synth_prefix.py"), str(prefix),
             "--files", str(size), "--elf-from", str(elf_from), "--force"],
            capture_output=True, text=True, check=True)
        marker.write_text(done.stdout)
    info: dict[str, Any] = json.loads(marker.read_text())
    return prefix, info


def audit_table(results: dict[str, Any]) -> str:
    lines = [
        f"{results['reps']} repetitions each, alternating, warm cache, medians.",
        "",
        ("| files | entries | find wall s | audit wall s | ratio | audit CPU s "
         "| audit peak RSS MiB | find µs/entry | audit µs/entry |"),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in results["points"]:
        find, audit = p["find"], p["audit"]
        lines.append(
            f"| {p['files']:,} | {p['entries']:,} | {find['wall']:.3f} | {audit['wall']:.3f} "
            f"| {audit['wall'] / find['wall']:.1f}× | {audit['cpu']:.2f} "
            f"| {audit['maxrss'] / MIB:.0f} "
            f"| {1e6 * find['wall'] / p['entries']:.2f} "
            f"| {1e6 * audit['wall'] / p['entries']:.2f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- profile


def profile(args: argparse.Namespace) -> dict[str, Any]:
    """cProfile one audit of PREFIX, or one shrink of a fresh copy of it."""
    import pstats

    prefix: Path = args.target.resolve()
    work = args.workdir.resolve() / "profile"
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"{args.action}.prof"
    target = prefix
    if args.action == "shrink":
        target = work / "copy"
        if target.exists():
            shutil.rmtree(target)
        copy_tree(prefix, target)
        subprocess.run(["sync"], check=True)
    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "shrinkconda",
           args.action, *(["-y"] if args.action == "shrink" else []), "-q", str(target),
           *shlex.split(args.args)]
    result = timed(cmd, env=shrinkconda_env())
    if args.action == "shrink":
        shutil.rmtree(target)
    stats = pstats.Stats(str(out))
    for key in ("tottime", "cumulative"):
        print(f"\n## by {key} (wall {result.wall:.2f} s under cProfile)\n")
        stats.sort_stats(key).print_stats(args.top)
    return {"kind": "profile", "action": args.action, "wall": result.wall, "prof": str(out)}


# ---------------------------------------------------------------------------- main


def _machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in load],
            "strip": subprocess.run(["strip", "--version"], capture_output=True,
                                    text=True, check=False).stdout.splitlines()[0]}


def _tree_state() -> dict[str, Any]:
    """Which shrinkconda was measured: the commit and any uncommitted change to it."""
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()
    diff = git("diff", "HEAD", "--", "shrinkconda")
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted": git("status", "--porcelain", "--", "shrinkconda").splitlines(),
            "diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=WORKDIR,
                        help=f"copies and results go here (default {WORKDIR})")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--shrinkconda", choices=("worktree", "head", "live"),
                        default="worktree",
                        help="measure a snapshot of the working tree's shrinkconda/ taken at "
                             "start (default), of the last commit's, or whatever is live")
    parser.add_argument("--prefix", type=Path, default=None,
                        help="the realistic prefix (default WORKDIR/realistic; built if missing)")
    sub = parser.add_subparsers(dest="kind", required=True)
    shrink = sub.add_parser("shrink", help="contenders on copies of the realistic prefix")
    shrink.add_argument("--reps", type=int, default=3)
    shrink.add_argument("--only", nargs="+", metavar="NAME",
                        help="only these contenders: docker, pywren, tuned, tuned-safe, "
                             "shrinkconda, shrinkconda-no-verify (and each --profile)")
    shrink.add_argument("--profile", action="append", default=[], metavar="NAME",
                        help="also shrinkconda shrink --profile NAME (repeatable)")
    audit = sub.add_parser("audit", help="shrinkconda audit against find at scale")
    audit.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    audit.add_argument("--reps", type=int, default=3)
    audit.add_argument("--synth-dir", type=Path, default=None,
                       help="where the synthetic prefixes live (default WORKDIR)")
    audit.add_argument("--regenerate", action="store_true",
                       help="regenerate the synthetic prefixes even if present")
    used_by = sub.add_parser("used-by", help="--used-by against its floor and PyInstaller "
                             "(scripts/bench_used_by.py)")
    used_by.add_argument("--reps", type=int, default=3, help="runs of each app, timed")
    used_by.add_argument("--no-pyinstaller", action="store_true")
    startup = sub.add_parser("startup", help="bytes and read-only cold start of every "
                             "contender, profile and --python-code form "
                             "(scripts/bench_startup.py)")
    startup.add_argument("--reps", type=int, default=7, help="starts of each contender")
    startup.add_argument("--no-pyinstaller", action="store_true")
    startup.add_argument("--only", nargs="+", metavar="NAME",
                         help="only these contenders (the unshrunk env always runs)")
    startup.add_argument("--python", default=None, metavar="X.Y[t]",
                         help="the realistic env for this interpreter (default the host's; "
                              "its prefix defaults to WORKDIR/realistic-X.Y[t])")
    gpu = sub.add_parser("gpu", help="the realistic env plus pip install torch: bytes per "
                         "profile and --used-by, import torch (scripts/bench_gpu.py)")
    gpu.add_argument("--env", type=Path, default=Path("/work/cache/gpu/torch-env"),
                     help="the torch env (built there once)")
    gpu.add_argument("--wheels", type=Path, default=Path("/work/cache/torch-wheels"),
                     help="where torch's wheels are downloaded once")
    gpu.add_argument("--reps", type=int, default=3, help="cold starts of import torch")
    gpu.add_argument("--only", nargs="+", metavar="NAME", default=[],
                     help="only these contenders: safe, aggressive, used-by")
    prof = sub.add_parser("profile", help="cProfile one shrinkconda audit or shrink")
    prof.add_argument("action", choices=("audit", "shrink"))
    prof.add_argument("target", type=Path, help="the prefix (shrink works on a copy)")
    prof.add_argument("--top", type=int, default=25)
    prof.add_argument("--args", default="", metavar="OPTIONS",
                      help="more shrinkconda options, one string: --args='--no-verify'")
    args = parser.parse_args(argv)
    label = getattr(args, "python", None)
    args.prefix = args.prefix or args.workdir / ("realistic" + (f"-{label}" if label else ""))
    args.shrinkconda_state = use_shrinkconda(args.shrinkconda, args.workdir.resolve())
    if args.kind == "audit":
        args.synth_dir = args.synth_dir or args.workdir

    if args.kind == "shrink":
        results = shrink_bench(args)
        print(shrink_table(results))
        print("\nMiB saved per strategy:\n\n" + strategy_table(results))
        notes = failure_notes(results)
        if notes:
            print("\nWhat broke:\n\n" + notes)
    elif args.kind == "audit":
        results = audit_bench(args)
        print(audit_table(results))
    elif args.kind == "used-by":
        from bench_used_by import used_by_bench, used_by_table

        results = used_by_bench(args, shrinkconda_env(), copy_tree)
        print(used_by_table(results))
    elif args.kind == "startup":
        from bench_startup import startup_bench, startup_table

        results = startup_bench(args, shrinkconda_env(), copy_tree)
        print(startup_table(results))
    elif args.kind == "gpu":
        from bench_gpu import gpu_bench, gpu_table

        results = gpu_bench(args.env, args.wheels, args.workdir / "gpu", args.reps, args.only,
                            shrinkconda_env())
        print(gpu_table(results))
    else:
        results = profile(args)
    out = args.out or args.workdir / f"results-{args.kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nresults: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
