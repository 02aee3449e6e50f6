"""Profiles: named sets of strategies and a strip mode, as data a plugin can add to.

A third-party package registers a :class:`Profile` under the entry-point group
``shrinkconda.profiles``::

    [project.entry-points."shrinkconda.profiles"]
    lambda = "mypkg.shrink:PROFILE"
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from shrinkconda import plugins
from shrinkconda.errors import ProfileError, UnknownProfileError
from shrinkconda.scan import Problem

ENTRY_POINT_GROUP = "shrinkconda.profiles"
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Profile:
    """What a shrink runs when the user names no ``--only``: ``--profile NAME``."""

    name: str
    """What users type (``aggressive``)."""
    summary: str
    """One line saying what it is for."""
    strategies: tuple[str, ...]
    """Strategies it runs, by name, besides the defaults (see :attr:`defaults`)."""
    strip_mode: str
    """The strip mode unless ``--strip-mode`` says otherwise (``debug``, ``unneeded``,
    ``all``, or ``dh``: per file, as Debian's ``dh_strip`` does)."""
    defaults: bool = True
    """Whether it also runs every strategy that is on by default (built-in or plugin)."""
    python_code: str = "source"
    """The form Python code takes unless ``--python-code`` says otherwise: ``source``,
    ``bytecode`` or ``both`` (see :mod:`shrinkconda.phases.bytecode`)."""
    origin: str = "built-in"
    """Where it came from: ``built-in`` or the entry point that registered it."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ProfileError(
                f"invalid profile name {self.name!r} ({self.origin}): use lower-case words "
                "joined by hyphens, like 'aggressive'")

    def runs(self, name: str, default: bool) -> bool:
        """Whether this profile runs the strategy ``name`` (on by default if ``default``)."""
        return name in self.strategies or (self.defaults and default)


SAFE = Profile(
    name="safe",
    summary="the default: what nothing at run time reads (cache, tests, static libraries, "
            "bytecode, docs), strip debug info, pip's copies of a library's names linked",
    strategies=(),
    strip_mode="debug",
)
AGGRESSIVE = Profile(
    name="aggressive",
    summary="safe plus what only developers use (headers, sources, stubs, source maps, "
            "pip/setuptools/wheel, translations), duplicates linked, strip like dh_strip",
    strategies=("headers", "sources", "js-maps", "type-stubs", "dev-tools", "locales",
                "dedup"),
    strip_mode="dh",
    python_code="bytecode",
)
BUILTIN: tuple[Profile, ...] = (SAFE, AGGRESSIVE)
DEFAULT = SAFE.name


def available() -> tuple[tuple[Profile, ...], tuple[Problem, ...]]:
    """Built-ins then plugins (sorted by name), and the plugins that failed to load."""
    return plugins.load(ENTRY_POINT_GROUP, BUILTIN, Profile, "profiles", "profile plugin",
                        ProfileError)


def find(name: str) -> tuple[Profile, tuple[Problem, ...]]:
    """The profile called ``name``, and the plugins that failed to load."""
    everything, problems = available()
    for profile in everything:
        if profile.name == name:
            return profile, problems
    raise UnknownProfileError(f"unknown profile {name!r}; 'shrinkconda profiles' lists: "
                              f"{', '.join(p.name for p in everything)}")


def check(profile: Profile, strategy_names: Sequence[str]) -> None:
    """Fail if ``profile`` names a strategy that is not installed."""
    missing = sorted(set(profile.strategies) - set(strategy_names))
    if missing:
        raise ProfileError(f"profile {profile.name!r} ({profile.origin}) runs "
                           f"{', '.join(missing)}, which no installed strategy is called; "
                           "install the plugin that provides it or choose another profile")
