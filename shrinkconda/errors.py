"""The exceptions shrinkconda raises; the CLI turns each into a one-line message."""

from __future__ import annotations

import signal


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


class FilesystemError(ShrinkError):
    """The prefix's filesystem failed a shrink (full, read-only, permission denied, I/O
    error); the message says what was being done, where, and what to do."""


class NoRoomError(FilesystemError):
    """The prefix's filesystem lacks the space or inodes a shrink needs: refused up front."""


class Interrupted(ShrinkError):
    """SIGINT, SIGTERM or SIGHUP stopped a shrink or an audit; the message says what the
    prefix is (untouched, rolled back, or shrunk once the commit began); the CLI exits
    with ``128 + signum``."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message or f"{signal_name(signum)} received: stopped before "
                         "changing anything")
        self.signum = signum
        """The signal that stopped the shrink."""


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
