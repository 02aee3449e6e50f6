"""Strategy plugins: the built-ins, in order, and third-party ones from entry points.

A third-party package registers a :class:`Strategy` under the entry-point group
``shrinkconda.strategies``::

    [project.entry-points."shrinkconda.strategies"]
    js-maps = "mypkg.shrink:STRATEGY"
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shrinkconda import plugins
from shrinkconda.errors import StrategyError, UnknownStrategyError
from shrinkconda.profiles import SAFE, Profile, check
from shrinkconda.scan import Problem
from shrinkconda.strategies import (
    bytecode,
    dedup,
    dev_tools,
    docs,
    headers,
    js_maps,
    locales,
    pkgs_cache,
    soname_copies,
    sources,
    static_libs,
    tests,
    type_stubs,
)
from shrinkconda.strategies.base import Choice, Keep, Strategy

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "Choice", "Keep", "Strategy", "available", "choose"]

ENTRY_POINT_GROUP = "shrinkconda.strategies"

#: The built-in strategies, in the order that settles which one a shared file counts for.
BUILTIN: tuple[Strategy, ...] = (
    pkgs_cache.STRATEGY,
    tests.STRATEGY,
    static_libs.STRATEGY,
    bytecode.STRATEGY,
    docs.STRATEGY,
    soname_copies.STRATEGY,
    headers.STRATEGY,
    sources.STRATEGY,
    js_maps.STRATEGY,
    type_stubs.STRATEGY,
    dev_tools.STRATEGY,
    locales.STRATEGY,
    dedup.STRATEGY,
)


def available() -> tuple[tuple[Strategy, ...], tuple[Problem, ...]]:
    """Built-ins then plugins (sorted by name), and the plugins that failed to load."""
    return plugins.load(ENTRY_POINT_GROUP, BUILTIN, Strategy, "strategies", "plugin",
                        StrategyError)


def choose(
    strategies: Sequence[Strategy], only: Iterable[str] = (), skip: Iterable[str] = (),
    profile: Profile = SAFE,
) -> tuple[Strategy, ...]:
    """The strategies to run: ``only`` if given, else the profile's; minus ``skip``."""
    only, skip = list(only), list(skip)
    known = {s.name for s in strategies}
    unknown = sorted({*only, *skip} - known)
    if unknown:
        raise UnknownStrategyError(
            f"unknown strategy {', '.join(unknown)}; "
            f"'shrinkconda strategies' lists: {', '.join(s.name for s in strategies)}"
        )
    if not only:
        check(profile, [s.name for s in strategies])
    chosen = [s for s in strategies if (s.name in only if only else profile.runs(s.name, s.default))]
    return tuple(s for s in chosen if s.name not in skip)
