"""The ``js-maps`` strategy: JavaScript source maps, which only a browser's debugger reads."""

from __future__ import annotations

from collections.abc import Iterator

from shrinkconda.scan import FILE, Scan
from shrinkconda.strategies.base import Strategy

SUFFIXES = (".js.map", ".mjs.map", ".cjs.map")


def select(scan: Scan) -> Iterator[int]:
    """Files named ``*.js.map`` (and ``*.mjs.map``, ``*.cjs.map``)."""
    kinds = scan.kinds
    for index, path in enumerate(scan.paths):
        if path.endswith(SUFFIXES) and kinds[index] == FILE:
            yield index


STRATEGY = Strategy(
    name="js-maps",
    summary="JavaScript source maps (*.js.map), read only by a browser's debugger",
    select=select,
    default=False,
)
