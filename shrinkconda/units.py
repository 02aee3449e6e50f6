"""How sizes and counts read in messages: ``1.5 KiB``, ``2 packages``."""

from __future__ import annotations


def counted(n: int, noun: str) -> str:
    """``1 package``, ``2 packages``: ``n`` and the noun, plural unless ``n`` is one."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def human(n: int) -> str:
    """``1536`` -> ``1.5 KiB``; negative numbers keep their sign."""
    size = float(abs(n))
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            text = f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
            return f"-{text}" if n < 0 else text
        size /= 1024
    raise AssertionError("unreachable")
