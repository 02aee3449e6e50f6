"""Read the command examples out of the Markdown docs and check them against the CLI.

An example is a ``shrinkconda …`` command (also ``python shrinkconda.pyz …``,
``python -m shrinkconda …``, ``conda shrink …`` and ``pixi shrink …``) in a fenced code
block or an inline code span. Blocks labelled ``sh``, ``bash``, ``shell`` or ``console``
are examples that run (tests/test_docs.py runs them on a fixture prefix) and exit 0,
unless the line just above the block is ``<!-- not-runnable: REASON -->`` (or
``<!-- exit-status: N -->``: they exit N); other blocks (a synopsis,
TOML, a Dockerfile) and inline spans are only checked for their options. An inline span
that is an option alone (`` `--used-by` ``) must be an option of one of the commands,
or one of :data:`FOREIGN_OPTIONS`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import click

from shrinkconda import cli
from shrinkconda.frontends import pixi

RUN_LANGUAGES = frozenset({"sh", "bash", "shell", "console"})
"""Fence labels of blocks whose commands are run."""

NOT_RUNNABLE = re.compile(r"^\s*<!--\s*not-runnable:\s*(?P<reason>.+?)\s*-->\s*$")
"""The marker, on the line just above a fence, of a block that cannot run here."""

EXIT_STATUS = re.compile(r"^\s*<!--\s*exit-status:\s*(?P<status>\d+)\s*-->\s*$")
"""The marker, on the line just above a fence, of a block whose commands exit with this
status instead of 0 (a shrink that is rolled back exits 3)."""

FOREIGN_OPTIONS: Mapping[str, str] = {
    "--strip-debug": "GNU strip", "--strip-unneeded": "GNU strip", "--strip-all": "GNU strip",
    "--onedir": "PyInstaller", "--strip": "PyInstaller",
    "--without-pip": "python -m venv", "--compile-bytecode": "uv",
    "--offline": "scripts/build_zipapp.py", "--ignore-missing-files": "conda-pack",
    "--emit-relocs": "GNU ld", "--force-reinstall": "conda install",
    "--force-pkgs-dirs": "conda clean", "--symlinks": "zip",
    "--invalidation-mode": "python -m compileall", "--read-only": "docker run",
    "--isolation": "podman build",
    "--disable-gil": "CPython's configure", "--enable-shared": "CPython's configure",
}
"""Long options of other tools that the docs name on their own, and whose they are."""

_CONDA_OPTIONS = {"-n": True, "--name": True, "-p": True, "--prefix": True,
                  "-d": False, "--dry-run": False}
"""What ``conda shrink`` adds to ``shrinkconda shrink``'s options (conda's prefix
options and ``--dry-run``; shrinkconda/frontends/conda_plugin.py)."""

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w-]*)")
_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_SEPARATORS = frozenset({"&&", "||", ";", "|", "&"})


@dataclass(frozen=True)
class Example:
    """One command as a page shows it."""

    page: str
    """The page, as given to :func:`examples` (``docs/usage.md``)."""
    line: int
    """Its 1-based line on the page."""
    program: str
    """``shrinkconda``, ``conda shrink`` or ``pixi shrink``."""
    args: tuple[str, ...]
    """What follows the program, split as the shell would."""
    runnable: bool
    """It is in a block that runs, and not marked ``not-runnable``."""
    output: tuple[str, ...] = ()
    """In a ``console`` block: the lines the page shows it printing."""
    exit_status: int = 0
    """The status it exits with, as the block's ``exit-status`` marker says."""

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.program} {shlex.join(self.args)}"


@dataclass(frozen=True)
class Finding:
    """Something a page names that the CLI does not have."""

    page: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.message}"


def examples(page: str, text: str) -> Iterator[Example]:
    """Every command example of a Markdown page, in page order."""
    lines = text.splitlines()
    in_block, fence, lang, runnable, status = False, "", "", False, 0
    block: list[tuple[int, str]] = []
    for number, line in enumerate(lines, 1):
        opening = _FENCE.match(line)
        if not in_block and opening:
            in_block, fence, lang = True, opening["fence"], opening["lang"].lower()
            above = lines[number - 2] if number > 1 else ""
            runnable = lang in RUN_LANGUAGES and not NOT_RUNNABLE.match(above)
            marked = EXIT_STATUS.match(above)
            status = int(marked["status"]) if marked else 0
            block = []
            continue
        if in_block and re.fullmatch(f"{re.escape(fence[0])}{{{len(fence)},}}", line.strip()):
            in_block = False
            yield from _block_examples(page, block, lang, runnable, status)
            continue
        if in_block:
            block.append((number, line))
        else:
            for span in _SPAN.findall(line):
                yield from _commands(page, number, span, runnable=False)
    if in_block:  # an unclosed fence runs to the end of the page, as Markdown has it
        yield from _block_examples(page, block, lang, runnable, status)


def _block_examples(page: str, block: list[tuple[int, str]], lang: str,
                    runnable: bool, status: int) -> Iterator[Example]:
    """The commands of one fenced block; a ``console`` block's commands are its
    ``$ `` lines, and the lines up to the next ``$ `` are their output."""
    logical: list[tuple[int, str, list[str]]] = []
    pending = ""
    for number, line in block:
        if lang == "console" and not pending:
            if line.startswith("$ "):
                logical.append((number, line[2:], []))
            elif logical:
                logical[-1][2].append(line)
            continue
        if pending:
            logical[-1] = (logical[-1][0], pending + line, logical[-1][2])
        else:
            logical.append((number, line, []))
        pending = logical[-1][1][:-1] + " " if logical[-1][1].endswith("\\") else ""
    for number, command, output in logical:
        for example in _commands(page, number, command, runnable):
            yield Example(example.page, example.line, example.program, example.args,
                          example.runnable, tuple(output), status)


def _commands(page: str, line: int, text: str, runnable: bool) -> Iterator[Example]:
    """The shrinkconda commands in one line of shell (``a && b | c`` has three)."""
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError:  # not shell (unbalanced quotes in prose): nothing to check
        return
    segment: list[str] = []
    for word in [*words, ";"]:
        if word not in _SEPARATORS:
            segment.append(word)
            continue
        found = _program(segment)
        if found is not None:
            yield Example(page, line, found[0], tuple(found[1]), runnable)
        segment = []


def _program(words: list[str]) -> tuple[str, list[str]] | None:
    """Which of our commands ``words`` runs, and its arguments."""
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # VAR=value before it
        words = words[1:]
    if not words:
        return None
    head = Path(words[0]).name
    if head == "shrinkconda":
        return "shrinkconda", words[1:]
    if head in ("conda", "pixi") and words[1:2] == ["shrink"]:
        return f"{head} shrink", words[2:]
    if head == "pixi-shrink":
        return "pixi shrink", words[1:]
    if re.fullmatch(r"python[0-9.]*", head):
        rest = words[1:]
        while rest and rest[0] in ("-B", "-I", "-s", "-E", "-u"):
            rest = rest[1:]
        if rest[:2] == ["-m", "shrinkconda"]:
            return "shrinkconda", rest[2:]
        if rest and rest[0].endswith("shrinkconda.pyz"):
            return "shrinkconda", rest[1:]
    return None


def option_spec(command: click.Command) -> dict[str, bool]:
    """Each option string of a click command, and whether it takes a value."""
    spec: dict[str, bool] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                spec[name] = not (param.is_flag or param.count)
    ctx = click.Context(command)
    for name in command.get_help_option_names(ctx):
        spec[name] = False
    return spec


def check(example: Example) -> list[Finding]:
    """What the example names that its command does not have: a subcommand or options."""
    if example.program == "pixi shrink":
        return _unknown(example, "pixi shrink", option_spec(pixi.main), list(example.args))
    if example.program == "conda shrink":
        spec = {**option_spec(cli.shrink), **_CONDA_OPTIONS}
        return _unknown(example, "conda shrink", spec, list(example.args))
    args = list(example.args)
    group_spec = option_spec(cli.main)
    while args and args[0] in group_spec:  # --version, --help
        args = args[1:]
    if not args:
        return []
    name, rest = args[0], args[1:]
    if re.fullmatch(r"[A-Z][A-Z_]*|…|\.\.\.", name):  # `shrinkconda COMMAND --help`, `… …`
        return []
    if name.startswith("-"):
        return [Finding(example.page, example.line,
                        f"`{name}` is not an option of `shrinkconda`")]
    command = cli.main.get_command(click.Context(cli.main), name)
    if command is None:
        return [Finding(example.page, example.line,
                        f"`shrinkconda {name}`: shrinkconda has no command `{name}` "
                        f"(it has {', '.join(sorted(cli.main.commands))})")]
    return _unknown(example, f"shrinkconda {name}", option_spec(command), rest)


def _unknown(example: Example, program: str, spec: Mapping[str, bool],
             args: list[str]) -> list[Finding]:
    found: list[Finding] = []
    words = iter(args)
    for word in words:
        if word == "--":
            break
        if not word.startswith("-") or word == "-" or re.fullmatch(r"-\d.*", word):
            continue
        name = word.split("=", 1)[0] if word.startswith("--") else word
        if name in spec:
            if spec[name] and "=" not in word:
                next(words, None)
            continue
        if not word.startswith("--") and all(f"-{c}" in spec for c in word[1:]):
            continue  # -yq: short flags together
        found.append(Finding(example.page, example.line,
                             f"`{name}` is not an option of `{program}`"))
    return found


def all_options() -> dict[str, str]:
    """Every option of every command the docs describe, and one command that has it."""
    commands: list[tuple[str, click.Command]] = [("shrinkconda", cli.main)]
    commands += [(f"shrinkconda {n}", c) for n, c in sorted(cli.main.commands.items())]
    commands.append(("pixi shrink", pixi.main))
    known: dict[str, str] = {name: "conda shrink" for name in _CONDA_OPTIONS}
    for program, command in commands:
        for name in option_spec(command):
            known.setdefault(name, program)
    return known


def named_options(page: str, text: str) -> list[Finding]:
    """Inline code spans that are a long option alone (`` `--keep GLOB` ``) or an
    options-table row, naming an option no command has and no other tool either."""
    known = all_options()
    found: list[Finding] = []
    in_block = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            in_block = not in_block
            continue
        if in_block:
            continue
        for span in _SPAN.findall(line):
            match = re.match(r"^(--[a-z][a-z0-9-]*)(?:[ =]|$)", span)
            if match and match[1] not in known and match[1] not in FOREIGN_OPTIONS:
                found.append(Finding(page, number, f"`{match[1]}` is not an option of "
                                     "shrinkconda (nor of another tool the docs name in "
                                     "tests/docscheck.py's FOREIGN_OPTIONS)"))
    return found
