"""The fixture prefixes are what the shrink tests assume: real, linked, runnable."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fixtures.content import EXT_SUFFIX, PY_VER, SITE
from fixtures.install import prefix_records, verify_hardlinks

#: `env -i` with only system dirs on PATH: the prefix must not lean on the host Python.
CLEAN_ENV = {"PATH": "/usr/bin:/bin"}
PACKAGES = ("python", "libdemo", "demopkg", "astro", "purepkg")


def run(*cmd: str | Path) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], env=CLEAN_ENV, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_records_list_files_and_paths_data(prefix: Path) -> None:
    records = {r["name"]: r for r in prefix_records(prefix)}
    assert set(records) == set(PACKAGES)
    for record in records.values():
        assert record["files"]
        assert len(record["paths_data"]["paths"]) == len(record["files"])
        assert Path(record["link"]["source"]).parent == prefix / "pkgs"


def test_env_files_are_hard_links_of_the_cache(prefix: Path) -> None:
    verify_hardlinks(prefix)
    env_file = prefix / "lib/libdemo.so.1.0.0"
    cached = prefix / "pkgs/libdemo-1.0.0-h1a2b3c4_0/lib/libdemo.so.1.0.0"
    assert env_file.stat().st_ino == cached.stat().st_ino
    assert env_file.stat().st_nlink >= 2
    # Rewritten for the prefix, so a copy of its own.
    assert (prefix / "bin/demo-cli").stat().st_nlink == 1


def test_cache_looks_like_a_base_install(prefix: Path) -> None:
    pkgs = prefix / "pkgs"
    urls = (pkgs / "urls.txt").read_text().split()
    assert len(urls) == len(PACKAGES)
    for url in urls:
        name = url.rsplit("/", 1)[1]
        assert (pkgs / name).is_file()
        assert (pkgs / name.removesuffix(".conda") / "info/paths.json").is_file()
    assert list((pkgs / "cache").glob("*.json"))


def test_copy_does_not_point_into_the_template(prefix: Path, template_prefix: Path) -> None:
    for path in [*prefix.glob("conda-meta/*"), prefix / "bin/demo-cli"]:
        assert str(template_prefix) + "/" not in path.read_text()
    assert run(prefix / "bin/demo-cli") == "5"


def test_prefix_python_runs_with_a_clean_environment(prefix: Path) -> None:
    python = prefix / "bin/python"
    run(python, "-c", "import json, sqlite3, ssl, ctypes, decimal, test.support")
    code = "import sys, demopkg, astro, purepkg; print(sys.prefix, demopkg.add(2, 3))"
    assert run(python, "-c", code) == f"{prefix} 5"
    code = "from importlib.metadata import entry_points as e; print(e(group='demopkg.plugins'))"
    assert "hello" in run(python, "-c", code)
    assert run(prefix / "bin/demo-tool", "40", "2") == "demo-tool 1.0.0: 42"


@pytest.mark.parametrize(
    "path",
    [
        "lib/libdemo.so.1.0.0",
        f"lib/libpython{PY_VER}.so.1.0",
        "bin/demo-tool",
        "lib/libdemo.a",
        f"{SITE}/demopkg/_ext{EXT_SUFFIX}",
    ],
)
def test_elf_files_carry_debug_info(prefix: Path, path: str) -> None:
    assert ".debug_info" in run("readelf", "-S", "-W", prefix / path)


def test_look_alikes_are_not_what_their_names_say(prefix: Path) -> None:
    assert not (prefix / "lib/libnotar.a").read_bytes().startswith(b"!<arch>\n")
    assert (prefix / "lib/libdemo.a").read_bytes().startswith(b"!<arch>\n")
    assert not (prefix / "lib/libtext.so").read_bytes().startswith(b"\x7fELF")


def test_shared_cache_envs_share_inodes(shared_cache_envs: tuple[Path, Path, Path]) -> None:
    cache, env_a, env_b = shared_cache_envs
    rel = f"lib/libpython{PY_VER}.so.1.0"
    (cached_python,) = cache.glob("python-*_cpython")
    inodes = {p.stat().st_ino for p in (env_a / rel, env_b / rel, cached_python / rel)}
    assert len(inodes) == 1
    record = json.loads(next((env_b / "conda-meta").glob("libdemo-*.json")).read_text())
    assert Path(record["link"]["source"]).parent == cache
    verify_hardlinks(env_a)
    verify_hardlinks(env_b)
