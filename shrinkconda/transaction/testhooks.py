"""Test hooks at named points of a shrink: pause there for a signal, or fill the disk.

They make the fault tests deterministic with real faults: the test learns that the
shrink reached ``staging`` and only then sends SIGTERM, or the filesystem becomes truly
full right before the journal is written. Unset (always, outside the tests), each
:func:`reached` is one dictionary lookup.

- ``SHRINKCONDA_TEST_PAUSE_AT=NAME,...`` and ``SHRINKCONDA_TEST_PAUSE_FILE=PATH``: at
  each ``NAME``, write this process' pid to ``PATH.NAME`` and wait (at most a minute)
  for a signal, or for the test to delete that file.
- ``SHRINKCONDA_TEST_FILL_AT=NAME:WHAT:DIR``: at ``NAME``, fill the filesystem of
  ``DIR`` with files in ``DIR`` until it has no ``bytes`` (or no ``inodes``) left.

Points, in the order a shrink reaches them: ``lock`` (the prefix is locked next),
``recovered`` (a leftover transaction, if any, was finished or rolled back),
``python-code`` (the first module's bytecode was written into staging, the others'
is being written), ``prepare`` (nothing written yet),
``strip`` (journal written, stripped copies next), ``journal`` (the journal of the
staging is written next), ``staging`` (the first path was staged), ``commit``
(committing: the records are rewritten next), ``committed`` (the commit returned: the
prefix is shrunk, the report is made next), ``report`` (the report is finished next: the
breakdown, ``--compressed``), ``returned`` (the library returned to the command line);
``rollback`` (rolling back: nothing was put back yet). An audit reaches ``lock`` and
``recovered``.
"""

from __future__ import annotations

import errno
import os
import time

from shrinkconda.transaction import interrupt

_PAUSE_AT = "SHRINKCONDA_TEST_PAUSE_AT"
_PAUSE_FILE = "SHRINKCONDA_TEST_PAUSE_FILE"
_FILL_AT = "SHRINKCONDA_TEST_FILL_AT"
_WAIT = 60.0
"""Seconds a pause waits for its signal: a test that never sends one fails, not hangs."""


def reached(name: str) -> None:
    """The shrink is at point ``name``: pause or fill if a test asked for it."""
    if name in os.environ.get(_PAUSE_AT, "").split(","):
        _pause(f"{os.environ[_PAUSE_FILE]}.{name}")
    fill = os.environ.get(_FILL_AT, "")
    if fill.startswith(name + ":"):
        what, _, directory = fill[len(name) + 1:].partition(":")
        fill_filesystem(directory, inodes=what == "inodes")


def _pause(announce: str) -> None:
    temp = announce + ".tmp"
    with open(temp, "w", encoding="ascii") as f:
        f.write(str(os.getpid()))
    signals = interrupt.received()
    os.replace(temp, announce)
    deadline = time.monotonic() + _WAIT
    while (interrupt.received() == signals and os.path.exists(announce)
           and time.monotonic() < deadline):
        time.sleep(0.01)  # a signal outside a shielded section raises right here


def fill_filesystem(directory: str, inodes: bool = False) -> None:
    """Write files into ``directory`` until its filesystem has no bytes left, or (with
    ``inodes``) create empty ones until it has no inodes left."""
    os.makedirs(directory, exist_ok=True)
    if inodes:
        n = 0
        while True:
            try:
                os.close(os.open(os.path.join(directory, f"i{n}"), os.O_CREAT | os.O_WRONLY))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return
            n += 1
    fd = os.open(os.path.join(directory, "bytes"), os.O_CREAT | os.O_WRONLY | os.O_APPEND)
    try:
        for size in (1 << 20, 4096, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
