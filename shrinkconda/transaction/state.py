"""What this run did to the prefix so far, in one place: the signal path, the fault path
and the command line read it to say what the prefix is when a run stops early.

A run begins :data:`UNTOUCHED`; its first journal write makes it :data:`CHANGING`
(staged, not final: a stop rolls it back, or finishes it once committing); the journal
that says ``committing`` makes it :data:`SHRUNK`, the moment the shrink can no longer go
back; a finished rollback makes it :data:`ROLLED_BACK`. A transaction an earlier,
killed run left behind and this run recovered before starting its own is remembered
apart (:func:`leftover`), since it changed the prefix even when this run did not.
"""

from __future__ import annotations

UNTOUCHED = "untouched"
"""This run changed nothing (yet)."""
CHANGING = "changing"
"""This run's transaction has begun and is neither committed nor rolled back."""
ROLLED_BACK = "rolled back"
"""This run's transaction was rolled back: the prefix is as it was."""
SHRUNK = "shrunk"
"""This run's transaction is committing or committed: the prefix is (or, on recovery,
will be) shrunk."""

FINISHED = "finished"
""":func:`leftover`: an earlier run's shrink that was committing was finished."""
UNDONE = "rolled back"
""":func:`leftover`: an earlier run's unfinished shrink was rolled back."""

_own = UNTOUCHED
_leftover: str | None = None


def begin() -> None:
    """A new run of a shrink or an audit starts: nothing is known to be changed."""
    global _own, _leftover
    _own, _leftover = UNTOUCHED, None


def now() -> str:
    """This run's own state: :data:`UNTOUCHED`, :data:`CHANGING`, :data:`ROLLED_BACK`
    or :data:`SHRUNK`."""
    return _own


def leftover() -> str | None:
    """What this run did to an earlier run's transaction: :data:`FINISHED`,
    :data:`UNDONE`, or ``None``."""
    return _leftover


def changing() -> None:
    """This run's transaction wrote its journal."""
    global _own
    if _own in (UNTOUCHED, ROLLED_BACK):
        _own = CHANGING


def committed() -> None:
    """The journal says ``committing``: from here on, any stop finishes the shrink."""
    global _own
    _own = SHRUNK


def finished() -> None:
    """A committing transaction was completed: this run's, or a leftover."""
    global _own, _leftover
    if _own == UNTOUCHED:
        _leftover = FINISHED
    else:
        _own = SHRUNK


def rolled_back() -> None:
    """A transaction was rolled back: this run's, or a leftover."""
    global _own, _leftover
    if _own == UNTOUCHED:
        _leftover = UNDONE
    else:
        _own = ROLLED_BACK


def discarded() -> None:
    """A transaction that had not changed the prefix yet (no journal, or only its
    first, half-written one) was removed: if it was this run's, it is undone."""
    global _own
    if _own == CHANGING:
        _own = ROLLED_BACK


def describe() -> str:
    """What the prefix is, for the message of a run that stops now (after any
    recovery): ``the shrink was rolled back, the prefix is as it was``."""
    own = {UNTOUCHED: "nothing was changed",
           # Not expected once recovery ran; said plainly if a message is made before.
           CHANGING: "the shrink was under way and is undone by the next run",
           ROLLED_BACK: "the shrink was rolled back, the prefix is as it was",
           SHRUNK: "the shrink was committed, so it was finished: the prefix is shrunk",
           }[_own]
    if _leftover == FINISHED:
        first = ("first, a shrink an earlier run left while committing was finished, "
                 "so the prefix is shrunk")
    elif _leftover == UNDONE:
        first = ("first, a shrink an earlier run left unfinished was rolled back, so the "
                 "prefix is as it was before that shrink")
    else:
        return own
    return f"{first}; then {own}" if _own != UNTOUCHED else f"{first}; nothing else was changed"
