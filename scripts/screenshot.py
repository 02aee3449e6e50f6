#!/usr/bin/env python3
"""Render the --html page of the test fixture prefix to a PNG with headless Chromium.

    .venv/bin/python scripts/screenshot.py [-o docs/html-report.png] [--keep DIR]

Builds the fixture prefix (python, libdemo, demopkg, astro, purepkg with its package cache
in pkgs/, as the tests do), runs ``shrinkconda audit --by package --html`` on it, and
takes a screenshot of the page in the same headless Chromium the tests drive.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from fixtures import chromium
from fixtures.builder import build_channel, build_fixture_prefix
from shrinkconda import pipeline
from shrinkconda.render.breakdown import Wanted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=REPO_ROOT / "docs/html-report.png")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=820)
    parser.add_argument("--keep", type=Path, help="also keep the HTML page here")
    args = parser.parse_args(argv)
    if chromium.find() is None:
        parser.error("chromium is not installed (Debian: apt-get install chromium)")
    work = Path(tempfile.mkdtemp(prefix="shrinkconda-screenshot-"))
    try:
        prefix = build_fixture_prefix(work / "env", build_channel())
        page = work / "report.html"
        pipeline.audit(prefix, pipeline.Options(extras=Wanted(by_package=True, html=str(page))))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with chromium.Browser(args.width, args.height) as browser:
            browser.open(page)
            browser.screenshot(args.output)
            if browser.errors:
                print("console errors:", *browser.errors, sep="\n  ", file=sys.stderr)
                return 1
        if args.keep:
            shutil.copy(page, args.keep)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.output}: {args.output.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
