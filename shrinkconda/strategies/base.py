"""What a strategy is: a named, pure selection over a scan."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Callable, Union

from shrinkconda.errors import StrategyError
from shrinkconda.scan import Scan

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Keep:
    """Yielded by a strategy to spare an entry (and its subtree) that it would remove."""

    index: int
    """The scan index of the entry to keep."""
    reason: str
    """Why, shown in the report (``imported by astro/__init__.py``)."""


Choice = Union[int, Keep]
"""A scan index to remove (a directory means its whole subtree), or a :class:`Keep`."""


@dataclass(frozen=True)
class Strategy:
    """A way to shrink a prefix, as listed by ``shrinkconda strategies``."""

    name: str
    """What users type (``static-libs``): lower-case words joined by hyphens."""
    summary: str
    """One line saying what it removes."""
    select: Callable[[Scan], Iterable[Choice]]
    """Pure: yields what to remove from the scan; never touches the disk."""
    default: bool = True
    """Whether it runs when no ``--only`` is given."""
    origin: str = "built-in"
    """Where it came from: ``built-in`` or the entry point that registered it."""
    removes_distributions: bool = False
    """It removes installed distributions whole, so their ``*.dist-info`` and
    ``*.egg-info`` may go too (for every other strategy they stay)."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise StrategyError(
                f"invalid strategy name {self.name!r} ({self.origin}): use lower-case words "
                "joined by hyphens, like 'static-libs'"
            )
