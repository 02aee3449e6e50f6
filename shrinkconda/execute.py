"""Carry out a plan: remove its entries from the disk."""

from __future__ import annotations

import os

from shrinkconda.plan import Plan
from shrinkconda.scan import DIR, Problem, Progress


def remove(plan: Plan, progress: Progress = None) -> tuple[bytearray, list[Problem]]:
    """Remove every entry the plan selects; return what was removed and what was not.

    Entries go children first (reverse pre-order), one ``unlink``/``rmdir`` each, so a
    failure leaves an exact record and no symlink is ever followed.
    """
    scan = plan.scan
    mask = plan.removed()
    problems: list[Problem] = []
    prefix = str(scan.prefix)
    done = 0
    for index in range(len(mask) - 1, 0, -1):
        if not mask[index]:
            continue
        path = os.path.join(prefix, scan.paths[index])
        try:
            if scan.kinds[index] == DIR:
                os.rmdir(path)
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass  # already gone: nothing left to free, nothing to report
        except OSError as exc:
            mask[index] = 0
            _keep_ancestors(plan, mask, index)
            problems.append(Problem(scan.paths[index], f"not removed: {exc.strerror}"))
        done += 1
        if progress is not None and done % 512 == 0:
            progress(512)
    if progress is not None:
        progress(done % 512)
    return mask, problems


def _keep_ancestors(plan: Plan, mask: bytearray, index: int) -> None:
    # A directory with a survivor inside cannot be removed; its rmdir would fail anyway,
    # but clearing it here keeps the record of what was removed exact.
    parent = plan.scan.parents[index]
    while parent > 0 and mask[parent]:
        mask[parent] = 0
        parent = plan.scan.parents[parent]
