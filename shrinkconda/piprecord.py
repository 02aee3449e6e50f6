"""Keep pip's ``RECORD`` files true after a shrink: the distributions pip installed into a
conda env (``pip install torch``) are listed by their ``*.dist-info/RECORD``, which
``pip show -f``, ``pip uninstall`` and ``importlib.metadata.files()`` read.

A removed file's line goes, a file rewritten in place (stripped, recompiled) gets its
new hash and size, and a file a shrink added in another's place (sourceless bytecode
for a ``.py``) is listed where its source was, so ``pip uninstall`` removes it too.
Only distributions no ``conda-meta`` record owns are touched: a conda package's
``RECORD`` is one of its files, whose hash conda checks.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import posixpath
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from shrinkconda.scan import FILE, Scan

KEY = "pip_records"
"""The payload key listing the ``RECORD`` files (relative to the prefix) to keep true."""


def unowned(scan: Scan) -> list[str]:
    """The ``*.dist-info/RECORD`` files no conda record owns (pip installed them)."""
    owners = scan.owners
    return [path for index, path in enumerate(scan.paths)
            if path.endswith(".dist-info/RECORD") and scan.kinds[index] == FILE
            and owners[index] < 0 and not path.startswith(("pkgs/", "envs/"))]


def apply(prefix: Path, payload: Mapping[str, Any]) -> None:
    """Rewrite each ``RECORD`` of ``payload[KEY]`` for what the shrink removed, rewrote
    and added. Idempotent, so recovery may run it again."""
    records = payload.get(KEY) or []
    if not records:
        return
    roots = {root for paths in payload["removed"].values() for root in paths}
    rewritten: dict[str, list[Any]] = {**payload.get("stripped", {}),
                                       **payload.get("rewritten", {})}
    added: dict[str, list[tuple[str, int, str]]] = {}
    for path, (size, digest, source) in payload.get("added", {}).items():
        added.setdefault(source, []).append((path, size, digest))
    for relpath in records:
        record = prefix / relpath
        if _under(relpath, roots) or not record.is_file():
            continue  # the distribution went whole
        text = record.read_bytes().decode("utf-8", "surrogateescape")
        new = rewrite(text, posixpath.dirname(posixpath.dirname(relpath)), roots, rewritten,
                      added)
        if new != text:
            _write(record, new)


def rewrite(text: str, site: str, roots: set[str], rewritten: Mapping[str, list[Any]],
            added: Mapping[str, Iterable[tuple[str, int, str]]]) -> str:
    """``RECORD``'s new text. ``site`` is the directory its paths are relative to;
    ``rewritten`` maps a prefix-relative path to ``[size, hex sha256]``, ``added`` a
    source's path to the files that took its place."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    listed: set[str] = set()
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    for row in rows:
        path = posixpath.normpath(posixpath.join(site, row[0]))
        listed.add(path)
    for row in rows:
        path = posixpath.normpath(posixpath.join(site, row[0]))
        for new_path, size, digest in added.get(path, ()):
            if new_path not in listed:
                writer.writerow([posixpath.relpath(new_path, site), _hash(digest), size])
                listed.add(new_path)
        if _under(path, roots):
            continue
        if path in rewritten and len(row) >= 3 and row[1]:
            size, digest = rewritten[path]
            row = [row[0], _hash(digest), str(size)]
        writer.writerow(row)
    return out.getvalue()


def _hash(hex_digest: str) -> str:
    """A hex sha256 as ``RECORD`` spells it: ``sha256=`` and unpadded urlsafe base64."""
    raw = bytes.fromhex(hex_digest)
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _under(path: str, roots: set[str]) -> bool:
    while path and path not in (".", "/"):
        if path in roots:
            return True
        path = posixpath.dirname(path)
    return False


def _write(path: Path, text: str) -> None:
    temp = path.with_name(path.name + ".shrinkconda-tmp")
    with open(temp, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(temp, os.stat(path).st_mode & 0o7777)
    os.replace(temp, path)
