"""The docs cannot drift from the tool: the site builds in strict mode, every command
example in README.md and docs/ names only options the CLI has, and the examples that can
run here do run, on a copy of the fixture prefix (tests/docscheck.py reads them)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import docscheck
import pytest
from click.testing import CliRunner

from shrinkconda import cli, pipeline
from shrinkconda.render import breakdown, compressed
from shrinkconda.render import report as render_report

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md")),
         REPO_ROOT / "BENCHMARKS.md", REPO_ROOT / "examples/README.md"]
"""Every Markdown page the site or the repository shows (docs/benchmarks.md shows
BENCHMARKS.md)."""

PREFIX_WORDS = ("$CONDA_PREFIX", "${CONDA_PREFIX}", "/opt/env", "/path/to/prefix")
"""What stands for the environment in an example; a run puts the fixture prefix there."""


def _page(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def _examples() -> list[docscheck.Example]:
    return [e for path in PAGES for e in docscheck.examples(_page(path), path.read_text())]


def _runnable() -> list[docscheck.Example]:
    """The runnable examples, each distinct command once (the README and the home page
    both show the set-up command)."""
    seen: dict[tuple[str, ...], docscheck.Example] = {}
    for example in _examples():
        if example.runnable:
            key = (example.program, *_substituted(example.args, "PREFIX"))
            seen.setdefault(key, example)
    return list(seen.values())


def _substituted(args: tuple[str, ...], prefix: str) -> list[str]:
    return [prefix if arg in PREFIX_WORDS else arg for arg in args]


def test_examples_name_only_options_the_cli_has() -> None:
    findings = [f for e in _examples() for f in docscheck.check(e)]
    assert not findings, "\n".join(map(str, findings))


def test_option_names_in_prose_are_options_of_some_command() -> None:
    # BENCHMARKS.md also names the options of its scripts/: only its commands are checked
    findings = [f for path in PAGES if path.parent.name == "docs" or path.name == "README.md"
                for f in docscheck.named_options(_page(path), path.read_text())]
    assert not findings, "\n".join(map(str, findings))


def test_a_page_naming_a_gone_option_fails_with_the_page_and_the_option(
        tmp_path: Path) -> None:
    page = tmp_path / "stale.md"
    page.write_text(
        "# Stale\n\n"
        "Shrink with `--keep-tests` to keep the test suites.\n\n"
        "```sh\n"
        "shrinkconda shrink -y /opt/env \\\n"
        "    --strip-mode all --profile-file lean.toml\n"
        "```\n\n"
        "<!-- not-runnable: needs conda -->\n"
        "```sh\n"
        "conda shrink -n myenv --dry-run --fast\n"
        "```\n\n"
        "Or `shrinkconda shrinkk /opt/env`.\n\n"
        "<!-- exit-status: 3 -->\n"
        "```console\n"
        "$ shrinkconda shrink -y /opt/env --verify-command false\n"
        "```\n")
    text = page.read_text()
    examples = list(docscheck.examples("stale.md", text))
    findings = [str(f) for e in examples for f in docscheck.check(e)]
    findings += [str(f) for f in docscheck.named_options("stale.md", text)]
    assert findings == [
        "stale.md:6: `--profile-file` is not an option of `shrinkconda shrink`",
        "stale.md:12: `--fast` is not an option of `conda shrink`",
        ("stale.md:15: `shrinkconda shrinkk`: shrinkconda has no command `shrinkk` "
         "(it has audit, profiles, shrink, strategies)"),
        ("stale.md:3: `--keep-tests` is not an option of shrinkconda (nor of another tool "
         "the docs name in tests/docscheck.py's FOREIGN_OPTIONS)"),
    ]
    # The marker is read: the shell block runs, the conda one does not.
    assert [(e.program, e.runnable, e.exit_status) for e in examples] == [
        ("shrinkconda", True, 0), ("conda shrink", False, 0), ("shrinkconda", False, 0),
        ("shrinkconda", True, 3)]


def test_console_blocks_keep_their_output_and_options_take_their_values() -> None:
    text = ("```console\n$ shrinkconda audit --profile aggressive /opt/env\nstrategy  files\n"
            "$ shrinkconda strategies\n```\n")
    examples = list(docscheck.examples("p.md", text))
    assert [(e.args, e.output) for e in examples] == [
        (("audit", "--profile", "aggressive", "/opt/env"), ("strategy  files",)),
        (("strategies",), ())]
    # `--profile` takes a value, so `aggressive` is not read as an argument; a value that
    # looks like an option (`--used-by -x`) is not read as an option; short flags combine.
    example = next(docscheck.examples("p.md", "`shrinkconda shrink --used-by -x -yq`"))
    assert docscheck.check(example) == []


_NUMBER = re.compile(r"\d[\d,.]*(?: ?(?:B|KiB|MiB|GiB|bytes|x))?")


def _shape(line: str, prefix: str) -> str:
    """A report line without its figures or column widths: numbers differ with the
    compiler that built the fixture, what the page shows of it must not."""
    return " ".join(_NUMBER.sub("#", line.replace(prefix, "/opt/env")).split())


@pytest.mark.parametrize("example", _runnable(), ids=lambda e: f"{e.page}:{e.line}")
def test_runnable_example_runs(example: docscheck.Example,
                               request: pytest.FixtureRequest) -> None:
    assert example.program == "shrinkconda", (
        f"{example}: only shrinkconda runs here; mark the block "
        "<!-- not-runnable: REASON --> (docs/contributing.md)")
    # a copy of the fixture prefix only for the commands that take one (60 MB to copy)
    needs_prefix = example.args[:1] in (("audit",), ("shrink",))
    prefix: Path = request.getfixturevalue("prefix") if needs_prefix else REPO_ROOT / "-"
    args = _substituted(example.args, str(prefix))
    result = CliRunner().invoke(cli.main, args, env={"CONDA_PREFIX": str(prefix)})
    assert result.exit_code == example.exit_status, f"{example}\n{result.output}"
    printed = {_shape(line, str(prefix)) for line in result.output.splitlines()}
    shown = [line for line in example.output if line.strip() and "[...]" not in line]
    missing = [line for line in shown if _shape(line, str(prefix)) not in printed]
    assert not missing, f"{example} no longer prints:\n" + "\n".join(missing)


def test_json_report_page_lists_every_key_the_report_has(template_prefix: Path) -> None:
    report = pipeline.audit(template_prefix, pipeline.Options(
        extras=breakdown.Wanted(by_package=True)))
    # --compressed reads the whole prefix twice: its keys come from a report given sizes
    sizes = compressed.Sizes(gzip=1, zstd=2, zip=3)
    doc = json.loads(render_report.to_json(
        replace(report, compressed=compressed.Compressed(before=sizes, after=sizes))))
    rows = {}
    for line in (REPO_ROOT / "docs/json-report.md").read_text().splitlines():
        cells = line.split(" | ")
        for key in re.findall(r"`(\w+)`", cells[0]) if line.startswith("| `") else ():
            rows[key] = cells[1]
    assert set(rows) == set(doc), "docs/json-report.md lists other keys than the report has"
    for key, value in doc.items():
        inner = value[0] if isinstance(value, list) and value else value
        if isinstance(inner, dict) and inner:
            documented = re.search(r"\{([\w, ]+)\}", rows[key])
            assert documented, f"docs/json-report.md: `{key}` does not list its keys"
            assert documented[1].split(", ") == list(inner), f"`{key}`: {list(inner)}"


_REPO_PATH = re.compile(r"`((?:shrinkconda|tests|scripts|examples|fixtures)/[^`\s]*)`")


def test_files_the_docs_name_exist() -> None:
    # `tests/test_x.py checks ...` must not outlive a renamed test or module
    missing = [f"{_page(path)}:{number}: {match}"
               for path in PAGES if path.parent.name == "docs" or path.name == "README.md"
               for number, line in enumerate(path.read_text().splitlines(), 1)
               for match in _REPO_PATH.findall(line)
               if not any((REPO_ROOT / p).exists() for p in _expand(match))]
    assert not missing, "no such file in the repository:\n" + "\n".join(missing)


def _expand(path: str) -> list[str]:
    """``shrinkconda/_vendor/tomli/`` as itself; ``a/{b,c}.py`` as both."""
    braces = re.search(r"\{([^}]*)\}", path)
    if not braces:
        return [path]
    return [path[:braces.start()] + part + path[braces.end():]
            for part in braces[1].split(",")]


_QUIET = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
"""Without Material's banner about MkDocs 2, so a failing build's output is its warnings."""


@pytest.fixture(scope="module")
def mkdocs() -> list[str]:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]'")
    return [sys.executable, "-m", "mkdocs", "build", "--strict"]


def test_site_builds_in_strict_mode(mkdocs: list[str], tmp_path: Path) -> None:
    build = subprocess.run([*mkdocs, "--site-dir", str(tmp_path / "site")], cwd=REPO_ROOT,
                           check=False, capture_output=True, text=True, timeout=300, env=_QUIET)
    assert build.returncode == 0, build.stdout + build.stderr
    cli_page = (tmp_path / "site/cli.html").read_text()
    assert "--target-cpu" in cli_page  # generated from the click commands
    api_page = (tmp_path / "site/api.html").read_text()
    assert "removes_distributions" in api_page  # generated from the docstrings


def test_strict_build_fails_on_a_broken_link_a_missing_page_and_one_left_out(
        mkdocs: list[str], tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")  # mkdocs' own dependency
    site = tmp_path / "src"
    shutil.copytree(REPO_ROOT / "docs", site / "docs")
    shutil.copy(REPO_ROOT / "BENCHMARKS.md", site / "BENCHMARKS.md")
    config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())
    config["nav"].append({"Gone": "gone-page.md"})
    (site / "mkdocs.yml").write_text(yaml.safe_dump(config))
    with (site / "docs/faq.md").open("a") as faq:
        faq.write("\nSee [the old page](no-such-page.md).\n")
    (site / "docs/orphan.md").write_text("# Not in the nav\n")
    build = subprocess.run([*mkdocs, "--site-dir", str(tmp_path / "site")], cwd=site,
                           check=False, capture_output=True, text=True, timeout=300, env=_QUIET)
    assert build.returncode != 0
    assert "no-such-page.md" in build.stderr
    assert "orphan.md" in build.stderr
    assert "gone-page.md" in build.stderr
