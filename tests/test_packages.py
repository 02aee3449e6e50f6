"""--by package: every byte of the prefix and of the saving lands in exactly one row."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from treeutil import du_bytes, run_cli

from shrinkconda import pipeline
from shrinkconda.render import packages
from shrinkconda.render.breakdown import Wanted
from shrinkconda.render.report import Report, render
from shrinkconda.scan import scan

BY_PACKAGE = pipeline.Options(extras=Wanted(by_package=True))
SITE = "lib/python3.11/site-packages"


def _adds_up(report: Report) -> None:
    rows = report.packages
    assert rows is not None
    assert sum(p.size for p in rows) == report.size_before
    assert sum(p.bytes_saved for p in rows) == report.bytes_saved
    for line in report.lines:
        assert sum(p.strategies.get(line.name, 0) for p in rows) == line.saving.bytes, line.name
    assert [p.size for p in rows] == sorted((p.size for p in rows), reverse=True)


def test_audit_rows_add_up_and_name_every_package(prefix: Path) -> None:
    report = pipeline.audit(prefix, BY_PACKAGE)
    _adds_up(report)
    assert report.size_before == du_bytes(prefix)
    rows = {p.name: p for p in report.packages or ()}
    assert {"python", "libdemo", "demopkg", "astro", "purepkg", packages.UNOWNED} <= set(rows)
    assert rows["python"].version == "3.11.7" and rows["python"].kind == "conda"
    assert rows["python"].strategies["strip"] > 0 and rows["libdemo"].strategies["docs"] > 0
    # The extracted packages in pkgs/ are hard links of the installed files: those inodes
    # are the package's, so the cache row holds only the cache's own bytes (its metadata).
    assert rows[packages.UNOWNED].size < rows["python"].size
    table = render(report)
    assert "package" in table and "libdemo" in table and "(unowned)" in table


def test_shrink_rows_add_up_and_match_the_audit(prefix: Path) -> None:
    predicted = pipeline.audit(prefix, BY_PACKAGE)
    done = pipeline.shrink(prefix, pipeline.Options(verify=False,
                                                    extras=Wanted(by_package=True)))
    _adds_up(done)
    assert du_bytes(prefix) == done.size_after
    assert [(p.name, p.size) for p in done.packages or ()] == \
        [(p.name, p.size) for p in predicted.packages or ()]
    assert {p.name: p.bytes_saved for p in done.packages or ()} == \
        {p.name: p.bytes_saved for p in predicted.packages or ()}


def _pip_install(prefix: Path) -> int:
    """What pip leaves: a package, its dist-info with a RECORD, a console script."""
    site = prefix / SITE
    (site / "pipdemo").mkdir()
    (site / "pipdemo" / "__init__.py").write_text("VALUE = 1\n" * 50)
    (site / "pipdemo" / "core.py").write_text("def f():\n    return 2\n" * 30)
    dist = site / "pipdemo-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pipdemo\nVersion: 1.2\n")
    (dist / "INSTALLER").write_text("pip\n")
    (prefix / "bin" / "pipdemo").write_text("#!/usr/bin/env python\nimport pipdemo\n")
    record = [f"pipdemo/{n},," for n in ("__init__.py", "core.py")]
    record += [f"pipdemo-1.2.dist-info/{n},," for n in ("METADATA", "INSTALLER", "RECORD")]
    record.append("../../../bin/pipdemo,,")
    (dist / "RECORD").write_text("\n".join(record) + "\n")
    listed = [site / "pipdemo", *(site / "pipdemo").iterdir(), dist, *dist.iterdir(),
              prefix / "bin" / "pipdemo"]
    return sum(os.lstat(p).st_size for p in listed)


def test_pip_installed_and_unowned_files_get_their_own_rows(prefix: Path) -> None:
    pip_bytes = _pip_install(prefix)
    cache = prefix / "var" / "cache"
    cache.mkdir(parents=True)
    (cache / "blob.bin").write_bytes(os.urandom(50_000))
    report = pipeline.audit(prefix, BY_PACKAGE)
    _adds_up(report)
    rows = {p.name: p for p in report.packages or ()}
    assert rows["(pip: pipdemo)"].size == pip_bytes
    assert rows["(pip: pipdemo)"].version == "1.2" and rows["(pip: pipdemo)"].kind == "pip"

    attribution = packages.attribute(scan(prefix))
    the_scan = scan(prefix)
    owner = {the_scan.paths[i]: attribution.groups[attribution.owner[i]].name
             for i in range(len(the_scan))}
    assert owner["var/cache/blob.bin"] == packages.UNOWNED
    assert owner["var"] == packages.UNOWNED  # a directory nothing owns
    assert owner["bin/pipdemo"] == "(pip: pipdemo)"
    assert owner[f"{SITE}/pipdemo-1.2.dist-info/RECORD"] == "(pip: pipdemo)"
    assert owner[f"{SITE}/demopkg"] == "demopkg"  # a directory one package fills
    assert owner["lib"] == packages.UNOWNED  # shared by many
    cached = [p for p in owner if p.startswith("pkgs/python-") and p.endswith(
        "lib/libpython3.11.so.1.0")]
    assert cached and owner[cached[0]] == "python"  # a hard link of python's file


def test_json_packages_through_the_cli(prefix: Path) -> None:
    result = run_cli("audit", "--json", "--by", "package", str(prefix))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert {"name", "version", "size", "bytes_saved", "strategies"} <= set(doc["packages"][0])
    assert sum(p["size"] for p in doc["packages"]) == doc["size_before"]
    assert sum(p["bytes_saved"] for p in doc["packages"]) == doc["bytes_saved"]
    plain = json.loads(run_cli("audit", "--json", str(prefix)).stdout)
    assert "packages" not in plain and "compressed" not in plain
    assert run_cli("audit", "--by", "file", str(prefix)).returncode == 2


def test_every_phase_counts_in_the_rows(prefix: Path) -> None:
    # The python-code phase removes sources, adds and replaces compiled files: its bytes
    # belong to the packages whose code it compiled, as a strategy's do, in the audit
    # and in the shrink.
    options = pipeline.Options(python_code="bytecode", verify=False,
                               extras=Wanted(by_package=True))
    for report in (pipeline.audit(prefix, options), pipeline.shrink(prefix, options)):
        _adds_up(report)
        saving = {line.name for line in report.lines if line.saving.bytes}
        assert "python-code" in saving
        assert saving <= {name for p in report.packages or () for name in p.strategies}
        rows = {p.name: p for p in report.packages or ()}
        for package in ("python", "astro", "purepkg"):
            assert rows[package].strategies.get("python-code"), package
        # The compiled files it adds are their modules' packages', not nobody's.
        assert "python-code" not in rows[packages.UNOWNED].strategies
    assert du_bytes(prefix) == report.size_after


@pytest.mark.parametrize("form", ["bytecode", "both"])
def test_compiled_files_count_for_their_modules_package(prefix: Path, form: str) -> None:
    # lib/python3.11 and site-packages are every package's: the sourceless solo.pyc, or
    # the __pycache__ the phase makes there, are the packages' whose modules they hold,
    # as conda-meta will list them.
    (prefix / SITE / "solo.py").write_text("VALUE = 1\n" * 200)
    record = next((prefix / "conda-meta").glob("purepkg-*.json"))
    doc = json.loads(record.read_text())
    doc["files"].append(f"{SITE}/solo.py")
    record.write_text(json.dumps(doc))
    report = pipeline.audit(prefix, pipeline.Options(
        python_code=form, only=("python-code",), extras=Wanted(by_package=True)))
    _adds_up(report)
    rows = {p.name: p for p in report.packages or ()}
    assert "python-code" not in rows[packages.UNOWNED].strategies
    assert rows["purepkg"].strategies["python-code"] != 0
    assert rows["python"].strategies["python-code"] != 0


def test_dedup_links_count_for_the_package_of_the_duplicate(prefix: Path) -> None:
    module = prefix / SITE / "demopkg" / "__init__.py"
    record = next((prefix / "conda-meta").glob("demopkg-*.json"))
    doc = json.loads(record.read_text())
    for n in range(2):
        copy = module.with_name(f"copy{n}.py")
        copy.write_bytes(module.read_bytes() * 20)
        doc["files"].append(str(copy.relative_to(prefix)))
    record.write_text(json.dumps(doc))
    report = pipeline.audit(prefix, pipeline.Options(
        only=("pkgs-cache", "dedup"), strip_mode=None, conda_pack_views=True,
        extras=Wanted(by_package=True)))
    _adds_up(report)
    # One copy becomes a link to the other; files the fixture has twice go too.
    rows = {p.name: p for p in report.packages or ()}
    assert rows["demopkg"].strategies["dedup"] >= module.stat().st_size * 20
