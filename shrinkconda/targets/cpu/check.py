"""Prove a pruned dispatcher still works: the env's python calls it in a fresh process.

Loading a library proves nothing: oneMKL loads its kernels at the first call that needs
one, and when the kernel is missing it prints a line and calls ``exit(2)``.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence

from shrinkconda import verify
from shrinkconda.render.report import Broken
from shrinkconda.scan import Scan
from shrinkconda.targets.cpu.select import Found

TIMEOUT = 120.0
"""Seconds one check may run."""
KIND = "call"
"""The :class:`Broken` kind of a failed check."""

_CANNOT = re.compile(r"cannot (?:load|open)\W*?(?:\S*/)?(lib[\w+-]+\.so[\w.]*?)\.?(?:\s|:|$)",
                     re.IGNORECASE)


def broken(scan: Scan, pruned: Sequence[Found], timeout: float = TIMEOUT
           ) -> tuple[tuple[Broken, ...], tuple[str, ...]]:
    """Run each pruned family's check once (families sharing a check and directory run
    it together); what failed, and a note for what passed."""
    python = verify.python_of(scan.prefix)
    groups: dict[tuple[str, str], list[str]] = {}
    for found in pruned:
        if found.family.check:
            groups.setdefault((found.family.check, found.family.directory),
                              []).append(found.family.name)
    if not groups:
        return (), ()
    if python is None:
        return (), (("the prefix has no bin/python: the pruned dispatch families "
                    f"({', '.join(n for names in groups.values() for n in names)}) "
                    "were not called"),)
    failed: list[Broken] = []
    passed: list[str] = []
    for (check, directory), names in groups.items():
        what = f"the {', '.join(names)} check"
        error = _run(str(python), check, str(scan.prefix / directory), timeout)
        if error:
            failed.append(Broken(what, KIND, error))
        else:
            passed += names
    notes = ((f"verified: a fresh python called the pruned dispatchers ({', '.join(passed)}) "
             "and got the right results"),) if passed else ()
    return tuple(failed), notes


def _run(python: str, check: str, directory: str, timeout: float) -> str:
    """The check's failure in one line, or ``""``."""
    with tempfile.TemporaryDirectory(prefix="shrinkconda-dispatch-") as home:
        # A clean environment: what the env sets for itself (the cap) must be enough.
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"}
        try:
            run = subprocess.run([python, "-I", "-B", "-c", check, directory], env=env,
                                 cwd=home, capture_output=True, text=True, errors="replace",
                                 stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return f"timed out after {timeout:.0f}s"
    if run.returncode == 0:
        return ""
    output = f"{run.stdout}\n{run.stderr}"
    missing = _CANNOT.findall(output)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    last = lines[-1][:300] if lines else "no output"
    if missing:
        return (f"exit status {run.returncode}: {missing[-1]} is missing, and the "
                f"dispatcher loads it on this CPU ({last})")
    return f"exit status {run.returncode}: {last}"
