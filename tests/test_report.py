"""The report's wording helpers."""

from __future__ import annotations

from shrinkconda.units import counted


def test_counted_says_one_thing_or_many() -> None:
    assert counted(1, "package") == "1 package"
    assert counted(0, "package") == "0 packages"
    assert counted(2329, "top-level module") == "2,329 top-level modules"
