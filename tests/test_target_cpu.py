"""--target-cpu on real oneMKL: what each level removes and keeps, the run-time cap, the
BLAS/VML call that proves the result, --used-by's whole families, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from condatools import archive_members, conda_pack, record_paths, records_problems
from realconda import conda_python, doctor
from treeutil import contents, prefix_python, run_cli

from fixtures.install import copy_tree
from fixtures.mkl import BLAS_VML_APP, build_mkl_prefix
from shrinkconda import Options, audit, shrink
from shrinkconda.cli import main
from shrinkconda.scan import Scan, scan
from shrinkconda.targets.cpu import cap, families, levels, select
from shrinkconda.targets.cpu.levels import CpuLevelError, Target, UnknownCpuLevelError

MiB = 1 << 20
KERNELS = ("def", "mc3", "avx2", "avx512", "avx10")
#: Per level: the CPU kernels (and their VML twins) that stay, and the cap.
KEEPS = {
    "x86_64": (("def", "mc3"), "SSE4_2"),
    "x86_64_v2": (("def", "mc3"), "SSE4_2"),
    "x86_64_v3": (("def", "avx2"), "AVX2"),
    "x86_64_v4": (("def", "avx512"), "AVX512"),
}
#: What a oneMKL install needs whatever the target: the dispatcher, the default
#: interface and threading layers, the OpenMP runtime.
ALWAYS = ("libmkl_rt.so.3", "libmkl_core.so.3", "libmkl_intel_lp64.so.3",
          "libmkl_intel_thread.so.3", "libiomp5.so")
PTH = f"lib/python3.11/site-packages/{cap.NAME}.pth"
SHOW_CAP = "import os; print(os.environ.get('MKL_ENABLE_INSTRUCTIONS', 'unset'))"

needs_strace = pytest.mark.skipif(shutil.which("strace") is None,
                                  reason="strace is not installed (apt-get install strace)")


def _kernel_files(kernel: str) -> set[str]:
    """A kernel's CPU and VML libraries, each a symlink chain ``.so -> .so.3``."""
    return {f"lib/libmkl_{vml}{kernel}.so{v}" for vml in ("", "vml_") for v in ("", ".3")}


@pytest.fixture(scope="module")
def template_mkl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """python, mkl, intel-openmp and tbb in a base-install prefix; do not modify."""
    template = build_mkl_prefix(tmp_path_factory.mktemp("mkl") / "prefix")
    yield template
    shutil.rmtree(template, ignore_errors=True)  # 1.2 GB; pytest keeps three sessions' tmp


@pytest.fixture(scope="module")
def mkl_scan(template_mkl: Path) -> Scan:
    return scan(template_mkl)


@pytest.fixture
def mkl_prefix(template_mkl: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the MKL prefix (1.2 GB: removed right after the test)."""
    copy = copy_tree(template_mkl, tmp_path / "prefix")
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A BLAS + VML program in the working directory; the command that runs it."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "blas_vml.py").write_bytes(BLAS_VML_APP)
    monkeypatch.chdir(work)
    return "python blas_vml.py"


def run_app(prefix: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(prefix / "bin" / "python"), "-c", BLAS_VML_APP.decode()],
                          capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **(env or {})})


# --- levels ---------------------------------------------------------------------------

V2 = ["lm", "cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"]
V3 = [*V2, *["avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"]]
V4 = [*V3, *["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]]


@pytest.mark.parametrize(("flags", "level"), [
    (["lm", "sse2"], "x86_64"), (V2, "x86_64_v2"), (V3, "x86_64_v3"), (V4, "x86_64_v4"),
    ([f for f in V3 if f != "movbe"], "x86_64_v2"),  # one missing flag drops the level
    ([f for f in V4 if f != "avx2"], "x86_64_v2"),  # a level needs the ones below it
])
def test_level_of_flags(flags: list[str], level: str) -> None:
    assert levels.level_of(flags) == level


def test_native_reads_the_cpu_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {' '.join(V3)}\n\nflags\t: {' '.join(V4)}\n")
    assert levels.native(cpuinfo) == "x86_64_v3"


def test_native_unreadable_or_without_flags_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CpuLevelError, match="cannot read"):
        levels.native(tmp_path / "missing")
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    with pytest.raises(CpuLevelError, match="no CPU flags"):
        levels.native(tmp_path / "arm")


def test_unknown_level_lists_the_levels() -> None:
    with pytest.raises(UnknownCpuLevelError, match="x86_64, x86_64_v2, x86_64_v3, x86_64_v4, native"):
        levels.target("x86-64-v3")


# --- the selection, on real oneMKL ------------------------------------------------------

@pytest.mark.parametrize("level", list(KEEPS))
def test_each_level_removes_what_no_cpu_at_or_above_it_loads(mkl_scan: Scan, level: str) -> None:
    keeps, cap = KEEPS[level]
    chosen = select.select(mkl_scan, families.BUILTIN, Target(level, level))
    removed = {mkl_scan.paths[i] for i in chosen.removes}
    expected = set().union(*(_kernel_files(k) for k in KERNELS if k not in keeps))
    assert removed == expected
    stays = {mkl_scan.paths[i] for i in chosen.stays}
    assert set().union(*(_kernel_files(k) for k in keeps)) <= stays
    assert {f"lib/{name}" for name in ALWAYS} <= stays
    # Without --used-by every layer MKL_THREADING_LAYER and friends can choose stays.
    assert {"lib/libmkl_sequential.so.3", "lib/libmkl_gf_ilp64.so.3",
            "lib/libmkl_vml_cmpt.so.3"} <= stays
    assert dict(chosen.caps) == {"MKL_ENABLE_INSTRUCTIONS": cap}


def test_without_a_target_every_kernel_stays(mkl_scan: Scan) -> None:
    chosen = select.select(mkl_scan, families.BUILTIN, None)
    assert not chosen.removes and not chosen.caps
    stays = {mkl_scan.paths[i] for i in chosen.stays}
    assert set().union(*(_kernel_files(k) for k in KERNELS)) <= stays


def test_a_higher_setting_where_shrinkconda_runs_is_warned_about(mkl_scan: Scan) -> None:
    high = select.select(mkl_scan, families.BUILTIN, Target("x86_64_v3", "x86_64_v3"),
                         environ={"MKL_ENABLE_INSTRUCTIONS": "AVX512_E1"})
    assert [p.message for p in high.problems] == [
        ("warning: MKL_ENABLE_INSTRUCTIONS=AVX512_E1 is set where shrinkconda runs: a program "
        "started with it loads libmkl_avx512 and libmkl_vml_avx512, which --target-cpu "
        "x86_64_v3 removes; unset it or set AVX2")]
    low = select.select(mkl_scan, families.BUILTIN, Target("x86_64_v3", "x86_64_v3"),
                        environ={"MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    assert not low.problems


def test_a_family_without_its_dispatcher_is_left_alone(template_mkl: Path,
                                                       tmp_path: Path) -> None:
    """The real oneMKL libraries (hard links of the module's install), libmkl_core aside."""
    broken = tmp_path / "broken"
    (broken / "conda-meta").mkdir(parents=True)
    (broken / "lib").mkdir()
    for name in ("libmkl_rt.so.3", "libmkl_def.so.3", "libmkl_avx2.so.3", "libmkl_avx512.so.3"):
        source = template_mkl / "lib" / name
        try:
            os.link(source, broken / "lib" / name)
        except OSError:  # another filesystem
            shutil.copy2(source, broken / "lib" / name)
    chosen = select.select(scan(broken), families.BUILTIN, Target("x86_64_v3", "x86_64_v3"))
    assert not chosen.removes
    assert [p.message for p in chosen.problems] == [
        ("mkl-cpu: libmkl_core is missing (a broken install?): oneMKL CPU kernels "
        "(BLAS, LAPACK, FFT) left alone")]


# --- shrinks ----------------------------------------------------------------------------

def test_x86_64_v3_shrink_removes_caps_and_still_computes(
        template_mkl: Path, mkl_prefix: Path, tmp_path: Path) -> None:
    # The real conda (.ci/run installs it): made from ../shared if it is not there yet,
    # and the test skips, saying how to get it, if it cannot be; never checked silently.
    conda = conda_python()
    default = audit(template_mkl)
    found = doctor(conda, template_mkl, tmp_path)
    predicted = audit(mkl_prefix, Options(target_cpu="x86_64_v3"))
    report = shrink(mkl_prefix, Options(target_cpu="x86_64_v3"))
    assert not report.rolled_back, report.broken
    assert doctor(conda, mkl_prefix, tmp_path) - found == set()
    assert report.bytes_saved - default.bytes_saved >= 250 * MiB
    assert abs(predicted.size_after - report.size_after) <= 0.01 * report.size_after
    assert any("verified: a fresh python called the pruned dispatchers (mkl-cpu, mkl-vml)"
               in note for note in report.notes)
    assert any("ENV MKL_ENABLE_INSTRUCTIONS=AVX2" in note for note in report.notes)
    for kernel in KERNELS:
        present = {p for p in _kernel_files(kernel) if os.path.lexists(mkl_prefix / p)}
        assert present == (_kernel_files(kernel) if kernel in ("def", "avx2") else set())
    run = run_app(mkl_prefix)
    assert run.returncode == 0 and run.stdout.endswith("ok\n"), run.stdout + run.stderr
    # The cap: every python of the env, no activation; a value the user set wins.
    assert prefix_python(mkl_prefix, SHOW_CAP).stdout == "AVX2\n"
    mine = subprocess.run([str(mkl_prefix / "bin/python"), "-c", SHOW_CAP], check=False,
                          text=True, capture_output=True,
                          env={"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"})
    assert mine.stdout == "SSE4_2\n"
    script = (f". {mkl_prefix}/{cap.ACTIVATE}; echo $MKL_ENABLE_INSTRUCTIONS; "
              f". {mkl_prefix}/{cap.DEACTIVATE}; echo ${{MKL_ENABLE_INSTRUCTIONS-unset}}")
    shell = subprocess.run(["sh", "-c", script], check=False, text=True, capture_output=True,
                           env={"PATH": "/usr/bin:/bin"})
    assert shell.stdout.split() == ["AVX2", "unset"]
    added = [PTH, cap.ACTIVATE, cap.DEACTIVATE]
    assert set(added) <= set(record_paths(mkl_prefix, "mkl"))
    assert not any("avx512" in path for path in record_paths(mkl_prefix, "mkl"))
    assert records_problems(mkl_prefix) == []
    packed = conda_pack(mkl_prefix, tmp_path / "env.tar")
    assert packed.returncode == 0, packed.stderr
    members = archive_members(tmp_path / "env.tar")
    assert set(added) <= set(members)
    assert not any("avx512" in name for name in members)


@needs_strace
def test_used_by_keeps_every_level_of_a_family_it_loaded(mkl_prefix: Path, app: str) -> None:
    report = shrink(mkl_prefix, Options(used_by=(app,), strip_mode=None))
    assert not report.rolled_back, report.broken
    for kernel in KERNELS:  # this CPU loaded def only; another one loads its own
        assert all(os.path.lexists(mkl_prefix / p) for p in _kernel_files(kernel)), kernel
    assert all(os.path.lexists(mkl_prefix / "lib" / name) for name in ALWAYS)
    # Layers the workload did not load go, and the report says how to keep one.
    assert not os.path.lexists(mkl_prefix / "lib/libmkl_gf_ilp64.so.3")
    assert not os.path.lexists(mkl_prefix / "lib/libmkl_vml_cmpt.so.3")
    assert any("MKL_THREADING_LAYER" in note and "--keep" in note for note in report.notes)
    assert run_app(mkl_prefix).returncode == 0


@needs_strace
def test_used_by_with_a_target_keeps_what_the_target_allows(mkl_prefix: Path, app: str) -> None:
    done = run_cli("shrink", "-y", "--json", "--no-strip", "--used-by", app,
                   "--target-cpu", "x86_64_v3", str(mkl_prefix), cwd=os.getcwd())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verified"] is True
    for kernel in KERNELS:
        present = {p for p in _kernel_files(kernel) if os.path.lexists(mkl_prefix / p)}
        assert present == (_kernel_files(kernel) if kernel in ("def", "avx2") else set())
    assert run_app(mkl_prefix).returncode == 0
    # A later --used-by shrink keeps the cap, though no workload reads activate.d.
    again = shrink(mkl_prefix, Options(used_by=(app,), strip_mode=None))
    assert not again.rolled_back, again.broken
    assert all((mkl_prefix / p).is_file() for p in (PTH, cap.ACTIVATE, cap.DEACTIVATE))


WRONG_PLUGIN = '''
"""Lets libmkl_def go for x86_64_v3 and up: wrong on every AMD CPU."""
import dataclasses
from shrinkconda.targets.cpu.families import BUILTIN, Member

_MKL = next(f for f in BUILTIN if f.name == "mkl-cpu")
FAMILY = dataclasses.replace(_MKL, members=(
    Member("def", "libmkl_def", "x86_64_v2", "SSE4_2"), *_MKL.members[2:]))
'''


def test_a_family_whose_check_fails_rolls_back(mkl_prefix: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    (site / "wrongmkl-0.1.dist-info").mkdir(parents=True)
    (site / "wrongmkl.py").write_text(WRONG_PLUGIN)
    (site / "wrongmkl-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: wrongmkl\nVersion: 0.1\n")
    (site / "wrongmkl-0.1.dist-info" / "entry_points.txt").write_text(
        "[shrinkconda.dispatch]\nmkl-cpu = wrongmkl:FAMILY\n")
    monkeypatch.syspath_prepend(str(site))
    lib_before = contents(mkl_prefix / "lib")
    report = shrink(mkl_prefix, Options(target_cpu="x86_64_v3", strip_mode=None))
    assert report.rolled_back
    [broken] = report.broken
    assert broken.check == "the mkl-cpu, mkl-vml check"
    assert "libmkl_def.so.3 is missing" in broken.error and "exit status 2" in broken.error
    assert contents(mkl_prefix / "lib") == lib_before  # the cap's .pth went too
    assert not (mkl_prefix / "etc").exists()
    assert run_app(mkl_prefix).returncode == 0


# --- the command line -------------------------------------------------------------------

def test_cli_unknown_level_is_a_usage_error(prefix: Path) -> None:
    result = CliRunner().invoke(main, ["shrink", "-y", str(prefix), "--target-cpu", "v3"])
    assert result.exit_code == 2
    assert "'x86_64', 'x86_64_v2', 'x86_64_v3', 'x86_64_v4', 'native'" in result.output


def test_cli_native_unreadable_changes_nothing(prefix: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(levels, "CPUINFO", tmp_path / "no-cpuinfo")
    before = contents(prefix)
    result = CliRunner().invoke(main, ["shrink", "-y", str(prefix), "--target-cpu", "native"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        (f"Error: --target-cpu native: cannot read {tmp_path / 'no-cpuinfo'} (No such file or "
        "directory); name a level instead: x86_64, x86_64_v2, x86_64_v3, x86_64_v4")]
    assert contents(prefix) == before


def test_cli_config_key_and_native(template_mkl: Path, tmp_path: Path) -> None:
    config = tmp_path / "shrink.toml"
    config.write_text('target-cpu = "native"\n')
    result = CliRunner().invoke(main, ["audit", str(template_mkl), "--config", str(config),
                                       "--json"])
    assert result.exit_code == 0, result.output
    notes = json.loads(result.output)["notes"]
    native = levels.native()
    assert any(f"--target-cpu native ({native}, read from /proc/cpuinfo)" in n for n in notes)
    config.write_text('target-cpu = "x86_64_v5"\n')
    result = CliRunner().invoke(main, ["audit", str(template_mkl), "--config", str(config)])
    assert result.exit_code == 2 and "x86_64_v4" in result.output



def test_a_prefix_without_dispatched_libraries_says_so(template_prefix: Path) -> None:
    report = audit(template_prefix, Options(target_cpu="x86_64_v4"))
    assert [n for n in report.notes if n.startswith("--target-cpu")] == [
        ("--target-cpu x86_64_v4: no CPU-dispatched library (mkl-cpu, mkl-vml, mkl-interface, "
        "mkl-threading, mkl-cbwr) in this prefix: nothing to remove")]
    assert not any(line.saving.bytes for line in report.lines if line.name == "target-cpu")
