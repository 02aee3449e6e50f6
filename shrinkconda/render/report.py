"""The report of a shrink or an audit: a table for people, JSON for machines."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from shrinkconda.accounting import Saving
from shrinkconda.plan import Kept
from shrinkconda.render.compressed import Compressed
from shrinkconda.render.packages import Package
from shrinkconda.scan import Problem
from shrinkconda.units import human


@dataclass(frozen=True)
class Line:
    """One strategy's (or the strip phase's) share of the shrink."""

    name: str
    saving: Saving


@dataclass(frozen=True)
class Broken:
    """Something that worked before the shrink and failed after it."""

    check: str
    """The module that no longer imports, or the ``--verify-command`` that failed."""
    kind: str
    """``import`` or ``command``."""
    error: str
    """What it raised or printed last."""


@dataclass(frozen=True)
class Report:
    """Sizes are ``du -sb`` figures (apparent bytes, each inode once); ``allocated_*``
    are ``du -s`` figures in bytes."""

    prefix: str
    dry_run: bool
    size_before: int
    size_after: int
    allocated_before: int
    allocated_after: int
    lines: tuple[Line, ...]
    errors: tuple[Problem, ...] = ()
    kept: tuple[Kept, ...] = ()
    notes: tuple[str, ...] = field(default=())
    """Plain-language remarks (a rolled-back transaction, a skipped phase)."""
    verified: bool | None = None
    """Whether the environment was checked after the shrink (``None`` in an audit)."""
    rolled_back: bool = False
    """The shrink broke something and was undone: nothing changed."""
    broken: tuple[Broken, ...] = ()
    """What failed the verification, when rolled back."""
    removed_packages: tuple[str, ...] = ()
    """Packages that lost every file, and so their ``conda-meta`` record too."""
    packages: tuple[Package, ...] | None = None
    """Per package, largest first, with ``--by package``."""
    compressed: Compressed | None = None
    """Compressed sizes before and after, with ``--compressed``."""
    used_by: tuple[tuple[str, int], ...] = ()
    """``(package, bytes)``: what the used-by selection took from each package."""
    refused: str | None = None
    """In an audit: why a shrink of this prefix would be refused up front (a read-only
    mount, a directory this user cannot change, too little room), in the shrink's own
    words; ``None`` when it would go ahead."""

    @property
    def bytes_saved(self) -> int:
        return self.size_before - self.size_after

    @property
    def linked_outside(self) -> int:
        return sum(line.saving.linked_outside for line in self.lines)


def to_json(report: Report) -> str:
    """The report as one JSON document; the schema is documented in docs/json-report.md."""
    doc = {
        "prefix": report.prefix,
        "dry_run": report.dry_run,
        "size_before": report.size_before,
        "size_after": report.size_after,
        "bytes_saved": report.bytes_saved,
        "allocated_before": report.allocated_before,
        "allocated_after": report.allocated_after,
        "allocated_saved": report.allocated_before - report.allocated_after,
        "linked_outside": report.linked_outside,
        "strategies": [
            {
                "name": line.name,
                "files": line.saving.files,
                "bytes_saved": line.saving.bytes,
                "allocated_saved": line.saving.allocated,
                "linked_outside": line.saving.linked_outside,
            }
            for line in report.lines
        ],
        "errors": [asdict(p) for p in report.errors],
        "kept": [asdict(k) for k in report.kept],
        "notes": list(report.notes),
        "verified": report.verified,
        "rolled_back": report.rolled_back,
        "broken": [asdict(b) for b in report.broken],
        "removed_packages": list(report.removed_packages),
        "used_by": dict(report.used_by),
        "refused": report.refused,
    }
    if report.packages is not None:
        doc["packages"] = [{"name": p.name, "version": p.version, "kind": p.kind,
                            "size": p.size, "bytes_saved": p.bytes_saved,
                            "strategies": p.strategies} for p in report.packages]
    if report.compressed is not None:
        before, after = report.compressed.before, report.compressed.after
        doc["compressed"] = {"before": before.gzip, "after": after.gzip,
                             "zstd_before": before.zstd, "zstd_after": after.zstd,
                             "zip_before": before.zip, "zip_after": after.zip}
    return json.dumps(doc, indent=2)


def render(report: Report) -> str:
    """The report as a plain-text table that reads well in a build log."""
    verb = "would free" if report.dry_run else "freed"
    rows = [("strategy", "files", "saved")]
    rows += [(ln.name, f"{ln.saving.files:,}", human(ln.saving.bytes)) for ln in report.lines]
    total_files = sum(ln.saving.files for ln in report.lines)
    rows.append(("total", f"{total_files:,}", human(report.bytes_saved)))
    width = [max(len(r[c]) for r in rows) for c in range(3)]
    out = [(f"shrinkconda {'audit (dry run, nothing changed)' if report.dry_run else 'shrink'}"
           f": {_printable(report.prefix)}"), ""]
    for n, row in enumerate(rows):
        if n == len(rows) - 1:
            out.append("-" * (sum(width) + 4))
        out.append(f"{row[0]:<{width[0]}}  {row[1]:>{width[1]}}  {row[2]:>{width[2]}}")
    out += [
        "",
        f"size before  {human(report.size_before):>10}  ({report.size_before:,} bytes)",
        f"size after   {human(report.size_after):>10}  ({report.size_after:,} bytes)",
        (f"{verb:<11}  {human(report.bytes_saved):>10}  "
        f"(on disk: {human(report.allocated_before - report.allocated_after)})"),
    ]
    if report.compressed is not None:
        out += ["", *render_compressed(report.compressed)]
    if report.packages is not None:
        out += ["", *render_packages(report.packages, report.lines)]
    if report.linked_outside:
        out.append(
            f"{human(report.linked_outside)} left the prefix but stay on disk: still "
            "hard-linked from outside it (a package cache or another environment)"
        )
    if report.used_by:
        most = sorted(report.used_by, key=lambda item: -item[1])[:3]
        out.append("used-by took most from: " + ", ".join(
            f"{_printable(name)} ({human(size)})" for name, size in most))
    out += _kept_lines(report.kept)
    for note in report.notes:
        out.append(f"note: {note}")
    for broken in report.broken:
        what = f"import {broken.check}" if broken.kind == "import" else broken.check
        out.append(f"broken: {what}: {broken.error}")
    if report.errors:
        out += ["", f"{len(report.errors)} problem(s):"]
        out += [f"  {_printable(p.path) or '.'}: {p.message}" for p in report.errors]
    return "\n".join(out)


def _kept_lines(kept: tuple[Kept, ...], shown: int = 3) -> list[str]:
    """One line per kept path; past ``shown`` paths with the same reason, a count (a
    root prefix can keep hundreds of extracted packages for its ``envs/``)."""
    by_reason: dict[str, list[str]] = {}
    for item in kept:
        by_reason.setdefault(item.reason, []).append(item.path)
    out = []
    for reason, paths in by_reason.items():
        listed = paths if len(paths) <= shown + 1 else paths[:shown]
        out += [f"kept: {_printable(path)}, {reason}" for path in listed]
        if len(listed) < len(paths):
            out.append(f"kept: {len(paths) - shown:,} more, {reason}")
    return out


def render_packages(packages: tuple[Package, ...], lines: tuple[Line, ...]) -> list[str]:
    """The ``--by package`` table: size, saving per strategy, what stays."""
    names = [ln.name for ln in lines if any(ln.name in p.strategies for p in packages)]
    rows = [("package", "version", "size", *names, "saved", "stays")]
    rows += [(_printable(p.name), p.version, human(p.size),
              *(human(p.strategies[n]) if n in p.strategies else "" for n in names),
              human(p.bytes_saved), human(p.stays)) for p in packages]
    width = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(f"{cell:<{width[c]}}" if c < 2 else f"{cell:>{width[c]}}"
                      for c, cell in enumerate(row)).rstrip() for row in rows]


def render_compressed(compressed: Compressed) -> list[str]:
    """Compressed sizes: gzip and zstd of one tar layer, and the zip."""
    rows = [("compressed", "before", "after", "saved")]
    for label, before, after in (
        ("tar | gzip -6", compressed.before.gzip, compressed.after.gzip),
        ("tar | zstd -3", compressed.before.zstd, compressed.after.zstd),
        ("zip -6 -r", compressed.before.zip, compressed.after.zip),
    ):
        if before is not None and after is not None:
            saved = f"{human(before - after)} ({(before - after) / before:.0%})" if before else ""
            rows.append((label, human(before), human(after), saved))
    width = [max(len(r[c]) for r in rows) for c in range(4)]
    return [f"{r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]:>{width[2]}}  {r[3]:>{width[3]}}"
            for r in rows]


def _printable(path: str) -> str:
    # Names that are not valid UTF-8 arrive as surrogate escapes; show them, don't crash.
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
