"""--html: the page renders in a real headless Chromium, names the big packages, zooms."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from treeutil import run_cli, snapshot

from fixtures import chromium
from shrinkconda import pipeline
from shrinkconda.errors import ReportFileError
from shrinkconda.render.breakdown import Wanted

needs_chromium = pytest.mark.skipif(chromium.find() is None,
                                    reason="needs chromium (apt-get install chromium)")

# The page's top-level boxes: [name, x, y, width, height] of each package tile.
TILES = """[...document.querySelectorAll('#map > .t')].map(e => {
  const r = e.getBoundingClientRect(); return [e.node[0], r.x, r.y, r.width, r.height]; })"""

# What the page says of the first conda-meta record the commit rewrites.
REWRITTEN_RECORD = """(() => { let found = null;
  (function walk(n) { if (isDir(n)) n[3].forEach(walk);
    else if (!found && n.length > 3 && D.fates[n[2]] === "conda-meta") found = n; })(D.tree);
  return describe(found); })()"""


def _data(page: str) -> dict[str, object]:
    found = re.search(r'<script id=data type="application/json">(.*?)</script>', page, re.DOTALL)
    assert found, "the page embeds its data"
    return dict(json.loads(found.group(1)))


def test_the_page_is_one_self_contained_file(prefix: Path, tmp_path: Path) -> None:
    page_path = tmp_path / "report.html"
    before = snapshot(prefix)
    result = run_cli("audit", "--html", str(page_path), str(prefix))
    assert result.returncode == 0, result.stderr
    assert snapshot(prefix) == before
    page = page_path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # no network
    assert "<style>" in page and "<script>" in page
    data = _data(page)
    tree = data["tree"]
    assert isinstance(tree, list) and tree[0] == "prefix"
    assert [g[0] for g in tree[3]][:1] == ["python 3.11.7"]  # the biggest package first
    for text in ("pkgs-cache", "libdemo", "astro/tests/runner.py", "imported by"):
        assert text in page


def test_an_html_path_that_cannot_work_is_refused_first(prefix: Path, tmp_path: Path) -> None:
    before = snapshot(prefix)
    for bad in (prefix / "report.html", tmp_path / "missing" / "report.html", tmp_path):
        with pytest.raises(ReportFileError):
            pipeline.shrink(prefix, pipeline.Options(extras=Wanted(html=str(bad))))
    assert snapshot(prefix) == before
    result = run_cli("audit", "--html", str(prefix / "x.html"), str(prefix))
    assert result.returncode == 1 and "inside the prefix" in result.stderr


@needs_chromium
def test_chromium_renders_names_the_packages_and_zooms(prefix: Path, tmp_path: Path) -> None:
    page_path = tmp_path / "report.html"
    report = pipeline.shrink(prefix, pipeline.Options(
        verify=False, extras=Wanted(html=str(page_path))))
    assert not report.rolled_back and page_path.stat().st_size < 3_000_000
    with chromium.Browser(1280, 900) as browser:
        browser.open(page_path)
        tiles = browser.evaluate(TILES)
        names = [t[0] for t in tiles]
        assert names[0] == "python 3.11.7" and "(unowned)" in names
        labels = browser.evaluate("document.getElementById('map').innerText")
        assert "python 3.11.7" in labels and "libpython3.11.so.1.0" in labels
        table = browser.evaluate("document.getElementById('packages').innerText")
        for package in ("python", "libdemo", "demopkg", "astro", "purepkg"):
            assert package in table
        assert browser.evaluate("document.getElementById('map').dataset.root") == ""

        name, x, y, width, height = tiles[0]
        browser.hover(x + width / 2, y + height / 2)
        detail = browser.evaluate("document.getElementById('detail').textContent")
        assert "libpython3.11.so.1.0" in detail and "owner: python 3.11.7" in detail
        assert "bytes" in detail and "stripped" in detail
        browser.click(x + width / 2, y + height / 2)
        assert browser.evaluate("document.getElementById('map').dataset.root") == name
        crumbs = browser.evaluate("document.getElementById('crumbs').innerText")
        assert crumbs.startswith("prefix") and name in crumbs
        inner = [t[0] for t in browser.evaluate(TILES)]
        assert "lib" in inner and "python 3.11.7" not in inner  # one level down

        # A file another phase rewrites (the commit's conda-meta records) says so too.
        record = browser.evaluate(REWRITTEN_RECORD)
        assert "rewritten by conda-meta" in record and "→" in record and " after" in record
        browser.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}))")
        assert browser.evaluate("document.getElementById('map').dataset.root") == ""
        shot = tmp_path / "page.png"
        browser.screenshot(shot)
        assert browser.errors == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_every_line_has_its_colour_and_every_rewritten_file_its_size_after(
        prefix: Path, tmp_path: Path) -> None:
    page_path = tmp_path / "report.html"
    result = run_cli("audit", "--python-code", "bytecode", "--json", "--by", "package",
                     "--html", str(page_path), str(prefix))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    page = page_path.read_text(encoding="utf-8")
    data = _data(page)
    fates, colours = data["fates"], data["colours"]
    assert isinstance(fates, list) and isinstance(colours, list)
    assert fates == ["stays", *(line["name"] for line in doc["strategies"])]
    assert "python-code" in fates and len(set(colours)) == len(colours)
    assert "<th>python-code</th>" in page  # the packages table has its column

    def leaves(node: list[object]) -> list[list[object]]:
        children = node[3] if len(node) > 3 and isinstance(node[3], list) else None
        return [leaf for child in children for leaf in leaves(child)] if children else [node]

    tree = data["tree"]
    assert isinstance(tree, list)
    rewritten = {str(fates[int(str(leaf[2]))]) for leaf in leaves(tree) if len(leaf) > 3}
    assert {"strip", "conda-meta"} <= rewritten  # not only the strip phase's files
    by_fate: dict[str, int] = {}
    for leaf in leaves(tree):
        fate = str(fates[int(str(leaf[2]))])
        by_fate[fate] = by_fate.get(fate, 0) + int(str(leaf[1]))
    assert by_fate["python-code"] > 0  # the sources it compiled away are drawn as its own
