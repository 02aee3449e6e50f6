"""Package-cache views of shrunk packages (``--conda-pack-views``), so conda-pack packs
the shrunk bytes without its "uncached" warning.

conda-pack reads each record's file list from the extracted package that
``link.source`` names, and then takes every managed file's bytes from there, not from
the environment (``conda_pack/core.py``: ``load_managed_package``). After a shrink the
package cache no longer describes the environment: it still holds the tests, bytecode
and unstripped libraries. By default a changed record's ``link.source`` is blanked
(conda-pack then packs it from the prefix, and says it is uncached). With views, it
points at ``conda-meta/.shrinkconda/<record>/`` instead, shaped like an extracted
package: ``info/paths.json`` lists what the record lists now, and the top-level names
are relative symlinks into the prefix, so reading ``<view>/lib/libfoo.so`` reads the
environment's own, stripped, file.

A view costs two directories, ``info/paths.json`` (paths only, no digests) and a
symlink per top-level directory of the package. Tools that follow directory symlinks
(``zip -r``, ``shutil.copytree``) copy the prefix again through each view, which is why
views are opt-in. A package that installs files at the top of the prefix cannot be
viewed this way (conda-pack would pack the symlink itself); it is blanked instead.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VIEWS = ".shrinkconda"
"""The directory of views, inside ``conda-meta/``."""

_UP = "../../../"
"""From ``conda-meta/.shrinkconda/<record>/`` back to the prefix."""


@dataclass(frozen=True)
class View:
    """What the view of one record holds; :func:`write` makes it so on disk."""

    stem: str
    """The record's file name without ``.json``; also the view's directory name."""
    paths_json: str
    """The text of ``info/paths.json``."""
    links: tuple[tuple[str, str], ...]
    """``(name, target)`` of each top-level symlink, sorted by name."""


def relpath(stem: str) -> str:
    """The view's directory, relative to the prefix."""
    return f"conda-meta/{VIEWS}/{stem}"


def is_view(prefix: Path, stem: str, source: object) -> bool:
    """``source`` (a record's ``link.source``) is this record's view."""
    return isinstance(source, str) and bool(source) and \
        os.path.normpath(source) == str(prefix / relpath(stem))


def build(stem: str, doc: dict[str, Any], original_source: str) -> View | None:
    """The view of a record as it now stands, or ``None`` when it cannot have one."""
    noarch_python = doc.get("noarch") == "python" or \
        (doc.get("noarch") or {}) == {"type": "python"}
    entries = (doc.get("paths_data") or {}).get("paths")
    if not isinstance(entries, list):
        entries = [{"_path": p} for p in doc.get("files") or []]
    paths: list[dict[str, Any]] = []
    tops: set[str] = set()
    for entry in entries:
        path = entry.get("_path") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path:
            continue
        top, sep, _ = path.partition("/")
        if not sep:
            return None  # a file at the top of the prefix: no symlink can stand for it
        tops.add(top)
        # Paths only: conda-pack reads no digests or sizes here, and tells symlinks
        # and directories apart on disk.
        item: dict[str, Any] = {"_path": path}
        if _relocatable(entry, path, noarch_python):
            # conda-pack then finds the prefix in the bytes itself, as it does for the
            # scripts of noarch packages: the view's bytes hold the env's own prefix,
            # not the package's placeholder.
            item["file_mode"] = "unknown"
        paths.append(item)
    text = json.dumps({"paths": paths, "paths_version": 1,
                       "shrinkconda": {"original_source": original_source}},
                      sort_keys=True, separators=(",", ":")) + "\n"
    return View(stem, text, tuple((top, _UP + top) for top in sorted(tops)))


def _relocatable(entry: dict[str, Any], path: str, noarch_python: bool) -> bool:
    if entry.get("path_type") in ("softlink", "directory"):
        return False
    if entry.get("prefix_placeholder"):
        return True
    return noarch_python and path.startswith("bin/")


def write(prefix: Path, view: View) -> None:
    """Make the view so on disk; idempotent, so recovery may run it again."""
    root = prefix / relpath(view.stem)
    (root / "info").mkdir(parents=True, exist_ok=True)
    paths_json = root / "info" / "paths.json"
    if not paths_json.exists() or paths_json.read_text(encoding="utf-8") != view.paths_json:
        temp = paths_json.with_name("paths.json.shrinkconda-tmp")
        temp.write_text(view.paths_json, encoding="utf-8")
        os.replace(temp, paths_json)
    wanted = dict(view.links)
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name != "info" and wanted.get(entry.name) != _readlink(entry.path):
                _remove(Path(entry.path))
    for name, target in view.links:
        if not os.path.lexists(root / name):
            os.symlink(target, root / name)


def entries(view: View) -> Iterator[tuple[str, str, int]]:
    """``(path relative to the prefix, kind, apparent size)`` of what the view holds,
    for the audit's prediction; kinds are ``dir``, ``file`` and ``symlink``."""
    root = relpath(view.stem)
    yield root, "dir", 0
    yield f"{root}/info", "dir", 0
    yield f"{root}/info/paths.json", "file", len(view.paths_json.encode())
    for name, target in view.links:
        yield f"{root}/{name}", "symlink", len(target.encode())


def stale(prefix: Path, live: Iterable[str]) -> list[str]:
    """Views (relative to the prefix) whose record is gone: an installer removed or
    replaced the package since the last shrink."""
    directory = prefix / "conda-meta" / VIEWS
    keep = set(live)
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [relpath(name) for name in names if name not in keep]


def remove(prefix: Path, view_relpath: str) -> None:
    """Remove a view; nothing else is ever removed through here."""
    target = prefix / view_relpath
    if not view_relpath.startswith(f"conda-meta/{VIEWS}/") or ".." in view_relpath:
        raise ValueError(f"not a view: {view_relpath}")
    _remove(target)
    try:
        os.rmdir(target.parent)  # the last view gone: drop conda-meta/.shrinkconda too
    except OSError:
        pass


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
