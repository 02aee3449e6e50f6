"""Where the bytes are: the report's optional parts (``--by package``, ``--html``,
``--compressed``), started on the scan before anything changes and finished with the
report."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from shrinkconda import cacheview, condameta
from shrinkconda.accounting import Charge
from shrinkconda.errors import ReportFileError
from shrinkconda.phases.base import Replacement
from shrinkconda.plan import Plan
from shrinkconda.render import compressed, html, packages
from shrinkconda.render.report import Report
from shrinkconda.scan import Problem, scan


@dataclass(frozen=True)
class Wanted:
    """Which optional parts the user asked for."""

    by_package: bool = False
    html: str | None = None
    """Where to write the page."""
    compressed: bool = False

    def any(self) -> bool:
        return self.by_package or self.html is not None or self.compressed


def check(wanted: Wanted, prefix: Path) -> None:
    """Refuse an ``--html`` path that cannot work before anything happens to the prefix."""
    if wanted.html is None:
        return
    target = Path(wanted.html).expanduser().absolute()
    if target.is_dir():
        raise ReportFileError(f"--html {wanted.html}: is a directory; name a file to write")
    if not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
        raise ReportFileError(f"--html {wanted.html}: cannot write in {target.parent}; "
                              "name a file in a writable directory")
    resolved = target.parent.resolve() / target.name
    if resolved == prefix or prefix in resolved.parents:
        raise ReportFileError(f"--html {wanted.html}: inside the prefix, where it would be "
                              "shrunk with it; write it elsewhere")


class Breakdown:
    """What the optional parts need from the prefix before a shrink changes it: who
    owns each entry (``conda-meta`` is rewritten at commit) and the "before" archive."""

    def __init__(self, wanted: Wanted, the_plan: Plan) -> None:
        self.wanted = wanted
        self.plan = the_plan
        self.attribution = (packages.attribute(the_plan.scan)
                            if wanted.by_package or wanted.html else None)
        self.before = compressed.measure(the_plan.scan) if wanted.compressed else None

    @property
    def itemises(self) -> bool:
        """Whether :meth:`finish` needs the report's charges, entry by entry."""
        return self.attribution is not None

    def finish(self, report: Report, charges: Iterable[Charge],
               after: Callable[[], compressed.Sizes] | None) -> Report:
        """The report with the parts asked for; writes the page if one was asked for.
        ``charges`` are the report's own (:func:`~shrinkconda.outcome.report`, itemised
        when :attr:`itemises`); ``after`` measures the compressed "after" archive;
        ``None``: nothing changed."""
        if self.before is not None:
            sizes = self.before if after is None else after()
            report = replace(report, compressed=compressed.Compressed(self.before, sizes))
            if sizes.zstd is None:
                report = replace(report, notes=report.notes + (compressed.ZSTD_MISSING,))
        if self.attribution is None:
            return report
        tally = packages.tally(self.attribution, self.plan.scan, charges)
        if self.wanted.by_package:
            report = replace(report, packages=tally.rows)
        if self.wanted.html is not None:
            page = html.render(report, self.plan.scan, self.attribution, tally)
            try:
                Path(self.wanted.html).expanduser().write_text(page, encoding="utf-8")
            except OSError as exc:
                report = replace(report, errors=report.errors + (
                    Problem("", f"--html {self.wanted.html}: not written: {exc.strerror}"),))
        return report


def predicted_after(the_plan: Plan, removed: bytearray, replaced: Sequence[Replacement],
                    strip_mode: str | None, payload: dict[str, Any],
                    metadata: Sequence[condameta.Change],
                    jobs: int | None = None) -> compressed.Sizes:
    """The audit's "after" archive: the files the plan keeps, stripped ones as a real
    ``strip -o`` writes them (into a temporary directory), ``conda-meta`` as the commit
    would leave it (records rewritten or dropped, package-cache views, the history)."""
    scan_, root = the_plan.scan, the_plan.scan.prefix
    gone = bytearray(removed)

    def drop(relpath: str) -> None:
        index = scan_.find(relpath)
        if index is not None:
            gone[index:scan_.ends[index]] = b"\x01" * (scan_.ends[index] - index)

    for change in metadata:
        if change.gone:
            drop(change.path)
    contents: dict[int, compressed.Source] = {}
    added: list[compressed.Added] = []
    for record in condameta.updated_records(root, payload):
        index = scan_.find(f"conda-meta/{record.record.name}")
        if record.drop:
            drop(f"conda-meta/{record.record.name}")
            continue
        if record.text is not None and index is not None:
            contents[index] = record.text.encode()
        if record.view is not None:
            drop(cacheview.relpath(record.view.stem))  # written afresh below
            added += _view_entries(record.view)
    views = f"conda-meta/{cacheview.VIEWS}"
    if added and (scan_.find(views) is None or gone[scan_.find(views) or 0]):
        added.insert(0, compressed.Added(views, "dir"))
    history = f"conda-meta/{condameta.HISTORY}"
    line = condameta.history_line(payload).encode()
    index = scan_.find(history)
    if index is None:
        added.append(compressed.Added(history, "file", line))
    else:
        contents[index] = (root / history).read_bytes() + line
    with compressed.temporary_directory() as temp:
        if strip_mode is not None and replaced:
            contents.update(compressed.stripped_copies(
                scan_, [r.index for r in replaced], strip_mode, temp, jobs))
        return compressed.measure(scan_, gone, contents, added)


def _view_entries(view: cacheview.View) -> list[compressed.Added]:
    root = cacheview.relpath(view.stem)
    entries = [compressed.Added(root, "dir"), compressed.Added(f"{root}/info", "dir"),
               compressed.Added(f"{root}/info/paths.json", "file", view.paths_json.encode())]
    entries += [compressed.Added(f"{root}/{name}", "symlink", target.encode())
                for name, target in view.links]
    return entries


def measured_after(root: Path) -> compressed.Sizes:
    """The "after" archive of a shrunk prefix: what is there now."""
    return compressed.measure(scan(root))
