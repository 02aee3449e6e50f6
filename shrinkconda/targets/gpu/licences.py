"""Whose files a shrink may modify (strip, ``--target-gpu``'s rewrite): never those of
NVIDIA's redistributables whose licence forbids it (section 2.2 of the ``License.txt`` in
their wheels' dist-info), but an NVIDIA project released under an open-source licence
(NCCL: BSD-3-Clause, NVTX: Apache-2.0) is an open-source project like any other.

The licence is read, not guessed from a name: for a pip-installed file, the licence file
its distribution ships (``License-File`` in ``METADATA``), which counts as open only when
the whole text is one BSD, MIT or Apache-2.0 licence (NVIDIA's agreement quotes such
licences for third-party parts, so a quotation is not enough); for a conda package, the
SPDX expression in its ``conda-meta`` record.
"""

from __future__ import annotations

import csv
import email.parser
import io
import json
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

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
#: SPDX identifiers of licences that allow modification, as conda records spell them.
OPEN_SPDX = frozenset({
    "BSD-2-Clause", "BSD-3-Clause", "MIT", "Apache-2.0", "ISC", "Zlib", "BSL-1.0",
})
#: A licence's grant, by the sentence that makes it; a text is one open licence when it
#: holds exactly one of these and is no longer than that licence with its notices.
_GRANTS = (
    ("BSD", ("redistribution and use in source and binary forms with or without "
             "modification are permitted"), 4_000),
    ("MIT", "permission is hereby granted free of charge to any person obtaining a copy",
     4_000),
    ("Apache-2.0", "apache license version 2 0 january 2004", 14_000),
)
#: Words of a proprietary agreement: one of them and the text is not an open licence.
_PROPRIETARY = ("software license agreement", "end user license agreement",
                "license agreement for nvidia", "proprietary")


@dataclass(frozen=True)
class Verdict:
    """Whether a library's device code may be rewritten, and why."""

    rewrite: bool
    reason: str
    """The licence that allows it, or why not."""
    nvidia: bool = False
    """One of NVIDIA's redistributables."""


def open_licence(text: str) -> str | None:
    """The licence a licence file's whole ``text`` is, if it is one open-source licence
    (``BSD-3-Clause``, ``MIT``, ``Apache-2.0``); else ``None``."""
    flat = " ".join(re.findall(r"[a-z0-9]+", text.lower()))  # no comment marks, no wraps
    found = [(name, limit) for name, grant, limit in _GRANTS for _ in
             range(flat.count(grant))]
    if len(found) != 1 or any(word in flat for word in _PROPRIETARY):
        return None
    name, limit = found[0]
    if len(flat) > limit:
        return None
    if name == "BSD":
        return "BSD-3-Clause" if "neither the name" in flat else "BSD-2-Clause"
    return name


def open_spdx(expression: str) -> bool:
    """Whether every licence an SPDX ``expression`` names allows modification."""
    ids = [t for t in re.split(r"[\s()]+", expression) if t and t not in ("AND", "OR",
                                                                          "WITH")]
    return bool(ids) and all(i in OPEN_SPDX for i in ids)


@dataclass
class Licences:
    """The licence verdicts of one scan's files, read once."""

    scan: Scan
    _pip: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    """Per prefix-relative path under ``nvidia/``: its distribution, and its open
    licence or ``None``."""
    _read_sites: set[str] = field(default_factory=set)

    def verdict(self, index: int) -> Verdict:
        """May the library at ``index`` be rewritten? By the conda package that installed
        it, else by its distribution's licence file or top-level directory."""
        scan = self.scan
        owner = scan.owners[index]
        if owner >= 0:
            record = scan.owner_names[owner]
            name = _package_name(record)
            if name in OPEN_PACKAGES:
                return Verdict(True, OPEN_PACKAGES[name])
            if _is_nvidia_package(name):
                spdx = _conda_licence(scan.prefix, record)
                if spdx and open_spdx(spdx):
                    return Verdict(True, f"{name} ({spdx}, its conda-meta record)")
                return Verdict(False, NVIDIA_REASON, nvidia=True)
        path = scan.paths[index]
        if _nvidia_path(path):
            dist, licence = self._pip_licence(path)
            if licence is not None:
                return Verdict(True, f"{dist} ({licence}, the licence in its dist-info)")
            return Verdict(False, NVIDIA_REASON, nvidia=True)
        top = _site_top(path)
        if top in OPEN_TOPS:
            return Verdict(True, OPEN_TOPS[top])
        return Verdict(False, UNKNOWN_REASON)

    def forbidden(self, indices: Iterable[int]) -> set[int]:
        """Of ``indices``, NVIDIA's redistributables whose licence forbids modifying them
        (strip included). Reads ``conda-meta`` only when a record is one of NVIDIA's
        packages, and a licence file only for ``site-packages/nvidia*``."""
        scan = self.scan
        conda = any(_is_nvidia_package(_package_name(n)) for n in scan.owner_names)
        return {i for i in indices
                if (_nvidia_path(scan.paths[i]) or (conda and scan.owners[i] >= 0))
                and self.verdict(i).nvidia}

    def _pip_licence(self, path: str) -> tuple[str, str | None]:
        site = path[:path.index("/site-packages/") + len("/site-packages")]
        if site not in self._read_sites:
            self._read_sites.add(site)
            self._pip.update(_nvidia_distributions(self.scan.prefix, site))
        return self._pip.get(path, ("", None))


def _nvidia_distributions(prefix: Path, site: str) -> dict[str, tuple[str, str | None]]:
    """The files of each ``nvidia*`` distribution in ``site`` (by its ``RECORD``), with
    the distribution's name and its open licence, if its licence file is one."""
    owned: dict[str, tuple[str, str | None]] = {}
    for dist_info in sorted((prefix / site).glob("nvidia*.dist-info")):
        try:
            record = (dist_info / "RECORD").read_text(encoding="utf-8", errors="replace")
            meta = email.parser.HeaderParser().parsestr(
                (dist_info / "METADATA").read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        name = meta.get("Name") or dist_info.name.split("-")[0]
        licence = _dist_licence(dist_info, meta.get_all("License-File") or [])
        for row in csv.reader(io.StringIO(record)):
            if row:
                owned[posixpath.normpath(posixpath.join(site, row[0]))] = (name, licence)
    return owned


def _dist_licence(dist_info: Path, files: list[str]) -> str | None:
    """The open licence all of a distribution's licence files are, or ``None``."""
    found = set()
    for name in files or ["LICENSE", "License.txt"]:
        for where in (dist_info / "licenses" / name, dist_info / name):
            if where.is_file():
                try:
                    found.add(open_licence(where.read_text(encoding="utf-8",
                                                           errors="replace")))
                except OSError:
                    return None
                break
        else:
            return None
    return found.pop() if len(found) == 1 else None


def _conda_licence(prefix: Path, record: str) -> str | None:
    try:
        doc = json.loads((prefix / "conda-meta" / f"{record}.json").read_text())
    except (OSError, ValueError):
        return None
    value = doc.get("license") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


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
