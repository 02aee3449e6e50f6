"""Profiles: safe is the old default exactly, aggressive keeps every guarantee."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest
from condatools import conda_pack
from treeutil import du_bytes, file_digests, prefix_python, run_cli

from shrinkconda import Options, audit, profiles, shrink, strategies
from shrinkconda.errors import ProfileError, UnknownProfileError
from shrinkconda.profiles import Profile

SITE = "lib/python3.11/site-packages"
WORKS = ("import demopkg, astro, purepkg, devpkg, jitpkg, pyxpkg.loader; "
         "assert demopkg.add(2, 3) == 5")


def test_safe_is_the_default_exactly() -> None:
    everything, _ = strategies.available()
    old_default = tuple(s for s in everything if s.default)
    assert strategies.choose(everything) == old_default
    assert strategies.choose(everything, profile=profiles.SAFE) == old_default
    assert Options().profile == "safe" and profiles.SAFE.strip_mode == "debug"


def test_safe_profile_on_the_command_line_changes_nothing(prefix: Path) -> None:
    plain = json.loads(run_cli("audit", "--json", str(prefix)).stdout)
    safe = json.loads(run_cli("audit", "--json", "--profile", "safe", str(prefix)).stdout)
    assert plain["strategies"] == safe["strategies"]
    assert plain["bytes_saved"] == safe["bytes_saved"]


def test_aggressive_runs_safe_plus_the_opt_in_strategies() -> None:
    everything, _ = strategies.available()
    names = [s.name for s in strategies.choose(everything, profile=profiles.AGGRESSIVE)]
    assert names == ["pkgs-cache", "tests", "static-libs", "bytecode", "docs",
                     "soname-copies", "headers", "sources", "js-maps", "type-stubs",
                     "dev-tools", "locales", "dedup"]
    assert profiles.AGGRESSIVE.strip_mode == "dh"


def test_only_skip_and_strip_mode_apply_on_top_of_a_profile(opt_in_prefix: Path) -> None:
    skipped = audit(opt_in_prefix, Options(profile="aggressive", skip=("headers", "strip")))
    assert "headers" not in [ln.name for ln in skipped.lines]
    assert "strip" not in [ln.name for ln in skipped.lines]
    only = audit(opt_in_prefix, Options(profile="aggressive", only=("js-maps",)))
    assert [ln.name for ln in only.lines] == ["js-maps", "conda-meta"]
    debug = shrink(opt_in_prefix, Options(profile="aggressive", strip_mode="debug",
                                          only=("strip",), verify=False))
    history = (opt_in_prefix / "conda-meta" / "shrinkconda-history.jsonl").read_text()
    assert debug.lines[0].name == "strip" and json.loads(history)["strip_mode"] == "debug"


def test_unknown_profile_is_a_usage_error(prefix: Path) -> None:
    with pytest.raises(UnknownProfileError, match="safe, aggressive"):
        audit(prefix, Options(profile="reckless"))
    result = run_cli("audit", "--profile", "reckless", str(prefix))
    assert result.returncode == 2 and "unknown profile 'reckless'" in result.stderr


def test_a_profile_naming_a_missing_strategy_is_an_error() -> None:
    broken = Profile("broken", "needs a plugin", ("no-such-strategy",), "debug")
    everything, _ = strategies.available()
    with pytest.raises(ProfileError, match="no-such-strategy"):
        strategies.choose(everything, profile=broken)
    with pytest.raises(ProfileError, match="lower-case"):
        Profile("Bad Name", "", (), "debug")


@pytest.mark.parametrize("views", [False, True], ids=["blank-sources", "conda-pack-views"])
def test_aggressive_keeps_every_guarantee(opt_in_prefix: Path, tmp_path: Path,
                                          views: bool) -> None:
    options = Options(profile="aggressive", conda_pack_views=views)
    predicted = audit(opt_in_prefix, options)
    done = shrink(opt_in_prefix, options)
    assert done.verified and not done.rolled_back
    # The audit predicts the shrink within 1 %, each line within 1 % or the few blocks
    # that directories grow by while they hold temporary copies; du agrees with the report.
    assert [ln.name for ln in done.lines][-3:] == ["strip", "dedup", "conda-meta"]
    assert (done.lines[-2].saving.files > 0) == views  # dedup links only with views
    for before, after in zip(predicted.lines, done.lines):
        assert before.name == after.name
        assert abs(before.saving.bytes - after.saving.bytes) <= max(
            0.01 * after.saving.bytes, 4 * 4096), after.name
    assert abs(predicted.bytes_saved - done.bytes_saved) <= 0.01 * done.bytes_saved
    assert done.size_after == du_bytes(opt_in_prefix)
    assert done.bytes_saved > 0.55 * done.size_before
    # conda-meta stays true: every listed path exists, stripped files have new digests.
    for record in (opt_in_prefix / "conda-meta").glob("*.json"):
        doc = json.loads(record.read_text())
        for entry in doc["paths_data"]["paths"]:
            target = opt_in_prefix / entry["_path"]
            assert os.path.lexists(target), entry["_path"]
            if entry.get("path_type") == "hardlink" and "prefix_placeholder" not in entry:
                digest = hashlib.sha256(target.read_bytes()).hexdigest()
                assert digest == entry["sha256"], entry["_path"]
    assert prefix_python(opt_in_prefix, WORKS).returncode == 0
    # conda-pack packs it, and the unpacked copy works.
    archive = tmp_path / "env.tar.gz"
    packed = conda_pack(opt_in_prefix, archive)
    assert packed.returncode == 0, packed.stderr
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked)
    result = prefix_python(unpacked, WORKS)
    assert result.returncode == 0, result.stderr


def test_aggressive_that_breaks_a_check_is_rolled_back(opt_in_prefix: Path) -> None:
    before = file_digests(opt_in_prefix)
    check = "python -c \"import devpkg; devpkg.greet('fr')\""
    report = shrink(opt_in_prefix, Options(profile="aggressive", verify_commands=(check,)))
    assert report.rolled_back and report.bytes_saved == 0
    assert [b.kind for b in report.broken] == ["command"]
    assert file_digests(opt_in_prefix) == before


def test_aggressive_leaves_the_cache_and_the_sibling_env_alone(
        shared_cache_envs: tuple[Path, Path, Path]) -> None:
    cache, env_a, env_b = shared_cache_envs
    cache_before, sibling_before = file_digests(cache), file_digests(env_b)
    report = shrink(env_a, Options(profile="aggressive"))
    assert report.verified and not report.rolled_back
    assert not (env_a / "include").exists()
    assert file_digests(cache) == cache_before and file_digests(env_b) == sibling_before
