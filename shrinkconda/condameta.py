"""Keep ``conda-meta`` true after a shrink, and record what the shrink removed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HISTORY = "shrinkconda-history.jsonl"
"""One JSON document per committed shrink, one per line. Not ``*.json``: conda, mamba
and rattler read every ``conda-meta/*.json`` as a package record."""


def apply(prefix: Path, payload: dict[str, Any]) -> None:
    """Drop removed paths from the records, refresh stripped files' size and sha256,
    and append the shrink to the history. Idempotent, so recovery may run it again."""
    for record, text in updated_records(prefix, payload):
        _write_atomically(record, text)
    _append_history(prefix / "conda-meta" / HISTORY, payload)


def updated_records(prefix: Path, payload: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """The new text of each record the shrink changes, one at a time (a large env's
    records add up to hundreds of megabytes); nothing is written."""
    roots = {root for paths in payload["removed"].values() for root in paths}
    stripped: dict[str, list[Any]] = payload["stripped"]
    for record in sorted((prefix / "conda-meta").glob("*.json")):
        try:
            doc = json.loads(record.read_bytes())
        except (OSError, ValueError):
            continue  # reported by the scan; not ours to repair
        if isinstance(doc, dict) and _update(doc, roots, stripped):
            yield record, _dumps(doc)


def _dumps(doc: dict[str, Any]) -> str:
    """A record as JSON, one line per top-level key.

    Readable enough, and every value goes through json's C encoder: ``indent=`` forces
    the pure-Python one, ten times slower on records listing tens of thousands of paths.
    """
    lines = [f"  {json.dumps(key)}: {json.dumps(doc[key], sort_keys=True)}"
             for key in sorted(doc)]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def history_line(payload: dict[str, Any]) -> str:
    """The line the shrink appends to :data:`HISTORY`."""
    return json.dumps(payload, sort_keys=True) + "\n"


def _update(doc: dict[str, Any], roots: set[str], stripped: dict[str, list[Any]]) -> bool:
    changed = False
    files = doc.get("files")
    if isinstance(files, list):
        kept = [p for p in files if not (isinstance(p, str) and _under(p, roots))]
        changed |= len(kept) != len(files)
        doc["files"] = kept
    paths = (doc.get("paths_data") or {}).get("paths")
    if isinstance(paths, list):
        kept_paths = []
        for entry in paths:
            path = entry.get("_path") if isinstance(entry, dict) else None
            if isinstance(path, str) and _under(path, roots):
                changed = True
                continue
            if isinstance(path, str) and path in stripped:
                size, sha256 = stripped[path]
                entry["size_in_bytes"] = size
                entry["sha256"] = sha256
                if "sha256_in_prefix" in entry:
                    entry["sha256_in_prefix"] = sha256
                changed = True
            kept_paths.append(entry)
        doc["paths_data"]["paths"] = kept_paths
    return changed


def _under(path: str, roots: set[str]) -> bool:
    """``path`` is a removed root or lies below one."""
    if path in roots:
        return True
    cut = path.rfind("/")
    while cut > 0:  # each ancestor, deepest first; runs for every path of every record
        if path[:cut] in roots:
            return True
        cut = path.rfind("/", 0, cut)
    return False


def _append_history(history: Path, payload: dict[str, Any]) -> None:
    if history.exists():
        for line in history.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                if json.loads(line).get("id") == payload["id"]:
                    return  # already recorded by the run that was interrupted
            except ValueError:
                continue
    with open(history, "a", encoding="utf-8") as f:
        f.write(history_line(payload))
        f.flush()
        os.fsync(f.fileno())


def _write_atomically(path: Path, text: str) -> None:
    temp = path.with_name(path.name + ".shrinkconda-tmp")
    with open(temp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(temp, os.stat(path).st_mode & 0o7777)
    os.replace(temp, path)
