"""What a shrink did, said as the report and as the commit's payload, from one plan."""

from __future__ import annotations

from pathlib import Path

from shrinkconda import outcome
from shrinkconda.plan import plan
from shrinkconda.scan import Scan, scan
from shrinkconda.strategies import Strategy, bytecode
from shrinkconda.transaction.journal import Step


def _tree(root: Path) -> Scan:
    (root / "conda-meta").mkdir()
    for path, size in [("share/doc/a/x.txt", 3000), ("share/doc/a/y.txt", 5000),
                       ("share/doc/b.txt", 7000), ("lib/libdemo.so", 11000)]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"x" * size)
    return scan(root)


def _index(the_scan: Scan, path: str) -> int:
    index = the_scan.find(path)
    assert index is not None, path
    return index


def _docs(the_scan: Scan) -> list[int]:
    return [_index(the_scan, "share/doc")]


DOCS = Strategy("demo-docs", "share/doc", _docs)


def test_a_path_that_could_not_be_staged_stays_with_the_directories_around_it(
        tmp_path: Path) -> None:
    the_scan = _tree(tmp_path)
    removed = plan(the_scan, [DOCS]).removed()
    failed = [(Step("share/doc/a/x.txt", "r0"), "Operation not permitted")]
    after, phases = outcome.without_failed(the_scan, removed, (), failed)
    gone = {the_scan.paths[i] for i in range(len(the_scan)) if after[i]}
    assert gone == {"share/doc/a/y.txt", "share/doc/b.txt"}
    assert phases == ()
    assert removed[_index(the_scan, "share/doc/a/x.txt")]  # the plan's own mask is left as it was


def test_the_payload_records_each_strategys_roots_only(tmp_path: Path) -> None:
    the_plan = plan(_tree(tmp_path), [DOCS])
    payload = outcome.payload(the_plan, the_plan.removed(), [], None, False,
                              digest=lambda path: "0" * 64)
    assert payload["removed"] == {"demo-docs": ["share/doc"]}
    assert (payload["strip_mode"], payload["stripped"], payload["views"]) == (None, {}, False)
    assert "deduplicated" not in payload  # no dedup phase ran


def test_a_rolled_back_report_frees_nothing_and_says_how_to_retry(tmp_path: Path) -> None:
    the_plan = plan(_tree(tmp_path), [DOCS])
    done, _ = outcome.report(the_plan, the_plan.removed(), [], dry_run=False, verified=True)
    undone, _ = outcome.report(the_plan, bytearray(len(the_plan.scan)), [], dry_run=False,
                            verified=True, rolled_back=True)
    doc = _index(the_plan.scan, "share/doc")
    subtree = sum(the_plan.scan[i].size for i in range(doc, the_plan.scan.ends[doc]))
    assert [line.saving.files for line in done.lines] == [3]
    assert done.size_before - done.size_after == subtree >= 15000
    assert [line.saving.files for line in undone.lines] == [0]
    assert undone.size_after == undone.size_before == done.size_before
    assert any(n.startswith("rolled back:") and "--keep GLOB" in n for n in undone.notes)
    assert not any(n.startswith("rolled back:") for n in done.notes)


def _gone_module(the_scan: Scan) -> list[int]:
    return [_index(the_scan, "lib/python3.11/site-packages/pkg/gone.py")]


def test_the_start_up_note_counts_the_modules_that_compile_again(tmp_path: Path) -> None:
    """Three modules keep their source and lose every compiled file (two in
    ``__pycache__``, one legacy ``.pyc`` beside it); one loses its source too, and a
    sourceless ``.pyc`` is the module itself: neither compiles at start."""
    site = tmp_path / "lib/python3.11/site-packages/pkg"
    (site / "__pycache__").mkdir(parents=True)
    (tmp_path / "conda-meta").mkdir()
    sources = {"a.py": 1000, "b.py": 2000, "legacy.py": 4000, "gone.py": 8000}
    for name, size in sources.items():
        (site / name).write_bytes(b"#" * size)
    for name in ("a", "b", "gone"):
        (site / "__pycache__" / f"{name}.cpython-311.pyc").write_bytes(b"\0" * 100)
        (site / "__pycache__" / f"{name}.cpython-311.opt-1.pyc").write_bytes(b"\0" * 100)
    (site / "legacy.pyc").write_bytes(b"\0" * 100)
    (site / "sourceless.pyc").write_bytes(b"\0" * 100)
    the_plan = plan(scan(tmp_path), [Strategy("demo-modules", "gone.py", _gone_module),
                                     bytecode.STRATEGY])

    done, _ = outcome.report(the_plan, the_plan.removed(), [], dry_run=True)

    note = next(n for n in done.notes if n.startswith("code stays as source"))
    assert "the compiled files of 3 modules (6.8 KiB of source) are removed" in note
    assert "BENCHMARKS.md" in note and "3.4x" not in note
    no_bytecode = plan(scan(tmp_path), [Strategy("demo-modules", "gone.py", _gone_module)])
    without, _ = outcome.report(no_bytecode, no_bytecode.removed(), [], dry_run=True)
    assert not any(n.startswith("code stays as source") for n in without.notes)
