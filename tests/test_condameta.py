"""A shrunk env stays a first-class conda env, wherever its package cache lives.

Real layouts installed by py-rattler (cache inside the prefix, one cache outside shared
by two envs, pixi's `.pixi/envs/<name>`, a root prefix's `envs/`), real conda-pack and
conda-unpack, and real rattler removes, installs and replacements on shrunk envs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures import DEFAULT_SPECS, build_channel, build_shared_cache_envs, copy_tree, install
from fixtures.content import later_recipes
from shrinkconda import cacheview
from shrinkconda.condameta import HISTORY
from shrinkconda.pipeline import Options, audit, shrink
from shrinkconda.render.report import render
from tests.condatools import (
    SITE,
    archive_members,
    check_works,
    compare_archive,
    conda_pack,
    digests,
    record_paths,
    records_problems,
    run_in,
    unpack,
)
from tests.treeutil import run_cli

#: What the managed envs start with: `purepkg` pinned, so that 0.2 is an upgrade.
PINNED = ("python", "libdemo", "demopkg", "astro", "purepkg 0.1.*")


VIEWS = Options(conda_pack_views=True)


def packs_cleanly(prefix: Path, archive: Path, views: bool = False) -> None:
    """conda-pack, without flags, packs exactly the prefix. With views it warns about
    nothing; without, only that the packages the shrink changed are "uncached"."""
    packed = conda_pack(prefix, archive)
    assert packed.returncode == 0, packed.stderr
    assert "deleted/overwritten" not in packed.stderr, packed.stderr
    if views:
        for word in ("warn", "uncached"):
            assert word not in packed.stderr.lower(), packed.stderr
    else:
        listed = [line for line in packed.stderr.splitlines() if line.startswith("- ")]
        changed = {json.loads(r.read_text())["name"] for r in (prefix / "conda-meta").glob(
            "*.json") if json.loads(r.read_text())["link"]["source"] == ""}
        assert {line[2:].split("=")[0] for line in listed} == changed, packed.stderr
    assert compare_archive(archive, prefix) == []


@pytest.fixture(scope="session")
def later_channel() -> Path:
    """The fixture channel plus packages published later (purepkg 0.2, later, demo-doc)."""
    return build_channel(extra=later_recipes())


@pytest.fixture(scope="session")
def template_managed(tmp_path_factory: pytest.TempPathFactory,
                     later_channel: Path) -> tuple[Path, Path, Path]:
    return build_shared_cache_envs(tmp_path_factory.mktemp("managed") / "root", later_channel,
                                   specs=PINNED)


@pytest.fixture
def managed(template_managed: tuple[Path, Path, Path],
            tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(cache, env_a, env_b) from the later channel: an installer can manage them."""
    cache, env_a, env_b = template_managed
    root = copy_tree(cache.parent, tmp_path / "managed")
    yield root / cache.name, root / env_a.name, root / env_b.name
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("views", [False, True], ids=["default", "views"])
def test_conda_pack_packs_a_shrunk_env_whose_cache_was_inside(prefix: Path, tmp_path: Path,
                                                               views: bool) -> None:
    # Through the command line, as a Dockerfile runs it.
    done = run_cli("shrink", "-y", "-q", *(["--conda-pack-views"] if views else []), str(prefix))
    assert done.returncode == 0, done.stderr
    assert not any((prefix / "pkgs").iterdir())
    assert (prefix / "conda-meta" / cacheview.VIEWS).is_dir() == views
    packs_cleanly(prefix, tmp_path / "env.tar.gz", views)
    check_works(unpack(tmp_path / "env.tar.gz", tmp_path / "elsewhere" / "env"))


@pytest.mark.parametrize("views", [False, True], ids=["default", "views"])
def test_conda_pack_packs_the_shrunk_bytes_when_the_cache_is_outside(
        shared_cache_envs: tuple[Path, Path, Path], tmp_path: Path, views: bool) -> None:
    cache, env_a, env_b = shared_cache_envs
    before = digests(cache), digests(env_b)
    report = shrink(env_a, Options(conda_pack_views=views))
    assert report.lines[-2].name == "strip" and report.lines[-2].saving.files > 0
    archive = tmp_path / "env_a.tar.gz"
    packs_cleanly(env_a, archive, views)
    # The stripped library is packed at its stripped size, not the cache's.
    libpython = "lib/libpython3.11.so.1.0"
    member = archive_members(archive)[libpython]
    assert member.size == (env_a / libpython).stat().st_size
    assert member.size < (cache / "python-3.11.7-h1d2e3f4_0_cpython" / libpython).stat().st_size
    check_works(unpack(archive, tmp_path / "elsewhere" / "env_a"))
    assert (digests(cache), digests(env_b)) == before


def test_an_installer_keeps_managing_a_shrunk_env(managed: tuple[Path, Path, Path],
                                                  later_channel: Path, tmp_path: Path) -> None:
    cache, env, sibling = managed
    shrink(env, Options())
    sibling_before = digests(sibling)

    # Remove a package: all its remaining files go, and nothing else changes.
    astro = set(record_paths(env, "astro"))
    others = {p: d for p, d in digests(env).items()
              if p not in astro and not p.startswith("conda-meta/")}
    install(env, [s for s in PINNED if s != "astro"], later_channel, cache, check_links=False)
    assert not any((env / p).exists() for p in astro)
    after = digests(env)
    assert {p: after.get(p) for p in others if not _emptied_dir(p, astro)} == \
        {p: d for p, d in others.items() if not _emptied_dir(p, astro)}
    assert records_problems(env) == []
    check_works(env, also=("purepkg",))

    # Add a package: its console script, importlib metadata and share/ data work.
    install(env, [*PINNED, "later"], later_channel, cache, check_links=False)
    assert records_problems(env) == []
    later = run_in(env, "later")
    assert later.returncode == 0 and later.stdout.strip() == "hello from share", later
    check_works(env)

    # Replace a package with a newer version.
    install(env, [*PINNED[:-1], "purepkg 0.2.*", "later"], later_channel, cache,
            check_links=False)
    assert records_problems(env) == []
    greet = run_in(env, str(env / "bin" / "python"), "-c",
                   "import purepkg; print(purepkg.greet())")
    assert greet.stdout.strip() == "hello", greet.stderr
    check_works(env)
    assert digests(sibling) == sibling_before
    packs_cleanly(env, tmp_path / "env.tar.gz")


def _emptied_dir(path: str, removed: set[str]) -> bool:
    """A directory the installer removed because the package's files were all it held."""
    return any(p.startswith(path + "/") for p in removed)


def test_a_second_shrink_takes_only_what_new_packages_brought(
        managed: tuple[Path, Path, Path], later_channel: Path, tmp_path: Path) -> None:
    cache, env, _ = managed
    first = shrink(env, VIEWS)
    install(env, [*PINNED[:-1], "purepkg 0.2.*", "later"], later_channel, cache,
            check_links=False)
    replaced_view = env / cacheview.relpath("purepkg-0.1-pyhd8ed1ab_0")
    assert replaced_view.exists()  # the installer does not know about views

    predicted = audit(env, VIEWS)
    second = shrink(env, VIEWS)
    assert not second.rolled_back
    assert [(line.name, line.saving) for line in predicted.lines] == \
        [(line.name, line.saving) for line in second.lines]
    history = [json.loads(line) for line in (env / "conda-meta" / HISTORY).read_text()
               .splitlines()]
    removed = [root for roots in history[-1]["removed"].values() for root in roots]
    assert sorted(removed) == [
        f"{SITE}/later/__pycache__", f"{SITE}/later/tests", f"{SITE}/purepkg/tests",
        "share/doc"]  # the first shrink took share/doc whole; only later's is back
    assert history[-1]["stripped"] == {}  # the first shrink stripped all there was
    saved = {line.name: line.saving.files for line in second.lines}
    assert saved["tests"] == 4 and saved["bytecode"] == 1 and saved["docs"] == 1
    assert second.bytes_saved < first.bytes_saved / 10
    assert (env / "share" / "later" / "greeting.txt").exists()
    assert not replaced_view.exists()  # the view of a replaced package goes
    assert records_problems(env) == []
    assert run_in(env, "later").stdout.strip() == "hello from share"
    check_works(env)
    packs_cleanly(env, tmp_path / "env.tar.gz", views=True)
    check_works(unpack(tmp_path / "env.tar.gz", tmp_path / "elsewhere" / "env"))

    # Shrinking without --conda-pack-views takes the views away again.
    assert audit(env, Options()).size_after == shrink(env, Options()).size_after
    assert not (env / "conda-meta" / cacheview.VIEWS).exists()
    assert records_problems(env) == []
    packs_cleanly(env, tmp_path / "env-again.tar.gz")


def test_a_package_left_with_no_files_loses_its_record(
        managed: tuple[Path, Path, Path], later_channel: Path, tmp_path: Path) -> None:
    cache, env, _ = managed
    install(env, [*PINNED, "demo-doc"], later_channel, cache)
    record = env / "conda-meta" / "demo-doc-1.0-0.json"
    assert record.exists()

    predicted = audit(env, Options())
    report = shrink(env, Options())
    assert predicted.removed_packages == report.removed_packages == ("demo-doc",)
    assert predicted.size_after == report.size_after
    assert any("demo-doc" in note for note in report.notes)
    assert not record.exists()
    assert records_problems(env) == []
    packs_cleanly(env, tmp_path / "env.tar.gz")
    # The installer sees it as not installed, and can put it back.
    install(env, [*PINNED, "demo-doc"], later_channel, cache, check_links=False)
    assert record.exists() and (env / "share" / "doc" / "demo-doc" / "index.html").exists()


def test_pixi_layout(fixture_channel: Path, tmp_path: Path) -> None:
    """pixi keeps envs in `<project>/.pixi/envs/<name>` and its cache elsewhere."""
    cache = tmp_path / "rattler-cache" / "pkgs"
    env = tmp_path / "project" / ".pixi" / "envs" / "default"
    install(env, DEFAULT_SPECS, fixture_channel, cache, conda_cache_layout=False)
    (tmp_path / "project" / "pixi.toml").write_text('[project]\nname = "demo"\n')
    cache_before = digests(cache)

    assert shrink(env, Options()).bytes_saved > 0
    packs_cleanly(env, tmp_path / "env.tar.gz")
    check_works(unpack(tmp_path / "env.tar.gz", tmp_path / "elsewhere" / "env"))
    assert digests(cache) == cache_before
    assert (tmp_path / "project" / "pixi.toml").exists()


def test_an_env_in_a_root_prefix_envs_dir(fixture_channel: Path, tmp_path: Path) -> None:
    root = tmp_path / "miniconda"
    install(root, DEFAULT_SPECS, fixture_channel, root / "pkgs")
    dev = root / "envs" / "dev"
    install(dev, DEFAULT_SPECS, fixture_channel, root / "pkgs")

    outside_dev = {p: d for p, d in digests(root).items() if not p.startswith("envs/")}
    shrink(dev, VIEWS)
    assert {p: d for p, d in digests(root).items() if not p.startswith("envs/")} == outside_dev
    packs_cleanly(dev, tmp_path / "dev.tar.gz", views=True)

    dev_before = digests(dev)
    report = shrink(root, Options())
    assert digests(dev) == dev_before  # shrinking the root never enters envs/
    # The extracted packages dev was installed from stay (hard links of dev's files:
    # removing them would free nothing); the archives and repodata go.
    kept = {k.path for k in report.kept}
    assert "pkgs/demopkg-1.0-py311h1a2b3c4_0" in kept
    assert "kept: 2 more, envs/dev linked from it" in render(report)  # 5 packages
    assert not (root / "pkgs" / "demopkg-1.0-py311h1a2b3c4_0.conda").exists()
    packs_cleanly(root, tmp_path / "root.tar.gz")
    packs_cleanly(dev, tmp_path / "dev-again.tar.gz", views=True)
    check_works(dev)
    check_works(root)


def test_a_view_reads_the_prefix_and_keeps_the_original_source() -> None:
    doc = {
        "name": "purepkg", "noarch": "python",
        "paths_data": {"paths": [
            {"_path": f"{SITE}/purepkg/__init__.py", "path_type": "hardlink"},
            {"_path": "bin/purepkg-cli", "path_type": "hardlink"},
            {"_path": "lib/libx.so", "path_type": "softlink"},
        ]},
    }
    view = cacheview.build("purepkg-0.1-0", doc, "/opt/pkgs/purepkg-0.1-0")
    assert view is not None
    assert view.links == (("bin", "../../../bin"), ("lib", "../../../lib"))
    paths = json.loads(view.paths_json)
    modes = {p["_path"]: p.get("file_mode") for p in paths["paths"]}
    # A noarch script holds the env's prefix in its shebang: conda-pack must look for it.
    assert modes == {f"{SITE}/purepkg/__init__.py": None, "bin/purepkg-cli": "unknown",
                     "lib/libx.so": None}
    assert paths["shrinkconda"]["original_source"] == "/opt/pkgs/purepkg-0.1-0"
    # A file at the top of the prefix cannot be reached through a symlinked directory.
    top = {"name": "x", "paths_data": {"paths": [{"_path": "LICENSE.txt"}]}}
    assert cacheview.build("x-1-0", top, "") is None
