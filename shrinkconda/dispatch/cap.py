"""The files that cap a dispatcher at the target's level where the env runs: a ``.pth``
hook for every Python process (no activation needed: Lambda and ``docker run`` do not
activate envs), and activation scripts for shells."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shrinkconda.dispatch.select import Dispatch
from shrinkconda.scan import DIR, Scan

NAME = "shrinkconda-cpu-cap"
"""The added files' name (``.pth`` in site-packages, ``.sh`` in activate.d)."""
ACTIVATE = f"etc/conda/activate.d/{NAME}.sh"
DEACTIVATE = f"etc/conda/deactivate.d/{NAME}.sh"
_MARK = "_SHRINKCONDA_CPU_CAP"
"""Set by the activation script to the variables it set, so deactivation unsets only
those."""


@dataclass(frozen=True)
class CapFile:
    """A file the shrink adds to the prefix."""

    path: str
    """Relative to the prefix."""
    content: bytes
    owner: str | None
    """The ``conda-meta`` record (``name-version-build``) whose package the cap serves."""
    mode: int = 0o644


def files(scan: Scan, dispatch: Dispatch) -> tuple[CapFile, ...]:
    """The cap files ``dispatch`` needs (none when it removed nothing above a cap)."""
    if not dispatch.caps or dispatch.target is None:
        return ()
    anchors = [i for f in dispatch.found if f.family.variable in dispatch.caps
               for i in f.indices(f.family.anchors[:1])]
    owners = {scan.owners[i] for i in anchors}
    owner = min((scan.owner_names[o] for o in owners if o >= 0), default=None)
    why = (f"Added by shrinkconda --target-cpu {dispatch.target.level}: the kernels above "
           "this cap were removed from the env.")
    out = [CapFile(f"{site}/{NAME}.pth", pth(dispatch.caps, why), owner)
           for site in _site_packages(scan)]
    out.append(CapFile(ACTIVATE, activate(dispatch.caps, why), owner))
    out.append(CapFile(DEACTIVATE, deactivate(why), owner))
    return tuple(out)


def pth(caps: Mapping[str, str], why: str) -> bytes:
    """A ``.pth`` whose ``import`` line sets each variable unless the user set it;
    ``site`` runs it in every interpreter start (``-I`` too, not ``-S``)."""
    pairs = ", ".join(f"({k!r}, {v!r})" for k, v in sorted(caps.items()))
    return (f"# {why}\n"
            f"import os; [os.environ.setdefault(k, v) for k, v in ({pairs},)]\n").encode()


def activate(caps: Mapping[str, str], why: str) -> bytes:
    """A POSIX shell script for ``etc/conda/activate.d``."""
    lines = [f"# {why}", f"{_MARK}="]
    for key, value in sorted(caps.items()):
        lines.append(f'if [ -z "${{{key}+x}}" ]; then export {key}={value}; '
                     f'{_MARK}="${_MARK} {key}"; fi')
    lines.append(f"export {_MARK}")
    return ("\n".join(lines) + "\n").encode()


def deactivate(why: str) -> bytes:
    """Unset what the activation script set, and nothing the user set."""
    return (f"# {why}\n"
            f"for _shrinkconda_var in ${_MARK}; do unset \"$_shrinkconda_var\"; done\n"
            f"unset {_MARK} _shrinkconda_var\n").encode()


def _site_packages(scan: Scan) -> list[str]:
    lib = scan.find("lib")
    if lib is None:
        return []
    found = []
    for child in scan.children(lib):
        if scan.name(child).startswith("python") and scan.kinds[child] == DIR:
            site = scan.find(f"{scan.paths[child]}/site-packages")
            if site is not None and scan.kinds[site] == DIR:
                found.append(scan.paths[site])
    return found
