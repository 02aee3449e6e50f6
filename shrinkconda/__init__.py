"""shrinkconda: shrink conda environments without breaking them."""

from __future__ import annotations

__version__ = "0.1.0"

from shrinkconda.errors import PrefixError, ShrinkError, StrategyError  # noqa: E402
from shrinkconda.pipeline import Options, audit, shrink  # noqa: E402
from shrinkconda.strategies import Keep, Strategy  # noqa: E402

__all__ = [
    "Keep", "Options", "PrefixError", "ShrinkError", "Strategy", "StrategyError",
    "__version__", "audit", "shrink",
]
