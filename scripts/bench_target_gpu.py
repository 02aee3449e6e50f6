#!/usr/bin/env python3
"""``--target-gpu`` on a PyTorch/CUDA env: device code per architecture, bytes per
library before and after each target, and what a shrink frees beyond the default.

    .venv/bin/python scripts/bench_target_gpu.py --env /path/to/torch-env \\
        [--workdir /tmp/shrinkconda-bench] [--shrink] [TARGET ...]

``--env`` is a conda env with ``pip install torch==2.14.1`` (it is never changed). The
audits read it as it is; with ``--shrink``, a copy per target is shrunk with a CPU
workload as ``--verify-command``, and ``import torch`` is timed in it (median of five
fresh processes). Prints the markdown tables of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from shrinkconda import Options, audit, shrink
from shrinkconda.scan import scan
from shrinkconda.targets.gpu import archs, phase, rewrite

MIB = 1 << 20
TARGETS = ("sm_90", "sm_80,sm_90", "sm_86", "none")
CPU_WORKLOAD = """\
import torch
torch.manual_seed(0)
a = torch.randn(64, 64)
assert torch.allclose(a @ torch.eye(64), a)
x = torch.randn(2, 3, 16, 16)
w = torch.zeros(4, 3, 3, 3); w[:, :, 1, 1] = 1
assert torch.allclose(torch.nn.functional.conv2d(x, w, padding=1)[:, 0], x.sum(1), atol=1e-5)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
inp, target = torch.randn(32, 8), torch.randn(32, 1)
losses = []
for _ in range(20):
    loss = torch.nn.functional.mse_loss(model(inp), target)
    losses.append(loss.item())
    opt.zero_grad(); loss.backward(); opt.step()
assert losses[-1] < losses[0]
print("cpu ok")
"""


def mib(n: float) -> str:
    return f"{n / MIB:,.1f}"


def import_seconds(env: Path) -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([str(env / "bin/python"), "-c", "import torch"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/shrinkconda-bench"))
    parser.add_argument("--shrink", action="store_true")
    parser.add_argument("targets", nargs="*", default=list(TARGETS))
    args = parser.parse_args()
    the_scan = scan(args.env)
    libraries, _ = phase.find(the_scan, bytearray(len(the_scan)))
    per_arch: dict[str, int] = defaultdict(int)
    for lib in libraries:
        for label, size in lib.fat.by_arch().items():
            per_arch[label] += size
    print(f"Device code: {mib(sum(per_arch.values()))} MiB in {len(libraries)} files\n")
    print("| architecture | cubin MiB | PTX MiB |\n|---|---:|---:|")
    for arch in sorted({int(k.split()[0][3:]) for k in per_arch}):
        print(f"| sm_{arch} | {mib(per_arch.get(f'sm_{arch} cubin', 0))} | "
              f"{mib(per_arch.get(f'sm_{arch} PTX', 0))} |")
    print("\n| library | bytes before (MiB) | "
          + " | ".join(f"`{t}` after" for t in args.targets) + " |")
    print("|---|---:|" + "---:|" * len(args.targets))
    for lib in sorted(libraries, key=lambda lib: -lib.fat.size):
        if not lib.verdict.rewrite:
            continue
        path = the_scan.prefix / the_scan.paths[lib.index]
        cells = []
        for asked in args.targets:
            target = archs.target(asked)
            assert target is not None
            try:
                cells.append(mib(rewrite.prepare(str(path), target).after))
            except rewrite.RewriteUnsupported as exc:
                cells.append(f"whole ({exc})")
        print(f"| {the_scan.paths[lib.index].split('site-packages/')[-1]} | "
              f"{mib(the_scan.sizes[lib.index])} | " + " | ".join(cells) + " |")
    default = audit(args.env)
    print(f"\nDefault shrink (audit): {mib(default.size_before)} -> {mib(default.size_after)} MiB")
    print("\n| `--target-gpu` | env after (audit) | env after (shrink) | beyond the default "
          "| CPU workload | `import torch` s |\n|---|---:|---:|---:|---|---:|")
    app = args.workdir / "cpu_workload.py"
    args.workdir.mkdir(parents=True, exist_ok=True)
    app.write_text(CPU_WORKLOAD)
    for asked in args.targets:
        predicted = audit(args.env, Options(target_gpu=asked))
        shrunk, workload, seconds = "-", "-", "-"
        if args.shrink:
            copy = args.workdir / "env"
            shutil.rmtree(copy, ignore_errors=True)
            subprocess.run(["cp", "-a", str(args.env), str(copy)], check=True)
            report = shrink(copy, Options(target_gpu=asked,
                                          verify_commands=(f"python {app}",)))
            shrunk = mib(report.size_after)
            workload = "rolled back" if report.rolled_back else "passes"
            seconds = f"{import_seconds(copy):.1f}"
        print(f"| `{asked}` | {mib(predicted.size_after)} | {shrunk} | "
              f"{mib(default.size_after - predicted.size_after)} | {workload} | {seconds} |")


if __name__ == "__main__":
    main()
