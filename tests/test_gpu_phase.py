"""``--target-gpu`` end to end on a real prefix holding real ``nvcc`` libraries: what
the audit reports, what the shrink rewrites and what it must leave whole."""

from __future__ import annotations

import glob
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures import cuda
from fixtures.install import copy_tree
from shrinkconda.phases import elf
from shrinkconda.pipeline import Options, audit, shrink
from shrinkconda.targets.gpu import fatbin, licences
from tests.treeutil import run_cli

OPEN = "torch/lib/libtorch_fake.so"
TIGHT = "torch/lib/libtight.so"
BROKEN = "torch/lib/libbroken.so"
NVIDIA = "nvidia/cublas/lib/libcublas_fake.so.13"
OTHER = "someproject/libgpu.so"
DEBUG_NVIDIA = "nvidia/cufft/lib/libdebug.so"
DEBUG_OTHER = "someproject/libdebug.so"
#: An NVIDIA project under an open-source licence (NCCL ships BSD-3-Clause): modifiable.
DEBUG_NCCL = "nvidia/nccl/lib/libdebug.so"
NCCL_DIST = "nvidia_nccl_cu13-2.30.7.dist-info"
BSD = """\
 Copyright (c) 2015-2020, NVIDIA CORPORATION. All rights reserved.

 Redistribution and use in source and binary forms, with or without
 modification, are permitted provided that the following conditions
 are met:
  * Redistributions of source code must retain the above copyright
    notice, this list of conditions and the following disclaimer.
  * Neither the name of NVIDIA CORPORATION nor the names of its
    contributors may be used to endorse or promote products derived
    from this software without specific prior written permission.

 THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS ``AS IS'' AND ANY
 EXPRESS OR IMPLIED WARRANTIES ARE DISCLAIMED.
"""
TRITON = "triton/backends"
BLACKWELL_ONLY = (f"{TRITON}/nvidia/bin/ptxas-blackwell",
                  f"{TRITON}/nvidia/lib/cupti-blackwell/libcupti.so.13",
                  f"{TRITON}/nvidia/lib/cupti-blackwell/libnvperf_host.so")
#: triton imports its AMD backend at ``import triton`` (an entry point): it stays.
TRITON_STAYS = (f"{TRITON}/nvidia/bin/ptxas", f"{TRITON}/nvidia/lib/cupti/libcupti.so.12",
                f"{TRITON}/amd/compiler.py")


@pytest.fixture(scope="module")
def template_gpu(template_prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture prefix plus GPU libraries as pip installs them (no conda record)."""
    root = copy_tree(template_prefix, tmp_path_factory.mktemp("gpu") / "prefix")
    site = Path(glob.glob(str(root / "lib/python3.*/site-packages"))[0])
    big = cuda.build_library("big")
    for rel, src in ((OPEN, big), (NVIDIA, big), (OTHER, big),
                     (TIGHT, cuda.build_library("tight", room=False)),
                     (BROKEN, big)):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, site / rel)
    c_file = tmp_path_factory.mktemp("c") / "debug.c"
    c_file.write_text("int answer(void) { return 42; }\n")
    for rel in (DEBUG_NVIDIA, DEBUG_OTHER, DEBUG_NCCL):  # host code with debug info
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-g", "-shared", "-fPIC", "-o", str(site / rel), str(c_file)],
                       check=True)
    nccl = site / NCCL_DIST
    (nccl / "licenses").mkdir(parents=True)
    (nccl / "licenses" / "License.txt").write_text(BSD)
    (nccl / "METADATA").write_text("Metadata-Version: 2.4\nName: nvidia-nccl-cu13\n"
                                   "Version: 2.30.7\nLicense-Expression: "
                                   "LicenseRef-NVIDIA-Proprietary\nLicense-File: License.txt\n")
    (nccl / "RECORD").write_text(f"{DEBUG_NCCL},,\n{NCCL_DIST}/RECORD,,\n")
    for rel in (*BLACKWELL_ONLY, *TRITON_STAYS):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(b"\0" * 5000)
    broken = site / BROKEN
    section = fatbin.section(elf.read(broken))
    assert section is not None
    with open(broken, "r+b") as f:  # the second entry's payload size runs past the end
        f.seek(section.offset + 16 + 8)
        f.write(struct.pack("<Q", 1 << 40))
    return root


@pytest.fixture
def gpu_prefix(template_gpu: Path, tmp_path: Path) -> Iterator[Path]:
    copy = copy_tree(template_gpu, tmp_path / "prefix")
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


def _site(root: Path) -> str:
    return str(Path(glob.glob(str(root / "lib/python3.*/site-packages"))[0]).relative_to(root))


def test_the_audit_reports_device_code_and_what_stays_whole(template_gpu: Path) -> None:
    site = _site(template_gpu)
    report = audit(template_gpu, Options(target_gpu="sm_90"))
    device = [n for n in report.notes if n.startswith("device code:")]
    assert device[0].startswith("device code: ") and "in 4 files" in device[0]
    assert all(label in device[0] for label in ("sm_75 cubin", "sm_80 cubin", "sm_90 cubin",
                                                 "sm_90 PTX"))
    kept = {k.path: k.reason for k in report.kept}
    assert kept[f"{site}/{NVIDIA}"].startswith(licences.NVIDIA_REASON)
    assert "for other GPUs than sm_90" in kept[f"{site}/{NVIDIA}"]
    assert kept[f"{site}/{OTHER}"].startswith(licences.UNKNOWN_REASON)
    errors = {p.path: p.message for p in report.errors}
    assert "no room for one more program header" in errors[f"{site}/{TIGHT}"]
    assert errors[f"{site}/{BROKEN}"].startswith("left whole: ")
    gpu_line = next(line for line in report.lines if line.name == "gpu-code")
    assert gpu_line.saving.files == 1 and gpu_line.saving.bytes > 0


def test_shrink_rewrites_only_the_open_library(template_gpu: Path, gpu_prefix: Path) -> None:
    site = gpu_prefix / _site(gpu_prefix)
    before = {rel: (site / rel).read_bytes()
              for rel in (NVIDIA, OTHER, TIGHT, BROKEN, DEBUG_NVIDIA, DEBUG_OTHER)}
    before_nccl = (site / DEBUG_NCCL).read_bytes()
    default = audit(template_gpu)
    predicted = audit(template_gpu, Options(target_gpu="sm_90"))
    check = f"{gpu_prefix}/bin/python -c '{cuda.HOST_CALLS}' {site / OPEN}"
    report = shrink(gpu_prefix, Options(target_gpu="sm_90", verify_commands=(check,)))
    assert not report.rolled_back, report.broken
    assert report.bytes_saved > default.bytes_saved
    assert abs(predicted.size_after - report.size_after) <= 0.01 * report.size_after
    assert set(cuda.cuobjdump_list(site / OPEN)) == {"sm_90 cubin", "sm_90 PTX"}
    assert (site / DEBUG_OTHER).read_bytes() != before.pop(DEBUG_OTHER)  # stripped
    # NCCL's own licence is BSD (whatever its METADATA says): stripped like any other.
    assert b".debug_info" in before_nccl and b".debug_info" not in (site / DEBUG_NCCL
                                                                      ).read_bytes()
    for rel, data in before.items():  # NVIDIA's are never modified, by strip neither
        assert (site / rel).read_bytes() == data, rel
    assert any(n.startswith("strip leaves 2 NVIDIA redistributables as they are")
               for n in report.notes), report.notes
    assert not any((site / rel).exists() for rel in BLACKWELL_ONLY)
    again = audit(gpu_prefix, Options(target_gpu="sm_90"))  # nothing more, and no problem
    assert next(x for x in again.lines if x.name == "gpu-code").saving.files == 0
    assert not [p for p in again.errors if p.path.endswith(OPEN)]
    assert all((site / rel).exists() for rel in TRITON_STAYS)


def test_a_target_the_libraries_hold_nothing_for_is_said(template_gpu: Path) -> None:
    report = audit(template_gpu, Options(target_gpu="sm_70"))
    warned = [n for n in report.notes if "holds no device code sm_70 runs" in n]
    assert len(warned) == 4 and any(n.startswith(f"{_site(template_gpu)}/{OPEN}") for n in warned)
    assert not [n for n in audit(template_gpu, Options(target_gpu="sm_80")).notes
                if "holds no device code" in n]


# none: triton's ptxas and CUPTI too, which only a GPU host runs or loads (on demand)
@pytest.mark.parametrize(("asked", "files"), [("sm_90", 3), ("sm_100", 0), ("sm_90,sm_120", 0),
                                               ("none", 5)])
def test_whole_files_only_other_gpus_load(template_gpu: Path, asked: str, files: int) -> None:
    report = audit(template_gpu, Options(target_gpu=asked))
    line = next(line for line in report.lines if line.name == "gpu-target")
    assert line.saving.files == files


def test_no_ptx_and_none(gpu_prefix: Path) -> None:
    site = gpu_prefix / _site(gpu_prefix)
    report = shrink(gpu_prefix, Options(target_gpu="sm_90", no_ptx=True))
    assert not report.rolled_back, report.broken
    assert set(cuda.cuobjdump_list(site / OPEN)) == {"sm_90 cubin"}


def test_an_unknown_architecture_is_a_usage_error(gpu_prefix: Path) -> None:
    done = run_cli("audit", str(gpu_prefix), "--target-gpu", "sm_91")
    assert done.returncode == 2
    assert "unknown GPU architecture 'sm_91'" in done.stderr and "sm_90, sm_100" in done.stderr


@pytest.mark.skipif(bool(glob.glob("/dev/nvidia[0-9]*")) and bool(shutil.which("nvidia-smi")),
                    reason="this machine has a GPU")
def test_native_without_a_gpu_changes_nothing(gpu_prefix: Path) -> None:
    site = gpu_prefix / _site(gpu_prefix)
    data = (site / OPEN).read_bytes()
    done = run_cli("shrink", str(gpu_prefix), "--target-gpu", "native", "-y")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "no NVIDIA GPU" in done.stderr
    assert (site / OPEN).read_bytes() == data


def test_the_config_file_takes_target_gpu(gpu_prefix: Path, tmp_path: Path) -> None:
    config = tmp_path / "shrink.toml"
    config.write_text('target-gpu = "sm_80,sm_90"\nno-ptx = true\n')
    done = run_cli("audit", str(gpu_prefix), "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    assert "--target-gpu sm_80,sm_90:" in done.stdout
