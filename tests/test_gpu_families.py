"""GPU families under --used-by: a library a GPU host loads on demand stays with its
loader, on a real pip-installed ``nvidia-*``-like wheel traced with and without the
flag that makes it load its sub-library."""

from __future__ import annotations

import glob
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.gpu import FAKEDNN_LIB, GPU_FLAG, fakednn_wheel, pip_install
from fixtures.install import copy_tree
from shrinkconda import Options, audit, shrink
from shrinkconda.appaware import trace
from shrinkconda.scan import Scan, scan
from shrinkconda.targets.gpu import families, ondemand
from shrinkconda.targets.gpu.families import Family, FamilyError, Member

LIB = f"lib/python3.11/site-packages/{FAKEDNN_LIB}"
USE = 'python -c "import fakednn; assert fakednn.version() == 9; fakednn.conv()"'
USE_GPU = f"{GPU_FLAG}=1 " + USE.replace("fakednn.conv()", "assert fakednn.conv() == 7")

pytestmark = pytest.mark.skipif(
    subprocess.run(["sh", "-c", "command -v strace"], capture_output=True,
                   check=False).returncode != 0,
    reason="strace is not installed (apt-get install strace)")
_NO_GPU = not glob.glob("/dev/nvidia*")


@pytest.fixture(scope="module")
def template_gpu_prefix(template_app_prefix: Path,
                        tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app prefix with the fake cuDNN wheel pip-installed into it; do not modify."""
    root = tmp_path_factory.mktemp("gpu")
    prefix = copy_tree(template_app_prefix, root / "prefix")
    pip_install(prefix, fakednn_wheel(root))
    return prefix


@pytest.fixture
def gpu_prefix(template_gpu_prefix: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of `template_gpu_prefix`."""
    copy = copy_tree(template_gpu_prefix, tmp_path / "prefix")
    yield copy


def _trace(prefix: Path, command: str) -> trace.Usage:
    return trace.trace(prefix, [command])


def test_the_trace_sees_the_sub_library_only_behind_the_flag(template_gpu_prefix: Path) -> None:
    plain = _trace(template_gpu_prefix, USE)
    flagged = _trace(template_gpu_prefix, USE_GPU)
    assert f"{LIB}/libcudnn.so.9" in plain.paths
    assert f"{LIB}/libcudnn_cnn.so.9" not in plain.paths
    assert f"{LIB}/libcudnn_cnn.so.9" in flagged.paths
    assert f"{LIB}/libcudnn_engines_precompiled.so.9" not in flagged.paths


@pytest.mark.skipif(not _NO_GPU, reason="this host has a GPU")
def test_the_trace_says_the_driver_was_looked_for_and_missing(template_gpu_prefix: Path) -> None:
    assert _trace(template_gpu_prefix, USE).gpu_driver == trace.DRIVER_MISSING
    assert _trace(template_gpu_prefix, 'python -c "pass"').gpu_driver == ""


@pytest.mark.skipif(not _NO_GPU, reason="this host has a GPU")
def test_traced_without_a_gpu_the_family_stays_whole(gpu_prefix: Path) -> None:
    report = shrink(gpu_prefix, Options(used_by=(USE,), strip_mode=None))
    assert not report.rolled_back, report.broken
    for name in ("libcudnn.so.9", "libcudnn_cnn.so.9", "libcudnn_engines_precompiled.so.9"):
        assert (gpu_prefix / LIB / name).is_file(), name
    notes = [n for n in report.notes if n.startswith("traced without a GPU")]
    assert len(notes) == 1 and "kept 2 GPU libraries" in notes[0] and "(cudnn)" in notes[0]
    # and the GPU call works on the shrunk env, as it would on a GPU host
    env = {**os.environ, GPU_FLAG: "1"}
    done = subprocess.run([str(gpu_prefix / "bin/python"), "-c",
                           "import fakednn; assert fakednn.conv() == 7"], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_without_a_loader_nothing_is_kept(template_gpu_prefix: Path) -> None:
    """The family's loader was not used: the family is --used-by's to remove."""
    the_scan = scan(template_gpu_prefix)
    usage = _trace(template_gpu_prefix, 'python -c "pass"')
    used = _mask(the_scan, usage)
    chosen = ondemand.select(the_scan, families.BUILTIN, used, usage.gpu_driver, [])
    assert chosen.stays == frozenset() and chosen.notes == ()


def test_traced_with_a_gpu_the_trace_decides(template_gpu_prefix: Path) -> None:
    """On a GPU host a family stays whole when a GPU call loaded a member, and is left
    to --used-by when none did."""
    the_scan = scan(template_gpu_prefix)
    cnn = the_scan.find(f"{LIB}/libcudnn_engines_precompiled.so.9")
    for command, kept in ((USE_GPU, True), (USE, False)):
        usage = _trace(template_gpu_prefix, command)
        chosen = ondemand.select(the_scan, families.BUILTIN, _mask(the_scan, usage),
                                 usage.gpu_driver, ["/dev/nvidia0"])
        assert (cnn in chosen.stays) is kept, command
        assert chosen.with_gpu
        assert all("traced with a GPU" in n for n in chosen.notes)


def test_a_plugin_family_needs_file_names(template_gpu_prefix: Path) -> None:
    with pytest.raises(FamilyError, match="file names"):
        Family("bad", "x", ("lib/libx.so",), (Member("liby.so*"),))
    with pytest.raises(FamilyError, match="hyphens"):
        Family("Bad_Name", "x", ("libx.so",), (Member("liby.so*"),))
    # a plugin's family in its own directory is found like a built-in one
    family = Family("fake", "the fake cuDNN", ("libcudnn.so*",),
                    (Member("libcudnn_cnn.so*"),), (LIB,))
    found = ondemand.find(scan(template_gpu_prefix), [family])
    assert [f.family.name for f in found] == ["fake"] and len(found[0].members) == 1


def _mask(the_scan: Scan, usage: trace.Usage) -> bytearray:
    index_of = {p: i for i, p in enumerate(the_scan.paths)}
    used = bytearray(len(the_scan))
    for path in usage.paths:
        if path in index_of:
            used[index_of[path]] = 1
    return used


def test_target_none_removes_what_only_a_gpu_loads(gpu_prefix: Path) -> None:
    """``--target-gpu none``: the sub-libraries cuDNN loads at a GPU call go, the
    dispatcher ``import fakednn`` loads stays, and the env still imports and runs."""
    predicted = audit(gpu_prefix, Options(target_gpu="none", strip_mode=None))
    report = shrink(gpu_prefix, Options(target_gpu="none", strip_mode=None))
    assert not report.rolled_back, report.broken
    assert (gpu_prefix / LIB / "libcudnn.so.9").is_file()
    for name in ("libcudnn_cnn.so.9", "libcudnn_engines_precompiled.so.9"):
        assert not (gpu_prefix / LIB / name).exists(), name
    line = next(line for line in report.lines if line.name == "gpu-target")
    assert line.saving.files == 2
    assert line == next(line for line in predicted.lines if line.name == "gpu-target")
    done = subprocess.run([str(gpu_prefix / "bin/python"), "-c",
                           "import fakednn; assert fakednn.version() == 9"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_gpu_target_keeps_what_a_gpu_loads(template_gpu_prefix: Path) -> None:
    report = audit(template_gpu_prefix, Options(target_gpu="sm_90", strip_mode=None))
    line = next(line for line in report.lines if line.name == "gpu-target")
    assert line.saving.files == 0
