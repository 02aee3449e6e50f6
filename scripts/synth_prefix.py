#!/usr/bin/env python3
"""Generate a synthetic conda prefix of about N files, for scale benchmarks of audit.

    .venv/bin/python scripts/synth_prefix.py DEST --files N --elf-from REAL_PREFIX

The mix is a base install's: packages under ``lib/python3.11/site-packages`` (modules,
``__pycache__``, ``tests/`` directories, ``*.dist-info``, data, a few ``*.js``/``*.js.map``,
extension modules), C libraries (``lib/*.so*`` with symlinks, ``*.a``, ``include/``,
``share/doc``, ``share/man``, ``bin/``), a stdlib-shaped ``python`` package, each package
extracted in ``pkgs/`` with its archive and its files hard-linked into the env, a
``conda-meta/`` record listing every file (``files`` and ``paths_data`` with sha256), and
a few pip-installed packages no record owns. ELF objects are copies of small ELF files
from a real prefix (give the realistic env), so magic sniffing and strip see real ones.

N counts non-directory entries (files and symlinks) in the whole prefix, pkgs/ included:
what ``find PREFIX ! -type d | wc -l`` prints. Same N and seed, same tree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

PY = "3.11"
SITE = f"lib/python{PY}/site-packages"
EXT = ".cpython-311-x86_64-linux-gnu.so"
TAG = "cpython-311"
#: Files per package, and how often each size occurs: most packages are small, a few are
#: numpy- or scipy-sized.
SIZES = ((8, 20), (40, 25), (120, 25), (400, 15), (1200, 10), (3000, 5))
ELF_MAX = 64 * 1024
#: Mean file sizes measured on the realistic env (outside pkgs/): .py 19.6 kB, .pyc
#: 23.6 kB, test modules 19.5 kB. _size() draws lognormal around base * 1.38.
PY_BASE, PYC_BASE = 14_000, 17_000
#: Words that generated runtime modules are sliced from, so files differ and compress
#: like code. Test modules get the test words too; about a third of runtime modules
#: mention tests in a comment, as in real packages (32% of the realistic env's runtime
#: modules contain "test"), which is what the tests strategy's import analysis reads for.
_WORDS = (b"def return import from class self None True False if else elif for in while "
          b"numpy array value index result module data shape dtype kwargs args raise "
          b"ValueError TypeError len range dict list tuple str int ")
_TEST_WORDS = b"assert test_ check_ pytest fixture parametrize expected actual tests "
_TEST_DIRS = ("/tests/", "/test/")


@dataclass
class Package:
    """One conda package: what it installs, by prefix path."""

    name: str
    version: str
    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Prefix path -> (kind, size) with kind one of py, pyc, data, elf, ar, text, js."""
    links: dict[str, str] = field(default_factory=dict)
    """Prefix path -> symlink target."""
    owned: bool = True
    """False for pip-installed files: no record, nothing in pkgs/."""

    @property
    def dist(self) -> str:
        """``name-version-build``, the record's and the cache directory's name."""
        return f"{self.name}-{self.version}-py311_0"

    def count(self) -> int:
        """Non-directory entries this package puts in the whole prefix."""
        n = len(self.files) + len(self.links)
        # env + pkgs/ twin of each, the info/ files, the archive, the record
        return 2 * n + 6 if self.owned else n


class Writer:
    """Writes file contents fast: sliced text, copied ELF, minimal ar archives."""

    def __init__(self, rng: random.Random, elf_sources: list[Path]) -> None:
        self.rng = rng
        words = _WORDS.split()
        test_words = words + _TEST_WORDS.split() * 3
        self.text = b" ".join(rng.choice(words) for _ in range(300_000)) + b"\n"
        self.test_text = b" ".join(rng.choice(test_words) for _ in range(300_000)) + b"\n"
        self.elves = [p.read_bytes() for p in elf_sources]
        if not self.elves:
            raise SystemExit("no ELF file under 64 KiB found in --elf-from; give a real env")
        self.made_dirs: set[str] = set()

    def content(self, path: str, kind: str, size: int) -> bytes:
        if kind == "elf":
            return self.elves[zlib.crc32(path.encode()) % len(self.elves)]
        test = any(d in path for d in _TEST_DIRS)
        head = f"# {path}\n".encode()
        if kind == "py" and not test and zlib.crc32(path.encode()) % 100 < 32:
            head += b"# behaviour covered by the tests in tests/test_this.py\n"
        if kind == "pyc":
            head = b"\xa7\r\r\n\x01\x00\x00\x00" + head  # 3.11 magic, hash-based flag
        elif kind == "ar":
            member = self.slice(size)
            return (b"!<arch>\n" + f"{'obj.o/':<16}{0:<12}{0:<6}{0:<6}{644:<8}"
                    f"{len(member):<10}`\n".encode() + member)
        return head + self.slice(max(0, size - len(head)), test)

    def slice(self, size: int, test: bool = False) -> bytes:
        text = self.test_text if test else self.text
        start = self.rng.randrange(0, len(text) - size - 1) if size < len(text) else 0
        return text[start:start + size]

    def write(self, root: str, path: str, data: bytes, mode: int) -> None:
        full = f"{root}/{path}"
        self._parent(full)
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def link(self, src: str, dest: str) -> None:
        self._parent(dest)
        os.link(src, dest)

    def symlink(self, target: str, dest: str) -> None:
        self._parent(dest)
        os.symlink(target, dest)

    def _parent(self, full: str) -> None:
        parent = full.rpartition("/")[0]
        if parent not in self.made_dirs:
            os.makedirs(parent, exist_ok=True)
            self.made_dirs.add(parent)


def _size(rng: random.Random, mean: int) -> int:
    return max(16, int(rng.lognormvariate(0, 0.8) * mean))


def python_package(rng: random.Random, n: int) -> Package:
    """A stdlib-shaped ``python``: modules with bytecode, lib-dynload, the ``test`` package."""
    pkg = Package("python", "3.11.7")
    lib = f"lib/python{PY}"
    pkg.files["bin/python3.11"] = ("elf", 0)
    pkg.links["bin/python"] = "python3.11"
    pkg.links["bin/python3"] = "python3.11"
    pkg.files["lib/libpython3.11.so.1.0"] = ("elf", 0)
    pkg.links["lib/libpython3.11.so"] = "libpython3.11.so.1.0"
    for i in range(max(4, n // 20)):
        pkg.files[f"{lib}/lib-dynload/_mod{i}{EXT}"] = ("elf", 0)
    for i in range(max(4, n // 40)):
        pkg.files[f"include/python{PY}/header{i}.h"] = ("text", _size(rng, 4000))
    for i in range(len(pkg.files), n, 2):
        sub = "test" if i % 5 == 0 else f"pkg{i % 23}"
        stem = f"{'test_' if sub == 'test' else ''}m{i}"
        pkg.files[f"{lib}/{sub}/{stem}.py"] = ("py", _size(rng, PY_BASE))
        pkg.files[f"{lib}/{sub}/__pycache__/{stem}.{TAG}.pyc"] = ("pyc", _size(rng, PYC_BASE))
    return pkg


def python_lib(rng: random.Random, index: int, n: int, owned: bool) -> Package:
    """A site-packages package of about ``n`` files, shaped like a wheel install."""
    name = f"pylib{index:05d}"
    pkg = Package(name, f"1.{index % 17}.0", owned=owned)
    top = f"{SITE}/{name}"
    dist = f"{SITE}/{name}-{pkg.version}.dist-info"
    for meta in ("METADATA", "RECORD", "WHEEL", "top_level.txt", "INSTALLER"):
        pkg.files[f"{dist}/{meta}"] = ("text", _size(rng, 1500))
    if rng.random() < 0.3:
        pkg.files[f"{dist}/entry_points.txt"] = ("text", 200)
        pkg.files[f"bin/{name}-cli"] = ("text", 300)
    compiled = rng.random() < 0.6
    if compiled:
        for i in range(max(1, n // 40)):
            pkg.files[f"{top}/_core/_ext{i}{EXT}"] = ("elf", 0)
    if n > 50 and rng.random() < 0.5:
        pkg.files[f"{top}/_core/lib/lib{name}math.a"] = ("ar", _size(rng, 20000))
    if rng.random() < 0.08:
        for i in range(max(2, n // 50)):
            pkg.files[f"{top}/static/js/bundle{i}.js"] = ("js", _size(rng, 20000))
            pkg.files[f"{top}/static/js/bundle{i}.js.map"] = ("js", _size(rng, 40000))
    for i in range(max(1, n // 25)):
        ext = rng.choice((".json", ".txt", ".pyi", ".csv"))
        pkg.files[f"{top}/data/d{i}{ext}"] = ("data", _size(rng, 3000))
    subs = max(1, n // 30)
    i = 0
    while len(pkg.files) < n:
        sub = f"sub{i % subs}"
        tests = i % 7 == 0
        folder = f"{top}/{sub}/tests" if tests else f"{top}/{sub}"
        stem = f"test_m{i}" if tests else f"m{i}"
        if i < subs:
            pkg.files[f"{top}/{sub}/__init__.py"] = ("py", 200)
            pkg.files[f"{top}/{sub}/__pycache__/__init__.{TAG}.pyc"] = ("pyc", 300)
        pkg.files[f"{folder}/{stem}.py"] = ("py", _size(rng, PY_BASE))
        pkg.files[f"{folder}/__pycache__/{stem}.{TAG}.pyc"] = ("pyc", _size(rng, PYC_BASE))
        i += 1
    pkg.files[f"{top}/__init__.py"] = ("py", 300)
    return pkg


def c_lib(rng: random.Random, index: int, n: int) -> Package:
    """A C library package: versioned shared objects, an archive, headers, docs, tools."""
    name = f"clib{index:05d}"
    pkg = Package(name, f"2.{index % 11}.1")
    for i in range(max(1, n // 10)):
        real = f"lib/lib{name}_{i}.so.2.{index % 11}.1"
        pkg.files[real] = ("elf", 0)
        pkg.links[f"lib/lib{name}_{i}.so.2"] = real.rpartition("/")[2]
        pkg.links[f"lib/lib{name}_{i}.so"] = real.rpartition("/")[2]
        pkg.files[f"lib/lib{name}_{i}.a"] = ("ar", _size(rng, 30000))
    pkg.files[f"bin/{name}-tool"] = ("elf", 0)
    pkg.files[f"lib/pkgconfig/{name}.pc"] = ("text", 300)
    for i in range(max(1, n // 8)):
        pkg.files[f"share/man/man3/{name}_{i}.3"] = ("text", _size(rng, 4000))
    i = 0
    while len(pkg.files) + len(pkg.links) < n:
        if i % 3 == 0:
            pkg.files[f"share/doc/{name}/page{i}.html"] = ("text", _size(rng, 6000))
        else:
            pkg.files[f"include/{name}/h{i}.h"] = ("text", _size(rng, 4000))
        i += 1
    return pkg


def plan_packages(target: int, rng: random.Random) -> list[Package]:
    """Packages whose entries add up to about ``target`` non-directory entries."""
    sizes = [s for s, weight in SIZES for _ in range(weight)]
    packages = [python_package(rng, min(3000, max(40, target // 40)))]
    total = packages[0].count() + 3  # urls.txt, cache/<hash>.json, conda-meta/history
    index = 0
    while total < target:
        n = min(rng.choice(sizes), max(8, (target - total) // 2))
        roll = rng.random()
        if roll < 0.2:
            pkg = c_lib(rng, index, n)
        else:
            pkg = python_lib(rng, index, n, owned=not 0.2 <= roll < 0.23)
        packages.append(pkg)
        total += pkg.count()
        index += 1
    return packages


def materialize(dest: Path, packages: list[Package], writer: Writer) -> None:
    """Write pkgs/<dist>/ (info and files), hard-link into the env, write the records."""
    root = str(dest)
    url = "file:///synthetic/channel/linux-64"
    (dest / "conda-meta").mkdir(parents=True)
    (dest / "pkgs" / "cache").mkdir(parents=True)
    for pkg in packages:
        paths_data = []
        for path, (kind, size) in sorted(pkg.files.items()):
            data = writer.content(path, kind, size)
            mode = 0o755 if kind == "elf" or path.startswith("bin/") else 0o644
            if not pkg.owned:
                writer.write(root, path, data, mode)
                continue
            cached = f"pkgs/{pkg.dist}/{path}"
            writer.write(root, cached, data, mode)
            writer.link(f"{root}/{cached}", f"{root}/{path}")
            paths_data.append({"_path": path, "path_type": "hardlink",
                               "sha256": hashlib.sha256(data).hexdigest(),
                               "size_in_bytes": len(data)})
        for path, target in sorted(pkg.links.items()):
            if pkg.owned:
                writer.symlink(target, f"{root}/pkgs/{pkg.dist}/{path}")
                paths_data.append({"_path": path, "path_type": "softlink"})
            writer.symlink(target, f"{root}/{path}")
        if pkg.owned:
            _package_metadata(dest, pkg, paths_data, url, writer)
    (dest / "pkgs" / "urls.txt").write_text(
        "".join(f"{url}/{p.dist}.conda\n" for p in packages if p.owned))
    (dest / "pkgs" / "cache" / "1a2b3c4d.json").write_bytes(writer.slice(200_000))
    (dest / "conda-meta" / "history").write_text(
        "==> 2024-01-01 00:00:00 <==\n# cmd: synth_prefix.py\n"
        + "".join(f"+synthetic::{p.dist}\n" for p in packages if p.owned))


def _package_metadata(dest: Path, pkg: Package, paths_data: list[dict[str, object]],
                      url: str, writer: Writer) -> None:
    extracted = dest / "pkgs" / pkg.dist
    files = [entry["_path"] for entry in paths_data]
    index = {"name": pkg.name, "version": pkg.version, "build": "py311_0",
             "build_number": 0, "depends": ["python >=3.11,<3.12"], "subdir": "linux-64"}
    info = extracted / "info"
    info.mkdir(exist_ok=True)
    (info / "index.json").write_text(json.dumps(index))
    (info / "paths.json").write_text(json.dumps({"paths": paths_data, "paths_version": 1}))
    (info / "files").write_text("".join(f"{f}\n" for f in files))
    (info / "about.json").write_text(json.dumps({"summary": f"{pkg.name}: synthetic"}))
    payload = sum(int(str(e["size_in_bytes"])) for e in paths_data if "size_in_bytes" in e)
    archive_size = max(1024, payload // 8)  # zstd on code and ELF: a few times smaller
    (dest / "pkgs" / f"{pkg.dist}.conda").write_bytes(b"PK\x03\x04" + writer.slice(archive_size))
    record = {**index, "files": files, "paths_data": {"paths": paths_data, "paths_version": 1},
              "link": {"source": str(extracted), "type": 1},
              "extracted_package_dir": str(extracted),
              "package_tarball_full_path": str(dest / "pkgs" / f"{pkg.dist}.conda"),
              "url": f"{url}/{pkg.dist}.conda", "channel": url.rpartition("/")[0],
              "requested_spec": pkg.name}
    (dest / "conda-meta" / f"{pkg.dist}.json").write_text(json.dumps(record))


def elf_sources(prefix: Path) -> list[Path]:
    """Small ELF files of a real prefix (not its pkgs/), smallest first."""
    found = []
    for root, dirs, names in os.walk(prefix):
        if root == str(prefix):
            dirs[:] = [d for d in dirs if d != "pkgs"]
        for name in names:
            path = Path(root, name)
            if path.is_symlink() or not path.is_file():
                continue
            size = path.stat().st_size
            if 0 < size <= ELF_MAX:
                with open(path, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        found.append((size, path))
    return [p for _, p in sorted(found)]


def count_entries(dest: Path) -> tuple[int, int]:
    """(non-directory entries, directories) under ``dest``, the prefix itself excluded."""
    files = dirs = 0
    for _root, dirnames, filenames in os.walk(dest):
        dirs += len(dirnames)
        files += len(filenames)
    return files, dirs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--files", type=int, required=True,
                        help="non-directory entries to aim for (10000, 100000, 1000000)")
    parser.add_argument("--elf-from", type=Path, required=True,
                        help="a real prefix to copy small ELF objects from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="replace DEST if it exists")
    args = parser.parse_args(argv)
    dest: Path = args.dest.resolve()
    if dest.exists():
        if not args.force:
            parser.error(f"{dest} exists; pass --force to replace it")
        shutil.rmtree(dest)
    start = time.perf_counter()
    rng = random.Random(args.seed)
    packages = plan_packages(args.files, rng)
    writer = Writer(rng, elf_sources(args.elf_from.resolve()))
    materialize(dest, packages, writer)
    files, dirs = count_entries(dest)
    print(json.dumps({"prefix": str(dest), "target_files": args.files, "files": files,
                      "dirs": dirs, "entries": files + dirs + 1,
                      "packages": sum(p.owned for p in packages),
                      "pip_installed": sum(not p.owned for p in packages),
                      "seconds": round(time.perf_counter() - start, 1)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
