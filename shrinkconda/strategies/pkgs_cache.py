"""The ``pkgs-cache`` strategy: the package cache a base install keeps in ``pkgs/``."""

from __future__ import annotations

from collections.abc import Iterator

from shrinkconda.scan import DIR, Scan
from shrinkconda.strategies.base import Choice, Keep, Strategy


def select(scan: Scan) -> Iterator[Choice]:
    """Everything inside ``pkgs/``: archives, extracted packages, ``cache/``, locks.

    The directory itself stays: it is often a mount point for a build cache, and conda
    expects to find it. An extracted package that an environment in ``envs/`` was
    installed from stays too: its files are hard links of that environment's, so
    removing them frees nothing, and the environment's records (``link.source``) and
    conda-pack still read it.
    """
    pkgs = scan.find("pkgs")
    if pkgs is None or scan.kinds[pkgs] != DIR:
        return
    in_use = _used_by_nested_envs(scan)
    for child in scan.children(pkgs):
        users = in_use.get(scan.name(child))
        if users and scan.kinds[child] == DIR:
            yield Keep(child, f"{' and '.join(sorted(users))} linked from it")
        else:
            yield child


def _used_by_nested_envs(scan: Scan) -> dict[str, set[str]]:
    """Record name (``name-version-build``, also the extracted dir's name) -> the
    ``envs/<name>`` prefixes whose ``conda-meta`` has that record."""
    envs = scan.find("envs")
    used: dict[str, set[str]] = {}
    if envs is None or scan.kinds[envs] != DIR:
        return used
    for env in scan.children(envs):
        meta = scan.find(f"{scan.paths[env]}/conda-meta")
        if meta is None:
            continue
        for record in scan.children(meta):
            name = scan.name(record)
            if name.endswith(".json"):
                used.setdefault(name[:-len(".json")], set()).add(scan.paths[env])
    return used


STRATEGY = Strategy(
    name="pkgs-cache",
    summary="the package cache in pkgs/: archives, extracted packages, repodata, locks",
    select=select,
)
