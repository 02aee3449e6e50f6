"""Whose device code ``--target-gpu`` may rewrite: libraries of open-source projects
whose licence allows modification; never NVIDIA's redistributables, whose licence
forbids it (section 2.2 of the ``License.txt`` in their wheels' dist-info)."""

from __future__ import annotations

from dataclasses import dataclass

from shrinkconda.scan import Scan

#: Top-level directories in site-packages of pip-installed projects whose licence
#: allows modification, and the licence.
OPEN_TOPS = {
    "torch": "torch (BSD-3-Clause)",
    "triton": "triton (MIT)",
    "cupy": "cupy (MIT)",
    "cupy_backends": "cupy (MIT)",
    "jaxlib": "jaxlib (Apache-2.0)",
    "jax_plugins": "jax CUDA plugins (Apache-2.0)",
    "onnxruntime": "onnxruntime (MIT)",
}
#: conda packages of the same projects.
OPEN_PACKAGES = {
    "pytorch": "pytorch (BSD-3-Clause)", "libtorch": "libtorch (BSD-3-Clause)",
    "triton": "triton (MIT)", "cupy": "cupy (MIT)", "cupy-core": "cupy (MIT)",
    "jaxlib": "jaxlib (Apache-2.0)", "onnxruntime": "onnxruntime (MIT)",
}
#: conda packages of NVIDIA's redistributables (the ``nvidia-*`` wheels' counterparts).
NVIDIA_PACKAGE_PREFIXES = (
    "cuda-", "libcublas", "libcudnn", "cudnn", "libcufft", "libcurand", "libcusolver",
    "libcusparse", "libnvjitlink", "libnvjpeg", "libnpp", "libcufile", "libnccl", "nccl",
    "libcutensor", "cutensor", "libcudss", "libnvrtc", "libnvshmem", "nvshmem", "tensorrt",
    "libnvinfer", "libcusparselt", "cusparselt",
)
NVIDIA_REASON = ("NVIDIA's licence forbids modifying its redistributables (section 2.2 of "
                 "the License.txt in their dist-info)")
UNKNOWN_REASON = "its licence is not known to allow modification"


@dataclass(frozen=True)
class Verdict:
    """Whether a library's device code may be rewritten, and why."""

    rewrite: bool
    reason: str
    """The licence that allows it, or why not."""
    nvidia: bool = False
    """One of NVIDIA's redistributables."""


def verdict(scan: Scan, index: int) -> Verdict:
    """May the library at ``index`` be rewritten? By the conda package that installed
    it, else by its top-level directory in site-packages (pip writes no record)."""
    owner = scan.owners[index]
    if owner >= 0:
        name = scan.owner_names[owner].rsplit("-", 2)[0]
        if name in OPEN_PACKAGES:
            return Verdict(True, OPEN_PACKAGES[name])
        if name.startswith(NVIDIA_PACKAGE_PREFIXES) or name.startswith("nvidia-"):
            return Verdict(False, NVIDIA_REASON, nvidia=True)
    top = _site_top(scan.paths[index])
    if top == "nvidia" or top.startswith("nvidia_"):
        return Verdict(False, NVIDIA_REASON, nvidia=True)
    if top in OPEN_TOPS:
        return Verdict(True, OPEN_TOPS[top])
    return Verdict(False, UNKNOWN_REASON)


def _site_top(path: str) -> str:
    """``torch`` for ``lib/python3.11/site-packages/torch/lib/x.so``; "" elsewhere."""
    parts = path.split("/")
    if "site-packages" in parts:
        rest = parts[parts.index("site-packages") + 1:]
        return rest[0] if len(rest) > 1 else ""
    return ""
