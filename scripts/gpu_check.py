#!/usr/bin/env python3
"""Run torch's GPU paths in an env after a ``--target-gpu`` shrink: a cuBLAS matmul, a
cuDNN convolution, a kernel of ``libtorch_cuda.so`` and an NVRTC-compiled kernel.

Run it with the env's own python (``/opt/env/bin/python scripts/gpu_check.py``). On a
machine without a GPU it prints why it skipped and exits 0; on a GPU it exits 1 at the
first path that fails, naming it.
"""

from __future__ import annotations

import glob
import shutil
import sys


def _skip(why: str) -> None:
    print(f"gpu_check: skipped: {why}")
    sys.exit(0)


def main() -> int:
    """Each GPU path in turn; 0 when all ran and gave the right answer."""
    if not glob.glob("/dev/nvidia[0-9]*") and not shutil.which("nvidia-smi"):
        _skip("no NVIDIA GPU on this machine (no /dev/nvidia* device, no nvidia-smi)")
    import torch  # type: ignore[import-not-found]  # the env's, not this venv's

    if not torch.cuda.is_available():
        _skip("torch sees no CUDA device")
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    major, minor = torch.cuda.get_device_capability(0)
    print(f"gpu_check: {name}, sm_{major}{minor}, torch {torch.__version__}")

    def check(what: str, ok: bool) -> None:
        print(f"gpu_check: {what}: {'ok' if ok else 'WRONG'}")
        if not ok:
            sys.exit(1)

    a = torch.randn(256, 256, device=device)
    b = torch.randn(256, 256, device=device)
    check("cuBLAS matmul", torch.allclose((a @ b).cpu(), a.cpu() @ b.cpu(), atol=1e-2))
    x = torch.randn(2, 3, 16, 16, device=device)
    w = torch.randn(4, 3, 3, 3, device=device)
    torch.backends.cudnn.enabled = True
    conv = torch.nn.functional.conv2d(x, w)
    check("cuDNN conv2d", torch.allclose(conv.cpu(), torch.nn.functional.conv2d(x.cpu(), w.cpu()),
                                         atol=1e-3))
    v = torch.arange(1000, device=device, dtype=torch.float32)
    check("libtorch_cuda kernels (sort, cumsum)",
          torch.equal(v.flip(0).sort().values.cpu(), v.cpu())
          and float(v.cumsum(0)[-1]) == 499500.0)
    from torch.cuda import jiterator  # type: ignore[import-not-found]

    code = "template <typename T> T twice(T x) { return x + x; }"
    twice = jiterator._create_jit_fn(code)
    check("NVRTC (jiterator)", torch.equal(twice(v).cpu(), (v + v).cpu()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
