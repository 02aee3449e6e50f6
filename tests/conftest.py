"""Fixtures that hand each test a real conda prefix of its own to shrink.

Building is session-scoped (packages come from the on-disk fixture cache, see
`fixtures.builder`); each test gets a `cp -a` copy, so it may delete or strip freely.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.builder import (
    APP_SPECS,
    build_channel,
    build_external_cache_env,
    build_fixture_prefix,
    build_opt_in_prefix,
    build_shared_cache_envs,
)
from fixtures.install import copy_tree


@pytest.fixture(scope="session")
def fixture_channel() -> Path:
    """An indexed local channel with python, libdemo, demopkg, astro and purepkg."""
    return build_channel()


@pytest.fixture(scope="session")
def template_prefix(tmp_path_factory: pytest.TempPathFactory, fixture_channel: Path) -> Path:
    """A base-install prefix (cache in `pkgs/`) that tests must not modify: copy it."""
    return build_fixture_prefix(tmp_path_factory.mktemp("template") / "prefix", fixture_channel)


@pytest.fixture
def prefix(template_prefix: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of `template_prefix`; env files stay hard links of its `pkgs/`."""
    copy = copy_tree(template_prefix, tmp_path / "prefix")
    yield copy
    # Each copy is ~60 MB and pytest keeps the last three sessions' tmp dirs.
    shutil.rmtree(copy, ignore_errors=True)


@pytest.fixture(scope="session")
def template_external_cache_env(
    tmp_path_factory: pytest.TempPathFactory, fixture_channel: Path
) -> tuple[Path, Path]:
    """(cache, env) with the cache beside the env, not inside it; do not modify."""
    return build_external_cache_env(tmp_path_factory.mktemp("external") / "root", fixture_channel)


@pytest.fixture
def external_cache_env(
    template_external_cache_env: tuple[Path, Path], tmp_path: Path
) -> Iterator[tuple[Path, Path]]:
    """A private copy of (cache, env) whose env files are hard links of the cache."""
    cache, env = template_external_cache_env
    root = copy_tree(cache.parent, tmp_path / "external")
    yield root / cache.name, root / env.name
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template_shared_cache_envs(
    tmp_path_factory: pytest.TempPathFactory, fixture_channel: Path
) -> tuple[Path, Path, Path]:
    """(cache, env_a, env_b): two envs linked from one cache; do not modify."""
    return build_shared_cache_envs(tmp_path_factory.mktemp("shared") / "root", fixture_channel)


@pytest.fixture
def shared_cache_envs(
    template_shared_cache_envs: tuple[Path, Path, Path], tmp_path: Path
) -> Iterator[tuple[Path, Path, Path]]:
    """A private copy of (cache, env_a, env_b), for hard-link safety tests."""
    cache, env_a, env_b = template_shared_cache_envs
    root = copy_tree(cache.parent, tmp_path / "shared")
    yield root / cache.name, root / env_a.name, root / env_b.name
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template_app_prefix(tmp_path_factory: pytest.TempPathFactory, fixture_channel: Path) -> Path:
    """The fixture prefix plus the `appdemo` app (fixtures/usedby.py); do not modify."""
    return build_fixture_prefix(tmp_path_factory.mktemp("app") / "prefix", fixture_channel,
                                APP_SPECS)


@pytest.fixture
def app_prefix(template_app_prefix: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of `template_app_prefix`."""
    copy = copy_tree(template_app_prefix, tmp_path / "prefix")
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


@pytest.fixture(scope="session")
def template_opt_in_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base-install prefix with the demo packages plus `fixtures.opt_in`'s: what the
    opt-in strategies remove, and their traps. Tests must not modify it: copy it."""
    return build_opt_in_prefix(tmp_path_factory.mktemp("opt-in") / "prefix")


@pytest.fixture
def opt_in_prefix(template_opt_in_prefix: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of `template_opt_in_prefix`."""
    copy = copy_tree(template_opt_in_prefix, tmp_path / "prefix")
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


@pytest.fixture(scope="session")
def template_doctor_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app prefix plus `fixtures.doctor`'s packages (tests/realconda.py); copy it."""
    from tests.realconda import build_doctor_prefix

    return build_doctor_prefix(tmp_path_factory.mktemp("doctor") / "prefix")
