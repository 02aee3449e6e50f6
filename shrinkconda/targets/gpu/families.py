"""GPU library families as data: which libraries a GPU host loads on demand (``dlopen``
at the first GPU call that needs them, never on a machine without a GPU), and which
library's presence means they may be wanted.

On a CPU-only builder, ``import torch`` maps only ``libtorch_cuda.so``'s NEEDED
libraries; cuDNN's sub-libraries, ``libtorch_cuda_linalg.so`` (cuSOLVER), NVRTC's
builtins and CUPTI load at the first convolution, solve or profile on a GPU. A trace
there cannot see them, so a family stays whole whenever its loader stays.

Both layouts are covered: pip's (``site-packages/nvidia/*/lib``, ``torch/lib``,
``triton/backends/nvidia``) and conda-forge's (``lib/`` and ``targets/<arch>/lib``, with
``lib/`` symlinks into it). A plugin adds a family (or replaces a built-in one, by
reusing its name) through the entry-point group ``shrinkconda.gpu_families``::

    [project.entry-points."shrinkconda.gpu_families"]
    mylib-cuda = "mypkg.shrink:FAMILY"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shrinkconda import plugins
from shrinkconda.errors import ShrinkError
from shrinkconda.scan import Problem

ENTRY_POINT_GROUP = "shrinkconda.gpu_families"

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

NVIDIA_DIRS = (
    "lib/python3*/site-packages/nvidia/*/lib",  # pip: nvidia-cudnn-cu13, nvidia-cu13 ...
    "lib",  # conda-forge: the libraries, or symlinks into targets/
    "targets/*/lib",  # conda-forge CUDA 12+: targets/x86_64-linux/lib
)
"""Where NVIDIA's libraries are, relative to the prefix (globs)."""
TORCH_DIRS = ("lib/python3*/site-packages/torch/lib", "lib")
"""Where torch's own libraries are: pip's wheel, conda-forge's ``pytorch``."""
TRITON_DIRS = ("lib/python3*/site-packages/triton/_C",
               "lib/python3*/site-packages/triton/backends/nvidia/bin",
               "lib/python3*/site-packages/triton/backends/nvidia/lib",
               "lib/python3*/site-packages/triton/backends/nvidia/lib/cupti*")


class FamilyError(ShrinkError):
    """A GPU family is malformed, or two plugins share a name."""


@dataclass(frozen=True)
class Member:
    """Libraries (or tools) of one kind: every file in the family's directories whose
    name matches ``pattern``, a symlink chain and its target together."""

    pattern: str
    """A file-name glob (``libcudnn_ops.so*``, ``ptxas``)."""
    on_demand: bool = True
    """Loaded (or run) at the first GPU call that needs it; ``False``: NEEDED by a
    library that loads at import, so a trace without a GPU sees it too."""


@dataclass(frozen=True)
class Family:
    """Libraries a loader brings in when a GPU asks for them."""

    name: str
    """Lower-case words joined by hyphens (``cudnn``)."""
    summary: str
    """One line for the report."""
    loaders: tuple[str, ...]
    """File-name globs of the libraries that load the members: while one of them
    stays, every member stays."""
    members: tuple[Member, ...]
    directories: tuple[str, ...] = NVIDIA_DIRS
    """Globs (relative to the prefix) of the directories holding loaders and members."""
    origin: str = "built-in"
    """``built-in`` or the entry point that registered it."""

    def __post_init__(self) -> None:
        where = f"GPU family {self.name!r} ({self.origin})"
        if not _NAME.match(self.name):
            raise FamilyError(f"invalid {where}: use lower-case words joined by hyphens")
        if not self.loaders or not self.members or not self.directories:
            raise FamilyError(f"{where}: needs loaders, members and directories")
        if any("/" in g for g in (*self.loaders, *(m.pattern for m in self.members))):
            raise FamilyError(f"{where}: loaders and members are file names, not paths")

    def patterns(self) -> tuple[str, ...]:
        """Every file-name glob the family names."""
        return (*self.loaders, *(m.pattern for m in self.members))


def _on_demand(*patterns: str) -> tuple[Member, ...]:
    return tuple(Member(p) for p in patterns)


BUILTIN: tuple[Family, ...] = (
    Family("cudnn", "cuDNN's sub-libraries, loaded by libcudnn at the first cuDNN call",
           ("libcudnn.so*",),
           (Member("libcudnn.so*", on_demand=False),
            *_on_demand("libcudnn_adv.so*", "libcudnn_cnn.so*", "libcudnn_ops.so*",
                        "libcudnn_graph.so*", "libcudnn_heuristic.so*", "libcudnn_ext.so*",
                        "libcudnn_engines_precompiled.so*",
                        "libcudnn_engines_runtime_compiled.so*",
                        "libcudnn_engines_tensor_ir.so*"))),
    Family("cublas", "cuBLAS with cuBLASLt", ("libcublas.so*", "libcublasLt.so*"),
           (Member("libcublas.so*", on_demand=False), Member("libcublasLt.so*", False))),
    Family("nvrtc", "NVRTC and the builtins it loads when it compiles", ("libnvrtc.so*",),
           (Member("libnvrtc.so*", on_demand=False), *_on_demand("libnvrtc-builtins.so*"))),
    # A build of NVRTC of its own, for programs linked against it: nothing in torch,
    # triton or cuda-python's loader (cuda.pathfinder) names it, so it stays only for a
    # workload that loads it.
    Family("nvrtc-alt", "NVRTC's alternative build (libnvrtc.alt) and the builtins it "
           "loads", ("libnvrtc.alt.so*",),
           _on_demand("libnvrtc.alt.so*", "libnvrtc-builtins.alt.so*")),
    # cuSOLVER loads nothing on demand (torch's libtorch_cuda_linalg, which NEEDs it, is
    # torch-cuda's). Its multi-GPU API is a library of its own: libcusolver does not load
    # it, and nothing in torch or triton names it (cuda.pathfinder's table of every CUDA
    # library does, for a caller that asks by name). Its own loader, on demand: it stays
    # under --used-by when a workload loaded it.
    Family("cusolvermg", "cuSOLVERMg, cuSOLVER's multi-GPU API", ("libcusolverMg.so*",),
           _on_demand("libcusolverMg.so*")),
    Family("cusparse", "cuSPARSE with nvJitLink", ("libcusparse.so*",),
           (Member("libcusparse.so*", on_demand=False), Member("libnvJitLink.so*", False))),
    Family("cufft", "cuFFT", ("libcufft.so*",),
           (Member("libcufft.so*", on_demand=False), *_on_demand("libcufftw.so*"))),
    Family("curand", "cuRAND", ("libcurand.so*",), (Member("libcurand.so*", False),)),
    Family("nccl", "NCCL and its network plugins", ("libnccl.so*",),
           (Member("libnccl.so*", on_demand=False),
            *_on_demand("libnccl-net*.so*", "libnccl_device*"))),
    Family("cufile", "cuFile (GPUDirect Storage) and its RDMA library", ("libcufile.so*",),
           (Member("libcufile.so*", on_demand=False), *_on_demand("libcufile_rdma.so*"))),
    Family("nvshmem", "NVSHMEM's bootstrap and transport plugins",
           ("libnvshmem_host.so*",),
           (Member("libnvshmem_host.so*", on_demand=False),
            *_on_demand("nvshmem_bootstrap_*.so*", "nvshmem_transport_*.so*",
                        "libnvshmem_device*"))),
    Family("nvjitlink", "nvJitLink", ("libnvJitLink.so*",), (Member("libnvJitLink.so*", False),)),
    Family("cupti", "CUPTI and the profiling libraries it loads", ("libcupti.so*",),
           (Member("libcupti.so*", on_demand=False),
            *_on_demand("libnvperf_host.so*", "libnvperf_target.so*",
                        "libpcsamplingutil.so*", "libcheckpoint.so*"))),
    Family("torch-cuda", "torch's CUDA pieces loaded at the first call that needs them: "
           "linear algebra (cuSOLVER), NVRTC, CUPTI, NVTX",
           ("libtorch_cuda.so",),
           (Member("libtorch_cuda.so", on_demand=False),
            # libtorch_cuda.so NEEDs these (torch 2.14): import loads them on any host
            Member("libtorch_nvshmem.so", on_demand=False),
            Member("libnvrtc.so*", on_demand=False),
            *_on_demand("libtorch_cuda_linalg.so", "libcaffe2_nvrtc.so",
                        "libcusolver.so*", "libcupti.so*",
                        "libnvToolsExt.so*", "libnvtx3interop.so*",
                        "libnvrtc-builtins.so*")),
           (*TORCH_DIRS, *NVIDIA_DIRS)),
    Family("triton-nvidia", "triton's NVIDIA backend tools (ptxas, cuobjdump, nvdisasm) "
           "and CUPTI, run when a kernel is compiled",
           ("libtriton.so",),
           (Member("libtriton.so", on_demand=False),
            *_on_demand("ptxas", "ptxas-*", "cuobjdump", "nvdisasm", "libproton.so",
                        "libdevice*.bc", "*.ll", "libcupti.so*", "libnvperf_*.so*",
                        "libpcsamplingutil.so*")),
           TRITON_DIRS),
)
"""CUDA 12-13 as PyPI's ``nvidia-*`` wheels, conda-forge, torch 2.x and triton 3.x ship
it."""


def available() -> tuple[tuple[Family, ...], tuple[Problem, ...]]:
    """The built-in families then the plugins' (a plugin reusing a built-in's name
    replaces it), and the plugins that failed to load."""
    return plugins.load_replacing(ENTRY_POINT_GROUP, BUILTIN, Family, "GPU families",
                                  "GPU family plugin", FamilyError)
