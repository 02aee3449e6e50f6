"""Keep ``conda-meta`` true after a shrink, and record what the shrink removed."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shrinkconda import cacheview, piprecord
from shrinkconda.scan import DIR, Scan

HISTORY = "shrinkconda-history.jsonl"
"""One JSON document per committed shrink, one per line. Not ``*.json``: conda, mamba
and rattler read every ``conda-meta/*.json`` as a package record."""


@dataclass(frozen=True)
class RecordChange:
    """What a commit does to one ``conda-meta/*.json`` record."""

    record: Path
    name: str
    """The package name, as the record gives it."""
    drop: bool = False
    """Every file the record listed was removed: the record goes too, as
    ``conda remove --force`` would remove it."""
    text: str | None = None
    """The record's new text, or ``None`` when it stays as it is (or goes)."""
    view: cacheview.View | None = None
    """The package-cache view ``link.source`` points at (see :mod:`cacheview`)."""


@dataclass(frozen=True)
class Change:
    """An entry under ``conda-meta/`` that a commit writes, replaces or removes."""

    path: str
    """Relative to the prefix."""
    size: int
    allocated: int
    gone: bool = False


def apply(prefix: Path, payload: dict[str, Any]) -> list[str]:
    """Drop removed paths from the records, refresh stripped files' size and sha256,
    point changed records at their views (``payload["views"]``) or blank their
    ``link.source``, remove the records of packages that lost every file, keep pip's
    ``RECORD`` files true (:mod:`piprecord`), and append the shrink to the history.
    Idempotent, so recovery may run it again. Returns the names of the packages whose
    records were removed."""
    dropped = []
    for change in updated_records(prefix, payload):
        if change.drop:
            view = prefix / cacheview.relpath(change.record.stem)
            if os.path.lexists(view):
                cacheview.remove(prefix, cacheview.relpath(change.record.stem))
            change.record.unlink(missing_ok=True)
            dropped.append(change.name)
            continue
        if change.view is not None:
            cacheview.write(prefix, change.view)
        if change.text is not None:
            _write_atomically(change.record, change.text)
    live = [record.stem for record in (prefix / "conda-meta").glob("*.json")
            if payload.get("views")]
    for stale in cacheview.stale(prefix, live):
        cacheview.remove(prefix, stale)
    piprecord.apply(prefix, payload)  # pip's records, for pip show -f and pip uninstall
    _append_history(prefix / "conda-meta" / HISTORY, payload)
    return dropped


def updated_records(prefix: Path, payload: dict[str, Any]) -> Iterator[RecordChange]:
    """What the commit does to each record it changes, one record at a time (a large
    env's records add up to hundreds of megabytes); nothing is written.

    A package left with no files loses its record, unless a package whose record stays
    depends on it (directly or through other such packages): then its record stays,
    listing no files, so that every kept record's ``depends`` is still satisfied by
    the very record that satisfied it before (``conda doctor``'s consistency check,
    and the solvers of conda, mamba and pixi, read them).
    """
    roots = {root for paths in payload["removed"].values() for root in paths}
    # Files rewritten in place (stripped, recompiled) get their new size and sha256;
    # files a shrink added are listed by the record that lists their source.
    stripped: dict[str, list[Any]] = {**payload["stripped"], **payload.get("rewritten", {})}
    added: dict[str, list[list[Any]]] = {}
    for path, (size, digest, source) in payload.get("added", {}).items():
        added.setdefault(source, []).append([path, size, digest])
    views = bool(payload.get("views"))
    depends: dict[str, list[str]] = {}
    emptied: list[tuple[Path, str]] = []
    for record in sorted((prefix / "conda-meta").glob("*.json")):
        doc = _read(record)
        if doc is None:
            continue  # reported by the scan; not ours to repair
        change = _change(prefix, record, doc, roots, stripped, added, views)
        if change is not None and change.drop:
            emptied.append((record, change.name))
        else:
            depends[_name(doc, record)] = _depends(doc)
            if change is not None:
                yield change
    needed = _needed(depends, {name for _, name in emptied}, {
        name: _depends(_read(record) or {}) for record, name in emptied})
    for record, name in emptied:
        doc = _read(record) if name in needed else None
        if doc is None:
            yield RecordChange(record, name, drop=True)
            continue
        change = _change(prefix, record, doc, roots, stripped, added, views, keep_empty=True)
        if change is not None:
            yield change


def _read(record: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(record.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _name(doc: dict[str, Any], record: Path) -> str:
    name = doc.get("name")
    return name if isinstance(name, str) else record.stem


def _depends(doc: dict[str, Any]) -> list[str]:
    """The package names a record depends on (a match spec's first word)."""
    specs = doc.get("depends")
    if not isinstance(specs, list):
        return []
    return [spec.split()[0].split("[")[0] for spec in specs if isinstance(spec, str) and spec]


def _needed(kept: dict[str, list[str]], emptied: set[str],
            emptied_depends: dict[str, list[str]]) -> set[str]:
    """The emptied packages that kept records depend on, directly or through others."""
    needed: set[str] = set()
    queue = [name for names in kept.values() for name in names]
    while queue:
        name = queue.pop()
        if name in emptied and name not in needed and name not in kept:
            needed.add(name)
            queue.extend(emptied_depends.get(name, ()))
    return needed


def _change(prefix: Path, record: Path, doc: dict[str, Any], roots: set[str],
            stripped: dict[str, list[Any]], added: dict[str, list[list[Any]]], views: bool,
            keep_empty: bool = False) -> RecordChange | None:
    name = _name(doc, record)
    had_files = bool(doc.get("files"))
    changed = _add(doc, added)
    changed |= _update(doc, roots, stripped)
    if had_files and not doc.get("files") and not (doc.get("paths_data") or {}).get("paths") \
            and not keep_empty:
        return RecordChange(record, str(name), drop=True)
    link = doc.get("link")
    source = link.get("source") if isinstance(link, dict) else None
    is_view = cacheview.is_view(prefix, record.stem, source)
    if not (changed or is_view or _source_gone(prefix, source, roots)):
        return None  # the cache still holds exactly what the prefix has
    view = None
    if views:
        original = _original_source(prefix, record.stem) if is_view else source
        view = cacheview.build(record.stem, doc, original if isinstance(original, str) else "")
    # Without a view, link.source is blanked, as conda-pack blanks it in every archive:
    # conda-pack then packs the package from the prefix ("uncached"), not from a cache
    # that no longer matches it.
    new_source = str(prefix / cacheview.relpath(record.stem)) if view is not None else ""
    if isinstance(link, dict) and link.get("source") != new_source:
        link["source"] = new_source
        changed = True
    elif not isinstance(link, dict):
        doc["link"] = {"source": new_source, "type": 1}
        changed = True
    if not changed and view is None:
        return None
    return RecordChange(record, str(name), text=_dumps(doc) if changed else None, view=view)


def _source_gone(prefix: Path, source: object, roots: set[str]) -> bool:
    """The extracted package ``link.source`` names is, or will be, no more."""
    if not isinstance(source, str) or not source:
        return True
    inside = os.path.relpath(source, prefix)
    if not inside.startswith("..") and _under(inside.replace(os.sep, "/"), roots):
        return True  # the cache inside the prefix that this shrink removes
    return not os.path.isdir(source)


def _original_source(prefix: Path, stem: str) -> str:
    """Where the record linked from before its first shrink, as its view remembers."""
    try:
        doc = json.loads((prefix / cacheview.relpath(stem) / "info" / "paths.json").read_bytes())
        return str(doc["shrinkconda"]["original_source"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def predict(scan: Scan, payload: dict[str, Any]) -> tuple[list[Change], list[str]]:
    """The changes under ``conda-meta/`` a commit of ``payload`` would make, and the
    packages whose records it would remove.

    Sizes only: a file rewritten with the same size counts the same whether or not its
    bytes differ, so the prediction reads no view back from disk.
    """
    tree = _tree(scan)
    in_view = _by_view(tree)
    gone: set[str] = set()
    new: dict[str, tuple[int, int]] = {}
    dir_size = _dir_size(scan)
    dropped: dict[str, str] = {}
    for change in updated_records(scan.prefix, payload):
        view = cacheview.relpath(change.record.stem)
        if change.drop:
            dropped[change.record.stem] = change.name
            gone.update([f"conda-meta/{change.record.name}", *in_view.get(view, ())])
            continue
        if change.text is not None:
            size = len(change.text.encode())
            new[f"conda-meta/{change.record.name}"] = (size, _blocks(size))
        if change.view is not None:
            wanted = {path: (kind, size) for path, kind, size in cacheview.entries(change.view)}
            for path in in_view.get(view, ()):  # what write() replaces or takes away
                parent = path.rpartition("/")[0]
                if parent == view and path not in wanted and not path.endswith("/info"):
                    gone.update(_below(in_view[view], path))
                elif path in wanted and tree[path][0] != wanted[path][1] \
                        and wanted[path][0] != "dir":
                    gone.add(path)
            for path, (kind, size) in wanted.items():
                if path not in tree or path in gone:
                    new[path] = _new_entry(kind, size, dir_size)
    live = {r.stem for r in (scan.prefix / "conda-meta").glob("*.json")
            if payload.get("views")} - set(dropped)
    for stale in cacheview.stale(scan.prefix, live):
        gone.update(in_view.get(stale, ()))
    views = f"conda-meta/{cacheview.VIEWS}"
    left = [p for paths in in_view.values() for p in paths if p not in gone]
    if views in tree and not left and not any(p.startswith(views + "/") for p in new):
        gone.add(views)
    elif views not in tree and any(p.startswith(views + "/") for p in new):
        new[views] = _new_entry("dir", 0, dir_size)
    history = f"conda-meta/{HISTORY}"
    size = tree.get(history, (0, 0))[0] + len(history_line(payload).encode())
    new[history] = (size, _blocks(size))
    return ([Change(p, 0, 0, gone=True) for p in sorted(gone) if p not in new]
            + [Change(p, size, allocated) for p, (size, allocated) in new.items()],
            sorted(dropped.values()))


def measure(scan: Scan) -> list[Change]:
    """The changes under ``conda-meta/`` that a commit made, read back from disk."""
    before = {scan.paths[i]: (scan.inos[i], scan.sizes[i])
              for i in range(*_subtree(scan, "conda-meta"))}
    changes = []
    seen = set()
    for path, st in _walk(scan.prefix, "conda-meta"):
        seen.add(path)
        if before.get(path) != (st.st_ino, st.st_size):
            changes.append(Change(path, st.st_size, st.st_blocks * 512))
    changes += [Change(p, 0, 0, gone=True) for p in before if p not in seen]
    return changes


def _walk(prefix: Path, top: str) -> Iterator[tuple[str, os.stat_result]]:
    for directory, dirs, files in os.walk(prefix / top):
        rel = os.path.relpath(directory, prefix).replace(os.sep, "/")
        if rel != top:
            yield rel, os.lstat(directory)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
            yield f"{rel}/{name}", os.lstat(os.path.join(directory, name))


def _subtree(scan: Scan, path: str) -> tuple[int, int]:
    index = scan.find(path)
    return (0, 0) if index is None else (index + 1, scan.ends[index])


def _tree(scan: Scan) -> dict[str, tuple[int, int]]:
    """``conda-meta/``'s entries as scanned: path -> (size, allocated)."""
    return {scan.paths[i]: (scan.sizes[i], scan.allocated[i])
            for i in range(*_subtree(scan, "conda-meta"))}


def _by_view(tree: dict[str, Any]) -> dict[str, list[str]]:
    """The entries of each view directory (``conda-meta/.shrinkconda/<record>``), itself
    included, so each record finds its own without a pass over all of them."""
    views: dict[str, list[str]] = {}
    top = f"conda-meta/{cacheview.VIEWS}/"
    for path in tree:
        if path.startswith(top):
            views.setdefault("/".join(path.split("/", 3)[:3]), []).append(path)
    return views


def _below(tree: Iterable[str], path: str) -> list[str]:
    return [p for p in tree if p == path or p.startswith(path + "/")]


def _new_entry(kind: str, size: int, dir_size: int) -> tuple[int, int]:
    if kind == "dir":
        return dir_size, 4096
    if kind == "symlink":
        return size, 0 if size < 60 else 4096  # short targets live in the inode
    return size, _blocks(size)


def _blocks(size: int) -> int:
    return -(-size // 4096) * 4096


def _dir_size(scan: Scan) -> int:
    """What a new, nearly empty directory weighs here: the most common directory size
    (4096 on ext4 and overlayfs)."""
    counts: dict[int, int] = {}
    for index in range(len(scan)):
        if scan.kinds[index] == DIR:
            counts[scan.sizes[index]] = counts.get(scan.sizes[index], 0) + 1
            if len(counts) > 64 or sum(counts.values()) > 4096:
                break
    return max(counts, key=lambda size: counts[size]) if counts else 4096


def _dumps(doc: dict[str, Any]) -> str:
    """A record as JSON, one line per top-level key.

    Readable enough, and every value goes through json's C encoder: ``indent=`` forces
    the pure-Python one, ten times slower on records listing tens of thousands of paths.
    """
    lines = [f"  {json.dumps(key)}: {json.dumps(doc[key], sort_keys=True)}"
             for key in sorted(doc)]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def sha256(path: Path) -> str:
    """A file's sha256, as records give it; read in blocks (libraries run to 100 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _add(doc: dict[str, Any], added: dict[str, list[list[Any]]]) -> bool:
    """List the files added for this record's sources (compiled bytecode), as conda
    lists the bytecode it compiles at link time: ``path_type`` ``pyc_file``."""
    files = doc.get("files")
    if not added or not isinstance(files, list):
        return False
    new = [entry for source in files if isinstance(source, str)
           for entry in added.get(source, ())]
    if not new:
        return False
    listed = set(files)
    files.extend(path for path, _, _ in new if path not in listed)
    paths = (doc.get("paths_data") or {}).get("paths")
    if isinstance(paths, list):
        known = {e.get("_path") for e in paths if isinstance(e, dict)}
        for path, size, digest in new:
            if path in known:
                continue  # listed already: _update refreshes its size and sha256
            kind = "pyc_file" if path.endswith(".pyc") else "hardlink"  # the CPU cap's files
            paths.append({"_path": path, "path_type": kind, "sha256": digest,
                          "size_in_bytes": size})
    return True


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
