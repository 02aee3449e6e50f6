#!/usr/bin/env python3
"""conda-pack archive sizes of the realistic env, unshrunk and shrunk, in both layouts.

    .venv/bin/python scripts/pack_sizes.py [--workdir /tmp/pack-sizes]

Builds the realistic env twice with scripts/build_realistic_env.py: once as a base
install (cache in ``pkgs/``, which the shrink removes) and once from a cache outside
the prefix (kept, and shared). Each is packed by ``conda-pack`` (no flags) before
``shrinkconda shrink -y``, after it, and after a second shrink with
``--conda-pack-views``; it records conda-pack's warnings, the archive's ``libpython``
(stripped or not) and whether the outside cache changed. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True)


def pack(prefix: Path, archive: Path) -> dict[str, object]:
    archive.unlink(missing_ok=True)
    start = time.perf_counter()
    done = run(PYTHON, "-c", "from conda_pack.cli import main; main()", "-p", str(prefix),
               "-o", str(archive), "--quiet")
    seconds = time.perf_counter() - start
    with tarfile.open(archive) as tar:
        libpython = tar.getmember("lib/libpython3.11.so.1.0").size
    uncached = [line for line in done.stderr.splitlines() if line.startswith("- ")]
    return {"archive": str(archive), "bytes": archive.stat().st_size,
            "seconds": round(seconds, 1), "uncached_warning_lists": len(uncached),
            "warned": bool(done.stderr.strip()),
            "libpython_in_archive": libpython,
            "libpython_in_env": (prefix / "lib/libpython3.11.so.1.0").stat().st_size}


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pack-sizes"))
    args = parser.parse_args(argv)
    work: Path = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    build = [PYTHON, str(REPO_ROOT / "scripts" / "build_realistic_env.py")]
    inside, outside, cache = work / "base", work / "envs" / "ds", work / "pkgs"
    run(*build, str(inside), "--force")
    run(*build, str(outside), "--force", "--pkgs-dir", str(cache))
    result: dict[str, object] = {}
    for name, prefix in (("cache inside", inside), ("cache outside", outside)):
        before = pack(prefix, work / f"{prefix.name}-unshrunk.tar.gz")
        cache_before = tree_digest(cache)
        shrunk = run(PYTHON, "-m", "shrinkconda", "shrink", "-y", "--json", str(prefix))
        report = json.loads(shrunk.stdout)
        after = pack(prefix, work / f"{prefix.name}-shrunk.tar.gz")
        # The same env again, its changed records pointed at views (a shrink that finds
        # nothing more to take, with --conda-pack-views).
        viewed = json.loads(run(PYTHON, "-m", "shrinkconda", "shrink", "-y", "--json",
                                "--conda-pack-views", str(prefix)).stdout)
        with_views = pack(prefix, work / f"{prefix.name}-shrunk-views.tar.gz")
        result[name] = {"du_before": report["size_before"], "du_after": report["size_after"],
                        "du_after_with_views": viewed["size_after"],
                        "unshrunk_archive": before, "shrunk_archive": after,
                        "shrunk_archive_with_views": with_views,
                        "outside_cache_unchanged": tree_digest(cache) == cache_before}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    os.chdir(REPO_ROOT)
    sys.exit(main())
