#!/usr/bin/env python3
"""``--target-cpu`` on oneMKL: the ``mkl`` package's bytes before and after per level.

    .venv/bin/python scripts/bench_target_cpu.py [--workdir /tmp/shrinkconda-bench]

Builds (once) a base-install prefix with python, numpy 2.3.5, mkl 2026.2.1, intel-openmp
and tbb from the PyPI wheels (``fixtures/mkl.py``), audits it with no target and with
each level, and with ``--used-by`` of a BLAS/VML program without and with x86_64_v3 (``--by package`` gives the ``mkl`` row), shrinks a copy per level to check
the audit and call BLAS/VML, and prints the markdown tables of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from fixtures.install import copy_tree
from fixtures.mkl import BLAS_VML_APP, build_mkl_prefix
from shrinkconda import Options, audit, shrink
from shrinkconda.render.breakdown import Wanted
from shrinkconda.render.report import Report
from shrinkconda.targets.cpu.levels import LEVELS

NUMPY = "numpy==2.3.5"
MIB = 1 << 20
#: What oneMKL loads with the default layers: on any AMD CPU, and on an Intel AVX2 one.
AMD = ("rt", "core", "def", "vml_def", "intel_lp64", "intel_thread")
AVX2 = (*AMD, "avx2", "vml_avx2")


def mkl_row(report: Report) -> tuple[int, int]:
    """(bytes of the mkl package, bytes the shrink takes from it)."""
    for package in report.packages or ():
        if package.name == "mkl":
            return package.size, package.bytes_saved
    raise SystemExit("no mkl package in the report")


def set_bytes(prefix: Path, names: tuple[str, ...]) -> int:
    return sum((prefix / "lib" / f"libmkl_{n}.so.3").stat().st_size for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/shrinkconda-bench"))
    args = parser.parse_args()
    prefix = args.workdir / "mkl"
    if not (prefix / "conda-meta").is_dir():
        build_mkl_prefix(prefix, NUMPY)
    print("| `--target-cpu` | mkl before | mkl after | env after (audit) | env after (shrink) "
          "| freed beyond the same shrink without a target | BLAS/VML after |")
    print("|---|---:|---:|---:|---:|---:|---|")
    app = args.workdir / "blas_vml.py"
    app.write_bytes(BLAS_VML_APP)
    used_by = (f"python {app}",)
    default_after = 0
    runs = [(level, ()) for level in (None, *LEVELS)] + [(None, used_by), ("x86_64_v3", used_by)]
    for level, traced in runs:
        options = Options(target_cpu=level, used_by=traced, extras=Wanted(by_package=True))
        predicted = audit(prefix, options)
        size, saved = mkl_row(predicted)
        copy = copy_tree(prefix, args.workdir / "mkl-copy")
        try:
            done = shrink(copy, Options(target_cpu=level, used_by=traced))
            app = subprocess.run([str(copy / "bin" / "python"), "-c", BLAS_VML_APP.decode()],
                                 capture_output=True, text=True, check=False,
                                 env={"PATH": "/usr/bin:/bin"})
            works = "ok" if app.returncode == 0 and not done.rolled_back else "BROKEN"
        finally:
            shutil.rmtree(copy)
        if level is None:
            default_after = done.size_after
        label = (level or "(none)") + (" + `--used-by 'python blas_vml.py'`" if traced else "")
        print(f"| {label} | {size / MIB:.1f} MiB | {(size - saved) / MIB:.1f} MiB "
              f"| {predicted.size_after / MIB:.1f} MiB | {done.size_after / MIB:.1f} MiB "
              f"| {(default_after - done.size_after) / MIB:.1f} MiB | {works} |")
    print()
    print("| minimal set (default layers) | libraries | bytes |")
    print("|---|---|---:|")
    for label, names in (("any AMD", AMD), ("Intel AVX2 + any AMD", AVX2)):
        listed = ", ".join(f"`{n}`" for n in names)
        print(f"| {label} | {listed} | {set_bytes(prefix, names) / 1e6:.1f} MB |")


if __name__ == "__main__":
    main()
