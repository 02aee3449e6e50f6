"""Load what third-party packages register through an entry-point group: strategies
and profiles are found, checked and reported the same way."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from importlib import metadata
from typing import Protocol, TypeVar

from shrinkconda.errors import ShrinkError
from shrinkconda.scan import Problem


class _Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def origin(self) -> str: ...


T = TypeVar("T", bound=_Named)


def load(group: str, builtin: Sequence[T], kind: type[T], plural: str, label: str,
         error: type[ShrinkError]) -> tuple[tuple[T, ...], tuple[Problem, ...]]:
    """``builtin`` then the plugins of ``group`` (sorted by name), and the plugins that
    failed to load. ``kind`` is a dataclass with ``name`` and ``origin`` fields; a
    plugin reusing a name raises ``error`` naming both (``two {plural} are named ...``)."""
    known = {item.name: item for item in builtin}
    problems: list[Problem] = []
    plugins: list[T] = []
    for ep in _entry_points(group):
        origin = f"{label} {ep.name} = {ep.value}"
        try:
            item = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the tool down
            problems.append(Problem("", f"{origin} failed to load and was skipped: {exc!r}"))
            continue
        if not isinstance(item, kind):
            problems.append(Problem("", f"{origin} is not a shrinkconda {kind.__name__}; "
                                        "skipped"))
            continue
        item = replace(item, origin=origin)  # type: ignore[type-var]
        if item.name in known:
            raise error(f"two {plural} are named {item.name!r}: "
                        f"{known[item.name].origin} and {origin}")
        known[item.name] = item
        plugins.append(item)
    return tuple(builtin) + tuple(sorted(plugins, key=lambda p: p.name)), tuple(problems)


def load_replacing(group: str, builtin: Sequence[T], kind: type[T], plural: str, label: str,
                   error: type[ShrinkError]) -> tuple[tuple[T, ...], tuple[Problem, ...]]:
    """Like :func:`load`, but a plugin reusing a built-in's name replaces it, in its
    place (a newer release's data); two plugins of one name still raise ``error``."""
    found, problems = load(group, (), kind, plural, label, error)
    by_name = {item.name: item for item in found}
    kept = tuple(by_name.pop(b.name, b) for b in builtin)  # a replacement keeps its place
    return kept + tuple(by_name.values()), problems


def _entry_points(group: str) -> list[metadata.EntryPoint]:
    if sys.version_info >= (3, 10):
        return list(metadata.entry_points(group=group))
    # 3.9's entry_points() lists a distribution once per sys.path entry holding it (the
    # env's site-packages and a PYTHONPATH copy, say), and one plugin would clash with
    # itself; 3.10 keeps the first of each name, the one Python imports: so do we.
    seen: set[str] = set()
    found: list[metadata.EntryPoint] = []
    for dist in metadata.distributions():
        name = re.sub(r"[-_.]+", "_", dist.metadata["Name"] or "").lower()
        if name not in seen:
            seen.add(name)
            found += [ep for ep in dist.entry_points if ep.group == group]
    return found
