"""Installed distributions' metadata stays readable: ``importlib.metadata`` works on the
``*.dist-info`` a shrink keeps.

Versions, requirements, file lists and entry points (plugin discovery, console scripts)
are read by stdlib code (``importlib.metadata``, ``email.parser``, ``csv``, ...) that an
application may never import while it is traced. ``--used-by`` traces :func:`probe` so
that code stays, and the verification asks the env's own python to read every kept
distribution's metadata before and after the shrink.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from shrinkconda.render.report import Broken

KIND = "metadata"
"""The kind of :class:`Broken` entry for a distribution whose metadata no longer reads."""

# Runs inside the environment's own interpreter: reads what importlib.metadata offers of
# every distribution in the directories named on the command line, prints one JSON
# object of {distribution: error} for those that fail.
_READER = """\
import json, sys
sys.path[:0] = sys.argv[1:]
failures = {}
def failed(exc):
    return (type(exc).__name__ + ": " + str(exc))[:500]
try:
    from importlib import metadata
    try:
        metadata.entry_points(group="shrinkconda.probe")  # Python 3.10 and later
    except TypeError:
        metadata.entry_points()
    for dist in metadata.distributions(path=sys.argv[1:]):
        where = str(getattr(dist, "_path", "?")).rstrip("/").rsplit("/", 1)[-1]
        try:
            name = dist.metadata["Name"]
            metadata.version(name), metadata.requires(name)
            [(f.hash, f.size) for f in metadata.files(name) or ()]
            [(e.group, e.name, e.value) for e in dist.entry_points]
        except BaseException as exc:
            failures[where] = failed(exc)
except BaseException as exc:
    failures["importlib.metadata"] = failed(exc)
print(json.dumps(failures))
"""

_PROBE_NAME = "shrinkconda_probe"
_PROBE_FILES = {
    "METADATA": "Metadata-Version: 2.1\nName: shrinkconda-probe\nVersion: 1.0\n"
                "Requires-Dist: shrinkconda-other>=1; python_version >= '3'\n",
    "RECORD": "shrinkconda_probe.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n"
              f"{_PROBE_NAME}-1.0.dist-info/RECORD,,\n",
    "entry_points.txt": "[shrinkconda.probe]\nprobe = shrinkconda_probe:main\n",
    "top_level.txt": f"{_PROBE_NAME}\n",
}


def probe(python: Path, workdir: Path) -> list[str]:
    """A command for the trace: the env's python reading, the way it reads every kept
    distribution, a distribution of its own in ``workdir`` (outside the prefix, so
    the trace keeps only the stdlib code that reads it, no distribution's files)."""
    dist_info = workdir / f"{_PROBE_NAME}-1.0.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    for name, text in _PROBE_FILES.items():
        (dist_info / name).write_text(text, encoding="utf-8")
    # -S: no site-packages on sys.path, so no distribution of the prefix is read.
    return [str(python), "-I", "-S", "-B", "-c", _READER, str(workdir)]


def unreadable(prefix: Path, python: Path | None) -> dict[str, str]:
    """``{dist-info: error}`` for each installed distribution whose metadata
    ``importlib.metadata`` cannot read (``{"importlib.metadata": error}`` when it does
    not even import)."""
    sites = sorted(str(p) for p in prefix.glob("lib/python*/site-packages") if p.is_dir())
    if python is None or not sites:
        return {}
    env = {"PATH": f"{prefix / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8",
           "CONDA_PREFIX": str(prefix), "HOME": os.environ.get("HOME", "/")}
    try:
        run = subprocess.run([str(python), "-I", "-B", "-c", _READER, *sites],
                             capture_output=True, text=True, env=env, check=False,
                             stdin=subprocess.DEVNULL, timeout=300)
    except subprocess.TimeoutExpired:
        return {"importlib.metadata": "timed out after 300s"}
    try:
        found = json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
        return {"importlib.metadata": tail[:500]}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def broken(prefix: Path, python: Path | None, before: dict[str, str]) -> tuple[Broken, ...]:
    """The distributions whose metadata read before the shrink and no longer does;
    those the shrink removed whole (their ``*.dist-info`` gone) are not missed."""
    after = unreadable(prefix, python)
    return tuple(Broken(f"importlib.metadata: {dist}", KIND, error)
                 for dist, error in sorted(after.items()) if dist not in before)
