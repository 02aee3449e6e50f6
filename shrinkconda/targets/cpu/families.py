"""Dispatch families as data: which libraries of a package a runtime dispatcher chooses
between, by CPU level or by configuration, and which of them must always stay.

oneMKL's are built in. A plugin adds a family (or corrects a built-in one for another
release, by reusing its name) through the entry-point group ``shrinkconda.dispatch``::

    [project.entry-points."shrinkconda.dispatch"]
    mylib-cpu = "mypkg.shrink:FAMILY"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shrinkconda import plugins
from shrinkconda.errors import ShrinkError
from shrinkconda.scan import Problem
from shrinkconda.targets.cpu import levels

ENTRY_POINT_GROUP = "shrinkconda.dispatch"
CPU, CONFIG = "cpu", "config"
"""Family kinds: the dispatcher picks a member by the CPU it runs on, or by a variable."""

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class FamilyError(ShrinkError):
    """A dispatch family is malformed, or two plugins share a name."""


@dataclass(frozen=True)
class Member:
    """One library a dispatcher may load: ``<dir>/<stem>.so`` and ``<stem>.so.*``, a
    symlink chain counted as one."""

    name: str
    """What the report calls it (``avx2``)."""
    stem: str
    """The file name up to ``.so`` (``libmkl_avx2``)."""
    tier: str | None = None
    """CPU families: the ISA tier (:data:`levels.TIERS`) a CPU needs for the dispatcher
    to choose this member; ``None``: chosen on any CPU (generic, AMD), so it always stays."""
    cap: str = ""
    """CPU families: the value of the family's variable that caps the dispatch here."""
    default: bool = False
    """Configuration families: loaded when the variable is unset, so it always stays."""
    needs: tuple[str, ...] = ()
    """Stems of libraries (in the same directory, any package) that stay with it."""


@dataclass(frozen=True)
class Family:
    """Libraries one dispatcher chooses between, and the libraries that dispatch."""

    name: str
    """Lower-case words joined by hyphens (``mkl-cpu``)."""
    summary: str
    """One line for the report."""
    kind: str
    """:data:`CPU` or :data:`CONFIG`."""
    variable: str
    """CPU families: the variable that caps the dispatch (``MKL_ENABLE_INSTRUCTIONS``);
    configuration families: the one that chooses the member."""
    anchors: tuple[str, ...]
    """Stems of the dispatcher's own libraries; when one is missing the install is broken
    and the family is left alone."""
    members: tuple[Member, ...]
    """CPU families: lowest tier first."""
    directory: str = "lib"
    """Where the libraries are, relative to the prefix."""
    check: str = ""
    """Python source the env's python runs (``argv[1]``: the directory) after a shrink
    that pruned the family; exit 0 means the dispatcher still works."""
    check_needs: tuple[str, ...] = ()
    """Globs (relative to the prefix) of what the check needs besides the family; with
    ``--used-by`` they stay whenever the family does, used by the workloads or not."""
    origin: str = "built-in"
    """``built-in`` or the entry point that registered it."""

    def __post_init__(self) -> None:
        where = f"dispatch family {self.name!r} ({self.origin})"
        if not _NAME.match(self.name):
            raise FamilyError(f"invalid {where}: use lower-case words joined by hyphens")
        if self.kind not in (CPU, CONFIG):
            raise FamilyError(f"{where}: kind must be {CPU!r} or {CONFIG!r}")
        if not self.anchors or not self.members:
            raise FamilyError(f"{where}: needs anchors and members")
        if self.kind == CPU:
            tiers = [m.tier for m in self.members if m.tier is not None]
            if any(t not in levels.TIERS for t in tiers) or not tiers:
                raise FamilyError(f"{where}: member tiers must be among {levels.TIERS}")
            if [levels.rank(t) for t in tiers] != sorted({levels.rank(t) for t in tiers}):
                raise FamilyError(f"{where}: members must be listed lowest tier first")
            if any(m.tier is not None and not m.cap for m in self.members):
                raise FamilyError(f"{where}: every tiered member needs a cap value")

    def stems(self) -> tuple[str, ...]:
        """Every library the family names: anchors, members and what they need."""
        return (*self.anchors, *(m.stem for m in self.members),
                *(n for m in self.members for n in m.needs))


#: Run by the env's python: BLAS (``cblas_dgemm``, which loads a CPU kernel) and VML
#: (``vdExp``, a VML kernel) through ``libmkl_rt``; MKL loads kernels at the first call.
MKL_CHECK = """\
import ctypes, os, sys
names = sorted(n for n in os.listdir(sys.argv[1]) if n.startswith("libmkl_rt.so"))
rt = ctypes.CDLL(os.path.join(sys.argv[1], names[0]))
a = (ctypes.c_double * 4)(1, 2, 3, 4)
b = (ctypes.c_double * 4)(5, 6, 7, 8)
c = (ctypes.c_double * 4)()
rt.cblas_dgemm(101, 111, 111, 2, 2, 2, ctypes.c_double(1.0), a, 2, b, 2,
               ctypes.c_double(0.0), c, 2)
if list(c) != [19.0, 22.0, 43.0, 50.0]:
    sys.exit("cblas_dgemm gave %r, not [19, 22, 43, 50]" % list(c))
x = (ctypes.c_double * 3)(0.0, 1.0, 2.0)
y = (ctypes.c_double * 3)()
rt.vdExp(3, x, y)
if any(abs(v - e) > 1e-12 * e for v, e in zip(y, (1.0, 2.718281828459045, 7.38905609893065))):
    sys.exit("vdExp gave %r, not exp(0, 1, 2)" % list(y))
"""
#: What ``import ctypes`` loads (``os`` and ``sys`` are loaded at every start).
CTYPES_NEEDS = ("lib/python3*/ctypes", "lib/python3*/struct.py",
                "lib/python3*/lib-dynload/_ctypes.*", "lib/python3*/lib-dynload/_struct.*",
                "lib/libffi.so*")
_MKL_ANCHORS = ("libmkl_rt", "libmkl_core")
_MKL_CAP = "MKL_ENABLE_INSTRUCTIONS"


def _tiered(prefix: str) -> tuple[Member, ...]:
    return (
        Member("def", f"{prefix}def"),
        Member("mc3", f"{prefix}mc3", "x86_64_v2", "SSE4_2"),
        Member("avx2", f"{prefix}avx2", "x86_64_v3", "AVX2"),
        Member("avx512", f"{prefix}avx512", "x86_64_v4", "AVX512"),
        Member("avx10", f"{prefix}avx10", levels.ABOVE_V4, "AVX10"),
    )


def _mkl(name: str, summary: str, kind: str, variable: str,
         members: tuple[Member, ...]) -> Family:
    return Family(name, summary, kind, variable, _MKL_ANCHORS, members, check=MKL_CHECK,
                  check_needs=CTYPES_NEEDS)


BUILTIN: tuple[Family, ...] = (
    _mkl("mkl-cpu", "oneMKL CPU kernels (BLAS, LAPACK, FFT)", CPU, _MKL_CAP,
         _tiered("libmkl_")),
    _mkl("mkl-vml", "oneMKL vector math kernels", CPU, _MKL_CAP, _tiered("libmkl_vml_")),
    _mkl("mkl-interface", "oneMKL interface layers", CONFIG, "MKL_INTERFACE_LAYER",
         (Member("lp64", "libmkl_intel_lp64", default=True),
          Member("ilp64", "libmkl_intel_ilp64"),
          Member("gf-lp64", "libmkl_gf_lp64"),
          Member("gf-ilp64", "libmkl_gf_ilp64"))),
    _mkl("mkl-threading", "oneMKL threading layers", CONFIG, "MKL_THREADING_LAYER",
         (Member("intel", "libmkl_intel_thread", default=True, needs=("libiomp5",)),
          Member("sequential", "libmkl_sequential"),
          Member("gnu", "libmkl_gnu_thread"),
          Member("tbb", "libmkl_tbb_thread", needs=("libtbb",)))),
    _mkl("mkl-cbwr", "oneMKL's bitwise-reproducible vector math (MKL_CBWR=COMPATIBLE)",
         CONFIG, "MKL_CBWR", (Member("compatible", "libmkl_vml_cmpt"),)),
)
"""oneMKL 2024-2026 (``.so.2``/``.so.3``): kernels by CPU, layers by variable."""


def available() -> tuple[tuple[Family, ...], tuple[Problem, ...]]:
    """The built-in families then the plugins' (a plugin reusing a built-in's name
    replaces it), and the plugins that failed to load."""
    return plugins.load_replacing(ENTRY_POINT_GROUP, BUILTIN, Family, "dispatch families",
                                  "dispatch plugin", FamilyError)
