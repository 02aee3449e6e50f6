"""The ``--html`` page: one self-contained file (inline CSS and JavaScript, the data as
embedded JSON, no network) with a zoomable treemap of the prefix and the report's tables.
"""

from __future__ import annotations

import heapq
import html
import json
import posixpath
from typing import Any, Union

from shrinkconda.render.packages import Attribution, Tally
from shrinkconda.render.report import Report
from shrinkconda.scan import DIR, Scan
from shrinkconda.units import human

STAYS = "stays"
"""The fate of bytes the shrink leaves alone."""

MAX_NODES = 10_000
"""About how many files get a box of their own in the page's data; the smaller ones
are grouped per directory and fate, so a 100k-file prefix makes a page of about a
megabyte."""

_COLOURS = {STAYS: "#a3acb9", "pkgs-cache": "#e15759", "tests": "#f28e2b",
            "static-libs": "#b07aa1", "bytecode": "#edc948", "docs": "#59a14f",
            "strip": "#4e79a7", "conda-meta": "#76b7b2", "python-code": "#9c755f",
            "dedup": "#86bcb6", "gpu-code": "#d37295", "cpu-cap": "#8cd17d"}
_SPARE = ("#ff9da7", "#499894", "#fabfd2", "#9c755f", "#86bcb6", "#d37295", "#8cd17d")

# A node in the page's data: [name, bytes, fate index or -1, children]; a leaf is
# [name, bytes, fate index] or, for a file a phase rewrites (stripped, recompiled),
# [name, bytes, fate, bytes after].
Node = list[Any]
_Tree = dict[str, Union["_Tree", list[int]]]
Small = dict[int, list[int]]
"""Fate -> [files, bytes, bytes after] of the files too small for a box of their own."""


def render(report: Report, scan: Scan, attribution: Attribution, tally: Tally) -> str:
    """The page, as one string."""
    fates = [STAYS] + [ln.name for ln in report.lines]
    tree = _tree(scan, attribution, tally, fates)
    colours = _colours(fates)
    rewriting = {tally.fates[i] for i in tally.after}
    data = {"fates": fates, "colours": [colours[f] for f in fates], "tree": tree,
            "prefix": report.prefix, "rewrites": [f in rewriting for f in fates],
            "saved": [report.size_after] + [ln.saving.bytes for ln in report.lines]}
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=True).replace("</", "<\\/")
    title = f"shrinkconda {'audit' if report.dry_run else 'shrink'}: {report.prefix}"
    return (_PAGE.replace("@TITLE@", html.escape(_printable(title)))
            .replace("@SUMMARY@", _summary(report))
            .replace("@TABLES@", _tables(report, tally, colours))
            .replace("@DATA@", payload))


def _tree(scan: Scan, attribution: Attribution, tally: Tally, fates: list[str]) -> Node:
    """prefix -> package -> directory -> file, each inode's bytes placed once: on the link
    whose removal freed them, else on the first link seen."""
    code = {f: n for n, f in enumerate(fates)}
    per_group: list[_Tree] = [{} for _ in attribution.groups]
    placed: set[tuple[int, int]] = {(scan.devs[i], scan.inos[i]) for i in tally.fates
                                    if scan.nlinks[i] > 1}
    kinds, sizes, nlinks = scan.kinds, scan.sizes, scan.nlinks
    # A hard-linked inode that stays is shown where it stays, not in the removed pkgs/.
    order = sorted(range(1, len(scan)), key=lambda i: tally.removed[i]) if placed else \
        range(1, len(scan))
    for index in order:
        if kinds[index] == DIR or not sizes[index]:
            continue
        fate = tally.fates.get(index)
        if fate is None and nlinks[index] > 1:
            key = (scan.devs[index], scan.inos[index])
            if key in placed:
                continue
            placed.add(key)
        elif fate is None and tally.removed[index]:
            continue  # removed, saving nothing (an empty file)
        node = per_group[attribution.owner[index]]
        *dirs, name = scan.paths[index].split("/")
        for part in dirs:
            child = node.setdefault(part + "/", {})
            assert isinstance(child, dict)
            node = child
        leaf = [sizes[index], code[fate] if fate else 0]
        if index in tally.after:
            leaf.append(tally.after[index])
        node[name] = leaf
    floor = _floor(per_group)
    groups = [_node(g.name + (f" {g.version}" if g.version else ""), t, floor, join=False)
              for g, t in zip(attribution.groups, per_group) if t]
    groups.sort(key=lambda n: -n[1])
    return [posixpath.basename(str(scan.prefix)) or str(scan.prefix),
            sum(n[1] for n in groups), -1, groups]


def _colours(fates: list[str]) -> dict[str, str]:
    """Each fate's colour: its own, else the next spare no other fate on the page has."""
    colours = {f: _COLOURS[f] for f in fates if f in _COLOURS}
    spare = [c for c in _SPARE if c not in colours.values()] or list(_SPARE)
    others = [f for f in fates if f not in colours]
    colours.update((f, spare[n % len(spare)]) for n, f in enumerate(others))
    return colours


def _floor(trees: list[_Tree]) -> int:
    """The size of about the :data:`MAX_NODES`-th largest file: smaller ones are grouped."""
    sizes: list[int] = []
    stack = list(trees)
    while stack:
        for value in stack.pop().values():
            if isinstance(value, dict):
                stack.append(value)
            else:
                sizes.append(value[0])
    if len(sizes) <= MAX_NODES:
        return 0
    return heapq.nlargest(MAX_NODES, sizes)[-1] + 1


def _node(name: str, tree: _Tree, floor: float, join: bool = True) -> Node:
    """A directory's node; runs of single subdirectories join (``lib/python3.11/``), and
    files below ``floor`` bytes become one box per fate (``(41 files)``)."""
    while join and len(tree) == 1:
        (only, sub), = tree.items()
        if not isinstance(sub, dict):
            break
        name, tree = f"{name}/{only.rstrip('/')}", sub
    children: list[Node] = []
    small: Small = {}
    for child, value in tree.items():
        if isinstance(value, dict):
            node = _node(child.rstrip("/"), value, floor)
            if node[1] >= floor:
                children.append(node)
            else:
                _absorb(node, small)
        elif value[0] >= floor:
            children.append([child, *value])
        else:
            _absorb([child, *value], small)
    for fate, (count, size, after) in sorted(small.items()):
        leaf = [f"({count:,} small file{'s' if count > 1 else ''})", size, fate]
        children.append(leaf + [after] if after != size else leaf)
    children.sort(key=lambda n: -n[1])
    return [name, sum(n[1] for n in children), -1, children]


def _absorb(node: Node, small: Small) -> None:
    """Add the files of ``node`` (a leaf, an aggregate or a directory) to ``small``."""
    if len(node) > 3 and isinstance(node[3], list):
        for child in node[3]:
            _absorb(child, small)
        return
    count = int(node[0][1:].split()[0].replace(",", "")) if node[0].startswith("(") else 1
    entry = small.setdefault(node[2], [0, 0, 0])
    entry[0] += count
    entry[1] += node[1]
    entry[2] += node[3] if len(node) > 3 else node[1]


def _summary(report: Report) -> str:
    verb = "would free" if report.dry_run else "freed"
    saved = report.bytes_saved
    share = f" ({saved / report.size_before:.0%})" if report.size_before else ""
    parts = [f"<b>{human(report.size_before)}</b> before",
             f"<b>{human(report.size_after)}</b> after",
             f"{verb} <b>{human(saved)}</b>{share}"]
    if report.compressed is not None:
        before, after = report.compressed.before.gzip, report.compressed.after.gzip
        parts.append(f"tar.gz {human(before)} &rarr; {human(after)}")
    if report.rolled_back:
        parts.append("<b>rolled back</b>: nothing changed")
    return " &middot; ".join(parts)


def _tables(report: Report, tally: Tally, colours: dict[str, str]) -> str:
    out = [("<h2>Strategies</h2><table><tr><th>strategy</th><th>files</th><th>saved</th>"
           "<th>bytes</th></tr>")]
    for line in report.lines:
        out.append(f"<tr><td>{_swatch(colours.get(line.name, ''))}{html.escape(line.name)}"
                   f"</td><td>{line.saving.files:,}</td><td>{human(line.saving.bytes)}</td>"
                   f"<td>{line.saving.bytes:,}</td></tr>")
    out.append(f"<tr class=total><td>total</td><td></td><td>{human(report.bytes_saved)}</td>"
               f"<td>{report.bytes_saved:,}</td></tr></table>")
    names = [ln.name for ln in report.lines if any(ln.name in p.strategies for p in tally.rows)]
    out.append("<h2>Packages</h2><table id=packages><tr><th>package</th><th>version</th>"
               "<th>size</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names)
               + "<th>saved</th><th>stays</th></tr>")
    for p in tally.rows:
        cells = "".join(f"<td>{human(p.strategies[n]) if n in p.strategies else ''}</td>"
                        for n in names)
        out.append(f"<tr><td>{html.escape(_printable(p.name))}</td><td>{html.escape(p.version)}"
                   f"</td><td>{human(p.size)}</td>{cells}<td>{human(p.bytes_saved)}</td>"
                   f"<td>{human(p.stays)}</td></tr>")
    out.append("</table>")
    if report.compressed is not None:
        c = report.compressed
        out.append("<h2>Compressed</h2><table><tr><th></th><th>before</th><th>after</th></tr>")
        for label, b, a in (("tar | gzip -6", c.before.gzip, c.after.gzip),
                            ("tar | zstd -3", c.before.zstd, c.after.zstd),
                            ("zip -6 -r", c.before.zip, c.after.zip)):
            if b is not None and a is not None:
                out.append(f"<tr><td>{label}</td><td>{human(b)}</td><td>{human(a)}</td></tr>")
        out.append("</table>")
    for title, items in (
        ("Problems", [f"{_printable(p.path) or '.'}: {p.message}" for p in report.errors]),
        ("Kept", [f"{_printable(k.path)}, {k.reason}" for k in report.kept]),
        ("Notes", [_printable(n) for n in report.notes]
         + [f"broken: {b.check}: {b.error}" for b in report.broken]),
    ):
        if items:
            out.append(f"<h2>{title}</h2><ul>"
                       + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
    return "\n".join(out)


def _swatch(colour: str) -> str:
    return f"<span class=sw style='background:{colour}'></span>" if colour else ""


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


_PAGE = """<!DOCTYPE html>
<html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d232b;background:#f6f7f9}
header{padding:14px 20px 8px}
h1{font-size:18px;margin:0 0 4px;word-break:break-all}
h2{font-size:15px;margin:22px 0 8px}
main{padding:0 20px 30px}
#crumbs{margin:6px 0;font-size:13px}
#crumbs a{color:#2a5db0;cursor:pointer;text-decoration:none}
#crumbs a:hover{text-decoration:underline}
#legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;margin:4px 0 8px}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
#map{position:relative;height:560px;background:#fff;border:1px solid #cfd5dd;overflow:hidden;user-select:none}
.t{position:absolute;box-sizing:border-box;border:1px solid rgba(255,255,255,.9);overflow:hidden;cursor:pointer}
.t.d{background:rgba(40,50,65,.05);border-color:#fff}
.t>.l{font-size:11px;line-height:14px;padding:0 3px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;color:#1d232b;pointer-events:none}
.t.d>.l{font-weight:600;background:rgba(255,255,255,.55)}
.t:hover{outline:2px solid #1d232b;outline-offset:-2px;z-index:2}
#tip{position:fixed;pointer-events:none;background:#1d232b;color:#fff;padding:6px 9px;border-radius:4px;font-size:12px;max-width:520px;word-break:break-all;display:none;z-index:9}
#detail{font-size:13px;min-height:20px;margin:6px 0;color:#39424e;word-break:break-all}
table{border-collapse:collapse;background:#fff;font-size:13px}
th,td{padding:3px 10px;border-bottom:1px solid #e3e7ec;text-align:right;white-space:nowrap}
th:first-child,td:first-child,#packages td:nth-child(2),#packages th:nth-child(2){text-align:left}
tr.total td{font-weight:600}
li{margin:2px 0;word-break:break-all}
</style></head><body>
<header><h1>@TITLE@</h1><div>@SUMMARY@</div></header>
<main>
<div id=legend></div>
<div id=crumbs></div>
<div id=map role=img aria-label="treemap of the prefix"></div>
<div id=detail>Hover a box for its path, bytes and owner; click to zoom in, click the path above (or press Escape) to zoom out.</div>
@TABLES@
</main>
<div id=tip></div>
<script id=data type="application/json">@DATA@</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const map = document.getElementById("map"), tip = document.getElementById("tip");
const crumbs = document.getElementById("crumbs"), detail = document.getElementById("detail");
const MIN = 14;
function human(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0, s = Math.abs(n);
  while (s >= 1024 && i < u.length - 1) { s /= 1024; i++; }
  return (n < 0 ? "-" : "") + (i ? s.toFixed(1) : s.toFixed(0)) + " " + u[i];
}
// Parents and per-fate bytes for every node, once.
function prepare(node, parent) {
  node.parent = parent;
  node.byFate = {};
  if (isDir(node)) {
    for (const c of node[3]) {
      prepare(c, node);
      for (const f in c.byFate) node.byFate[f] = (node.byFate[f] || 0) + c.byFate[f];
    }
  } else {
    node.byFate[node[2]] = node[1];
  }
}
prepare(D.tree, null);
function isDir(node) { return Array.isArray(node[3]); }
function fateName(f, rewritten) {
  if (+f === 0) return "stays";
  if (D.fates[f] === "strip") return "stripped";
  return (rewritten ? "rewritten by " : "removed by ") + D.fates[f];
}
function dominant(node) {
  let best = 0, most = -1;
  for (const f in node.byFate) if (node.byFate[f] > most) { most = node.byFate[f]; best = +f; }
  return best;
}
function path(node) {
  const names = [];
  for (let n = node; n && n.parent; n = n.parent) if (n.parent.parent) names.unshift(n[0]);
  return names.filter(n => !n.startsWith("(")).join("/");
}
function owner(node) {
  let n = node;
  while (n.parent && n.parent.parent) n = n.parent;
  return n.parent ? n[0] : "";
}
function describe(node) {
  const rewritten = !isDir(node) && node.length > 3;
  const fates = Object.keys(node.byFate).sort((a, b) => node.byFate[b] - node.byFate[a])
    .map(f => fateName(f, rewritten) + " " + human(node.byFate[f])).join(", ");
  const after = rewritten ? " → " + human(node[3]) + " after" : "";
  const where = node.parent ? (owner(node) === node[0] ? "" : path(node) + (isDir(node) ? "/" : "")) : D.prefix;
  return (where ? where + " · " : "") + human(node[1]) + " (" + node[1].toLocaleString("en") +
    " bytes) · owner: " + (owner(node) || "all") + " · " + fates + after;
}
// Squarified treemap (Bruls, Huizing, van Wijk): rows of boxes with the best aspect ratio.
function squarify(items, x, y, w, h, out) {
  const total = items.reduce((s, it) => s + it[1], 0);
  if (!total || w <= 0 || h <= 0) return;
  const scale = (w * h) / total;
  let rest = items.slice();
  while (rest.length) {
    const side = Math.min(w, h);
    let row = [], sum = 0, worst = Infinity;
    while (rest.length) {
      const a = rest[0][1] * scale, s = sum + a;
      const max = Math.max(a, ...row.map(r => r[1] * scale)), min = Math.min(a, ...row.map(r => r[1] * scale));
      const ratio = Math.max(side * side * max / (s * s), (s * s) / (side * side * min));
      if (row.length && ratio > worst) break;
      row.push(rest.shift()); sum = s; worst = ratio;
    }
    const thick = sum / side;
    let pos = 0;
    for (const it of row) {
      const len = it[1] * scale / thick;
      if (w >= h) out.push([it, x, y + pos, thick, len]); else out.push([it, x + pos, y, len, thick]);
      pos += len;
    }
    if (w >= h) { x += thick; w -= thick; } else { y += thick; h -= thick; }
  }
}
let root = D.tree, count = 0;
function draw(node, box, x, y, w, h, depth) {
  const el = document.createElement("div");
  const dir = isDir(node);
  el.className = "t" + (dir ? " d" : "");
  el.style.left = x + "px"; el.style.top = y + "px"; el.style.width = w + "px"; el.style.height = h + "px";
  el.node = node;
  if (!dir || w < 3 * MIN || h < 2 * MIN || depth > 7) el.style.background = D.colours[dir ? dominant(node) : node[2]];
  if (!dir && node.length > 3) {  // rewritten: the part that stays solid, the part freed pale
    const kept = (100 * node[3] / node[1]).toFixed(1);
    el.style.background = "linear-gradient(to right, " + D.colours[node[2]] + " " + kept + "%, #c6d7ea " + kept + "%)";
  }
  box.appendChild(el); count++;
  if (w > 30 && h > 13) {
    const label = document.createElement("div");
    label.className = "l"; label.textContent = node[0] + (dir && node.parent !== D.tree ? "/ " : " ") + human(node[1]);
    el.appendChild(label);
  }
  if (dir && w >= 3 * MIN && h >= 2 * MIN && depth <= 7) {
    const top = 14, out = [];
    squarify(node[3].filter(c => c[1] > 0), 1, top, w - 4, h - top - 3, out);
    for (const [c, cx, cy, cw, ch] of out) if (cw >= 2 && ch >= 2) draw(c, el, cx, cy, cw, ch, depth + 1);
  }
}
function render() {
  map.textContent = ""; count = 0;
  const out = [];
  squarify(root[3].filter(c => c[1] > 0), 0, 0, map.clientWidth, map.clientHeight, out);
  for (const [c, x, y, w, h] of out) draw(c, map, x, y, w, h, 1);
  crumbs.textContent = "";
  const chain = [];
  for (let n = root; n; n = n.parent) chain.unshift(n);
  chain.forEach((n, i) => {
    if (i) crumbs.appendChild(document.createTextNode(" / "));
    const a = document.createElement(i < chain.length - 1 ? "a" : "b");
    a.textContent = n[0] + " (" + human(n[1]) + ")";
    if (i < chain.length - 1) a.onclick = () => zoom(n);
    crumbs.appendChild(a);
  });
  map.dataset.root = path(root) || owner(root) || "";
  map.dataset.boxes = count;
}
function zoom(node) { root = node; render(); }
map.addEventListener("click", ev => {
  let el = ev.target.closest(".t");
  if (!el) return;
  let n = el.node;  // one level at a time: the box under the pointer below the root
  while (n.parent && n.parent !== root) n = n.parent;
  if (isDir(n)) zoom(n);
});
map.addEventListener("mousemove", ev => {
  const el = ev.target.closest(".t");
  if (!el) { tip.style.display = "none"; return; }
  tip.textContent = describe(el.node);
  tip.style.display = "block";
  const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  tip.style.left = x + "px"; tip.style.top = (ev.clientY + 16) + "px";
  detail.textContent = describe(el.node);
});
map.addEventListener("mouseleave", () => { tip.style.display = "none"; });
document.addEventListener("keydown", ev => { if (ev.key === "Escape" && root.parent) zoom(root.parent); });
window.addEventListener("resize", render);
const legend = document.getElementById("legend");
D.fates.forEach((f, i) => {
  if (!D.tree.byFate[i]) return;
  const s = document.createElement("span");
  s.innerHTML = "<span class=sw></span>";
  s.firstChild.style.background = D.colours[i];
  // The report's figures (directories included), as in the tables below.
  s.appendChild(document.createTextNode(i ? "removed by " + f + ": " + human(D.saved[i])
                                          : "stays: " + human(D.saved[0]) + " after the shrink"));
  if (f === "strip") s.lastChild.textContent = "stripped: frees " + human(D.saved[i]) + " (the pale part)";
  else if (D.rewrites[i]) s.lastChild.textContent = f + ": " + (D.saved[i] < 0 ? "costs " : "frees ") +
    human(Math.abs(D.saved[i])) + " (rewritten files: the pale part)";
  legend.appendChild(s);
});
render();
</script></body></html>
"""
