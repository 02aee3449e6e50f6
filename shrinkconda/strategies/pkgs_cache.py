"""The ``pkgs-cache`` strategy: the package cache a base install keeps in ``pkgs/``."""

from __future__ import annotations

from collections.abc import Iterator

from shrinkconda.scan import DIR, Scan
from shrinkconda.strategies.base import Strategy


def select(scan: Scan) -> Iterator[int]:
    """Everything inside ``pkgs/``: archives, extracted packages, ``cache/``, locks.

    The directory itself stays: it is often a mount point for a build cache, and conda
    expects to find it.
    """
    pkgs = scan.find("pkgs")
    if pkgs is not None and scan.kinds[pkgs] == DIR:
        yield from scan.children(pkgs)


STRATEGY = Strategy(
    name="pkgs-cache",
    summary="the package cache in pkgs/: archives, extracted packages, repodata, locks",
    select=select,
)
