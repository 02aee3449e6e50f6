"""The ``locales`` strategy: translations (gettext catalogs) of the programs in the prefix."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import replace

from shrinkconda.scan import DIR, FILE, Scan
from shrinkconda.strategies.base import Choice, Keep, Strategy

NAME = "locales"
_CATALOG = re.compile(r"/locale/([^/]+)/LC_MESSAGES/[^/]+\.(mo|po)$")


def select(scan: Scan, keep: Sequence[str] = ()) -> Iterator[Choice]:
    """``share/locale/<language>/`` and ``.../locale/<language>/LC_MESSAGES/*.mo`` (and
    ``.po``) catalogs elsewhere, except the languages in ``keep`` (``de`` keeps ``de``,
    ``de_AT`` and ``de@euro``). Without its catalog a program speaks English.
    """
    kinds, paths = scan.kinds, scan.paths
    share_locale = scan.find("share/locale")
    if share_locale is not None and kinds[share_locale] == DIR:
        for child in scan.children(share_locale):
            if kinds[child] == DIR:
                yield _unless_kept(child, scan.name(child), keep)
    index, end = 1, len(paths)
    while index < end:
        if index == share_locale or paths[index] in ("conda-meta", "pkgs"):
            index = scan.ends[index]
            continue
        if kinds[index] == FILE and paths[index].endswith((".mo", ".po")):
            match = _CATALOG.search(paths[index])
            if match:
                yield _unless_kept(index, match.group(1), keep)
        index += 1


def _unless_kept(index: int, language: str, keep: Sequence[str]) -> Choice:
    for wanted in keep:
        if language == wanted or language.startswith((wanted + "_", wanted + "@", wanted + ".")):
            return Keep(index, f"--keep-locale {wanted}")
    return index


def keeping(strategy: Strategy, languages: Sequence[str]) -> Strategy:
    """``strategy`` itself, or, if it is this one, a copy that spares ``languages``."""
    if strategy.name != NAME or strategy.origin != "built-in" or not languages:
        return strategy
    kept = tuple(languages)
    return replace(strategy, select=lambda scan: select(scan, kept))


STRATEGY = Strategy(
    name=NAME,
    summary="translations: share/locale/<lang>/ and gettext catalogs, but --keep-locale LANG",
    select=select,
    default=False,
)
