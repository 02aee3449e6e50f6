"""Whose device code ``--target-gpu`` may rewrite: libraries of open-source projects
whose licence allows modification; never NVIDIA's redistributables, whose licence
forbids it (section 2.2 of the ``License.txt`` in their wheels' dist-info)."""

from __future__ import annotations

from collections.abc import Iterable
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
        name = _package_name(scan.owner_names[owner])
        if name in OPEN_PACKAGES:
            return Verdict(True, OPEN_PACKAGES[name])
        if _is_nvidia_package(name):
            return Verdict(False, NVIDIA_REASON, nvidia=True)
    if _nvidia_path(scan.paths[index]):
        return Verdict(False, NVIDIA_REASON, nvidia=True)
    top = _site_top(scan.paths[index])
    if top in OPEN_TOPS:
        return Verdict(True, OPEN_TOPS[top])
    return Verdict(False, UNKNOWN_REASON)


def nvidia(scan: Scan, indices: Iterable[int]) -> set[int]:
    """Of ``indices``, NVIDIA's redistributables, which nothing may modify (strip
    included). Reads ``conda-meta`` only when a record is one of NVIDIA's packages."""
    conda = any(_is_nvidia_package(_package_name(n)) for n in scan.owner_names)
    return {i for i in indices if _nvidia_path(scan.paths[i]) or (
        conda and scan.owners[i] >= 0
        and _is_nvidia_package(_package_name(scan.owner_names[scan.owners[i]])))}


def _nvidia_path(path: str) -> bool:
    top = _site_top(path)
    return top == "nvidia" or top.startswith("nvidia_")


def _package_name(record: str) -> str:
    """``libcublas`` for ``libcublas-13.1.1.3-h0_0``."""
    return record.rsplit("-", 2)[0]


def _is_nvidia_package(name: str) -> bool:
    return name.startswith(NVIDIA_PACKAGE_PREFIXES) or name.startswith("nvidia-")


def _site_top(path: str) -> str:
    """``torch`` for ``lib/python3.11/site-packages/torch/lib/x.so``; "" elsewhere."""
    parts = path.split("/")
    if "site-packages" in parts:
        rest = parts[parts.index("site-packages") + 1:]
        return rest[0] if len(rest) > 1 else ""
    return ""
