"""The exceptions shrinkconda raises; the CLI turns each into a one-line message."""

from __future__ import annotations


class ShrinkError(Exception):
    """Root of every error shrinkconda reports to the user."""


class PrefixError(ShrinkError):
    """The given path is not a conda prefix shrinkconda may touch."""


class StrategyError(ShrinkError):
    """A strategy name is unknown, duplicated, or a plugin is malformed."""


class UnknownStrategyError(StrategyError):
    """``--only``/``--skip`` named a strategy that does not exist: a usage error."""


class ElfError(ShrinkError):
    """A file is not a well-formed ELF object (truncated, corrupt, or not ELF at all)."""


class StripToolMissing(ShrinkError):
    """The ``strip`` program (GNU binutils) is not installed or not on ``PATH``."""


class ReportFileError(ShrinkError):
    """The ``--html`` file cannot be written where it was asked for."""


class StraceMissing(ShrinkError):
    """``--used-by`` needs the ``strace`` program, which is not installed or not on ``PATH``."""


class WorkloadError(ShrinkError):
    """A ``--used-by`` command is empty, not found, failed or hung before the shrink."""


class TraceIncomplete(ShrinkError):
    """The trace of a ``--used-by`` command may have missed what it used: no prune."""


class ProfileError(ShrinkError):
    """A profile is malformed, duplicated, or names a strategy that is not installed."""


class UnknownProfileError(ProfileError):
    """``--profile`` named a profile that does not exist: a usage error."""


class ConfigError(ShrinkError):
    """The ``--config`` file is unreadable, or a key in it is unknown or of the wrong type."""
