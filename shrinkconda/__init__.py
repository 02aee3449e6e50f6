"""shrinkconda: shrink conda environments without breaking them."""

from __future__ import annotations

__version__ = "0.1.0"

from shrinkconda.errors import PrefixError, ShrinkError, StrategyError
from shrinkconda.phases.bytecode import SourceReader
from shrinkconda.pipeline import Options, audit, shrink
from shrinkconda.profiles import Profile
from shrinkconda.strategies import Keep, Strategy

__all__ = [
    "Keep", "Options", "PrefixError", "Profile", "ShrinkError", "SourceReader", "Strategy",
    "StrategyError", "__version__", "audit", "shrink",
]
