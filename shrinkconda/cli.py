"""The ``shrinkconda`` command line: a thin layer over :mod:`shrinkconda.pipeline`."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, TypeVar

import click

from shrinkconda import __version__, config, pipeline, profiles, strategies
from shrinkconda.appaware import trace
from shrinkconda.errors import (
    Interrupted,
    ShrinkError,
    UnknownProfileError,
    UnknownStrategyError,
)
from shrinkconda.phases import bytecode
from shrinkconda.phases.strip import MODES as STRIP_MODES
from shrinkconda.render import breakdown
from shrinkconda.render.report import Report, render, to_json
from shrinkconda.targets.cpu.levels import CHOICES as CPU_LEVELS
from shrinkconda.targets.cpu.levels import UnknownCpuLevelError
from shrinkconda.targets.gpu.archs import UnknownGpuArchError
from shrinkconda.transaction import faults, interrupt, testhooks

F = TypeVar("F", bound=Callable[..., Any])


def _load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Make the file's values the command's defaults, so the command line overrides them."""
    if value is None:
        return
    siblings = ctx.parent.command.commands.values() \
        if ctx.parent is not None and isinstance(ctx.parent.command, click.Group) else ()
    elsewhere = {s.key for command in siblings if command is not ctx.command
                 for s in _settings(command, ctx)}
    try:
        ctx.default_map = {**(ctx.default_map or {}), **config.resolve(
            config.read(value), _settings(ctx.command, ctx), value, elsewhere)}
    except ShrinkError as exc:
        raise click.UsageError(str(exc), ctx) from exc


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    ctx.meta[_DEBUG] = value


_DEBUG = "shrinkconda.debug"
"""``ctx.meta`` key: ``--debug`` was given."""


def _settings(command: click.Command, ctx: click.Context) -> list[config.Setting]:
    """A config key per long option of ``command``, checked by the option's own type."""
    found = []
    for param in command.params:
        if not isinstance(param, click.Option) or not param.expose_value or param.name is None:
            continue
        kind = config.FLAG if param.is_flag else config.LIST if param.multiple else config.VALUE
        for opt in param.opts:
            if opt.startswith("--"):
                found.append(config.Setting(opt[2:], param.name, kind, _converter(param, ctx)))
    return found


def _converter(param: click.Option, ctx: click.Context) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        numeric = isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType))
        if numeric and isinstance(value, str):
            raise TypeError(f"must be a number, not a string ({value!r})")
        if not numeric and not isinstance(value, str):
            raise TypeError(f"must be a string, not {value!r}")
        try:
            return param.type.convert(value, param, ctx)
        except click.BadParameter as exc:
            raise ValueError(exc.message) from None
    return convert


def _common(func: F) -> F:
    """The arguments and options ``audit`` and ``shrink`` share."""
    decorators = [
        click.argument("prefix", required=False, type=click.Path(file_okay=True)),
        click.option("--config", type=click.Path(dir_okay=False), is_eager=True,
                     expose_value=False, callback=_load_config, metavar="FILE",
                     help="Read option defaults from this TOML file; keys are the long "
                          "option names (profile, skip, strip-mode, ...). Flags given on "
                          "the command line win."),
        click.option("--profile", default=profiles.DEFAULT, show_default=True, metavar="NAME",
                     help="What runs when no --only is given, and the strip mode: safe, "
                          "aggressive, or a plugin's ('shrinkconda profiles' lists them)."),
        click.option("--only", multiple=True, metavar="NAME",
                      help="Run only this strategy (repeatable)."),
        click.option("--skip", multiple=True, metavar="NAME",
                      help="Do not run this strategy (repeatable)."),
        click.option("--keep", multiple=True, metavar="GLOB",
                      help="Never remove paths matching GLOB, relative to the prefix "
                           "(repeatable); a matched directory keeps its subtree."),
        click.option("--keep-locale", "keep_locales", multiple=True, metavar="LANG",
                     help="The locales strategy keeps this language's translations "
                          "(repeatable; 'de' keeps de_AT too)."),
        click.option("--strip-mode", type=click.Choice(list(STRIP_MODES)),
                     help="What GNU strip removes from ELF objects: debug sections, also "
                          "unneeded symbols, all symbols, or dh: all from executables and "
                          "unneeded from libraries, like Debian's dh_strip "
                          "[default: the profile's; safe: debug, aggressive: dh]."),
        click.option("--no-strip", is_flag=True, help="Do not strip ELF objects."),
        click.option("--python-code", type=click.Choice(list(bytecode.FORMS)),
                     help="The form Python code takes: source (.py only), bytecode "
                          "(sourceless .pyc compiled by the env's python; what reads its "
                          "own sources keeps them), or both (.py plus unchecked-hash "
                          "__pycache__ files, valid after mtimes are reset) [default: the "
                          "profile's; safe: source, aggressive: bytecode; with --used-by: "
                          "bytecode]."),
        click.option("--jobs", type=click.IntRange(min=1), metavar="N",
                     help="Strip N files at once [default: number of CPUs]."),
        click.option("--conda-pack-views", is_flag=True,
                     help="Point changed conda-meta records at views of the prefix, so "
                          "conda-pack packs them without its 'uncached' warning (the views "
                          "hold directory symlinks: zip them with -y)."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print one JSON document instead of the table."),
        click.option("-q", "--quiet", is_flag=True,
                     help="No progress bars, no table; problems still go to stderr."),
        click.option("--by", "by", type=click.Choice(["package"]),
                     help="Also break the sizes and savings down per installed package."),
        click.option("--html", "html_file", metavar="FILE",
                     help="Write a self-contained HTML page: a treemap of the prefix "
                          "coloured by what the shrink does, and the tables."),
        click.option("--compressed", is_flag=True,
                     help="Also measure the prefix as a tar layer (gzip -6, zstd -3) and "
                          "as a zip, before and after."),
        click.option("--used-by", "used_by", multiple=True, metavar="CMD",
                     help="Trace CMD (a shell command, run with the prefix's bin/ first on "
                          "PATH) and remove everything it does not use; it must exit 0, "
                          "before and after the shrink (repeatable: what any of them uses "
                          "stays)."),
        click.option("--debug", is_flag=True, expose_value=False, callback=_set_debug,
                     help="Show the traceback of an error, not only its one line."),
        click.option("--used-by-timeout", type=click.FloatRange(min=0, min_open=True),
                     default=trace.TIMEOUT, show_default=True, metavar="SECONDS",
                     help="Kill a --used-by command, and all it started, after SECONDS."),
        click.option("--target-cpu", type=click.Choice(CPU_LEVELS), metavar="LEVEL",
                     help="The oldest x86-64 level the env will run on (x86_64, x86_64_v2, "
                          "x86_64_v3, x86_64_v4, or native: this machine's): remove the "
                          "CPU-dispatched kernels (oneMKL's) no CPU at or above it loads, "
                          "and cap the dispatch there. Without it, every kernel stays."),
        click.option("--target-gpu", metavar="ARCHS",
                     help="The GPUs the env will run on (sm_90, sm_80,sm_90, none for CPUs "
                          "only, or native: this machine's): remove the device code no such "
                          "GPU runs from the libraries whose licence allows it (torch, "
                          "triton, ...; never NVIDIA's), and report it per architecture."),
        click.option("--no-ptx", is_flag=True,
                     help="With --target-gpu, also remove the PTX kept for the target "
                          "where a cubin covers it (no JIT fallback for newer GPUs)."),
    ]
    for decorate in reversed(decorators):
        func = decorate(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="shrinkconda")
def main() -> None:
    """Shrink a conda environment: remove what it does not need at run time.

    PREFIX defaults to $CONDA_PREFIX. Start with `shrinkconda audit`, which changes
    nothing and says what `shrinkconda shrink` would free.
    """


@main.command()
@_common
def audit(prefix: str | None, profile: str, only: tuple[str, ...], skip: tuple[str, ...],
          keep: tuple[str, ...], keep_locales: tuple[str, ...], strip_mode: str | None,
          no_strip: bool, python_code: str | None, jobs: int | None, conda_pack_views: bool,
          as_json: bool, quiet: bool, by: str | None, html_file: str | None, compressed: bool,
          used_by: tuple[str, ...], used_by_timeout: float, target_cpu: str | None,
          target_gpu: str | None, no_ptx: bool) -> None:
    """Say what a shrink would free, changing nothing (a dry run).

    With --used-by, the commands do run (traced), so they must be safe to run here.
    """
    options = replace(_with_used_by(_options(profile, only, skip, keep, keep_locales,
                                             strip_mode, no_strip, python_code, jobs,
                                             conda_pack_views),
                                    used_by, used_by_timeout, quiet),
                      extras=breakdown.Wanted(by == "package", html_file, compressed),
                      target_cpu=target_cpu, target_gpu=target_gpu, no_ptx=no_ptx)
    with _signals_told():
        report = _run(pipeline.audit, _prefix(prefix), options, quiet)
        _show(report, as_json, quiet)


@main.command()
@_common
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-verify", is_flag=True,
              help="Do not check that every module that imported before still imports.")
@click.option("--verify-command", "verify_commands", multiple=True, metavar="CMD",
              help="Also run CMD (with the prefix's bin/ first on PATH) after the shrink; "
                   "if it fails, the shrink is rolled back (repeatable).")
def shrink(prefix: str | None, profile: str, only: tuple[str, ...], skip: tuple[str, ...],
           keep: tuple[str, ...], keep_locales: tuple[str, ...], strip_mode: str | None,
           no_strip: bool, python_code: str | None, jobs: int | None,
           conda_pack_views: bool, as_json: bool, quiet: bool, by: str | None,
           html_file: str | None, compressed: bool,
           used_by: tuple[str, ...], used_by_timeout: float, target_cpu: str | None,
           target_gpu: str | None, no_ptx: bool, yes: bool,
           no_verify: bool,
           verify_commands: tuple[str, ...]) -> None:
    """Shrink the prefix, verify it still works, and roll back if it does not.

    Asks first only when stdin is a terminal; in a Dockerfile RUN it never waits.
    Exit status 3 means the shrink was rolled back and nothing changed.
    """
    target = _prefix(prefix)
    options = replace(_with_used_by(_options(profile, only, skip, keep, keep_locales,
                                             strip_mode, no_strip, python_code, jobs,
                                             conda_pack_views),
                                    used_by, used_by_timeout, quiet),
                      verify=not no_verify, verify_commands=verify_commands,
                      extras=breakdown.Wanted(by == "package", html_file, compressed),
                      target_cpu=target_cpu, target_gpu=target_gpu, no_ptx=no_ptx)
    with _signals_told():
        if not yes and sys.stdin.isatty():
            preview = _run(pipeline.audit, target, replace(options, extras=breakdown.Wanted(
                by == "package")), quiet)
            click.echo(render(preview), err=True)
            click.confirm(f"\nShrink {preview.prefix}?", abort=True, err=True)
        report = _run(pipeline.shrink, target, options, quiet)
        _show(report, as_json, quiet)
        if report.rolled_back:
            if quiet and not as_json:
                for broken in report.broken:
                    click.echo(f"broken: {broken.check}: {broken.error}", err=True)
            sys.exit(3)


@main.command("strategies")
def list_strategies() -> None:
    """List the strategies, built-in and from plugins."""
    try:
        available, problems = strategies.available()
    except ShrinkError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        known, profile_problems = profiles.available()
    except ShrinkError as exc:
        raise click.ClickException(str(exc)) from exc
    width = max(len(s.name) for s in available)
    for s in available:
        names = [p.name for p in known if p.runs(s.name, s.default)]
        where = f"  (profiles: {', '.join(names)})" if names else "  (in no profile)"
        origin = "" if s.origin == "built-in" else f"  [{s.origin}]"
        click.echo(f"{s.name:<{width}}  {s.summary}{where}{origin}")
    for problem in (*problems, *profile_problems):
        click.echo(f"warning: {problem.message}", err=True)


@main.command("profiles")
def list_profiles() -> None:
    """List the profiles, built-in and from plugins, with what each runs."""
    try:
        known, problems = profiles.available()
        available, strategy_problems = strategies.available()
    except ShrinkError as exc:
        raise click.ClickException(str(exc)) from exc
    for p in known:
        origin = "" if p.origin == "built-in" else f"  [{p.origin}]"
        click.echo(f"{p.name}: {p.summary}{origin}")
        runs = [s.name for s in available if p.runs(s.name, s.default)]
        click.echo(f"  strategies: {', '.join(runs)}; strip mode: {p.strip_mode}")
    for problem in (*problems, *strategy_problems):
        click.echo(f"warning: {problem.message}", err=True)


def _options(profile: str, only: tuple[str, ...], skip: tuple[str, ...],
             keep: tuple[str, ...], keep_locales: tuple[str, ...], strip_mode: str | None,
             no_strip: bool, python_code: str | None, jobs: int | None,
             conda_pack_views: bool) -> pipeline.Options:
    return pipeline.Options(
        profile=profile, only=only, skip=skip, keep=keep, keep_locales=keep_locales,
        strip_mode=None if no_strip else (strip_mode or pipeline.FROM_PROFILE), jobs=jobs,
        conda_pack_views=conda_pack_views, python_code=python_code or pipeline.FROM_PROFILE)


def _with_used_by(options: pipeline.Options, used_by: tuple[str, ...], timeout: float,
                  quiet: bool) -> pipeline.Options:
    return replace(options, used_by=used_by, used_by_timeout=timeout,
                   command_output=None if quiet else _to_stderr)


def _to_stderr(chunk: bytes) -> None:
    """A traced command's output: stderr, so stdout stays the report (``--json``)."""
    sys.stderr.flush()
    sys.stderr.buffer.write(chunk)
    sys.stderr.buffer.flush()


def _prefix(prefix: str | None) -> str:
    if prefix:
        return prefix
    env = os.environ.get("CONDA_PREFIX")
    if not env:
        raise click.UsageError("no PREFIX given and $CONDA_PREFIX is not set")
    return env


def _run(action: Callable[..., Report], prefix: str, options: pipeline.Options,
         quiet: bool) -> Report:
    """Run a library call with progress bars; turn library errors, file-system errors
    and signals into one line (and the traceback too, with ``--debug``)."""
    bars = _Bars(enabled=not quiet and sys.stderr.isatty())
    try:
        report = action(prefix, options, progress=bars.update if bars.enabled else None)
        testhooks.reached("returned")
        return report
    except (UnknownStrategyError, UnknownProfileError, UnknownCpuLevelError,
            UnknownGpuArchError) as exc:
        raise click.UsageError(str(exc)) from exc
    except Interrupted:
        raise  # for _signals_told
    except ShrinkError as exc:
        _traceback_if_debug()
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        _traceback_if_debug()
        raise click.ClickException(faults.describe(exc)) from exc
    finally:
        bars.close()


@contextmanager
def _signals_told() -> Iterator[None]:
    """From the first library call to the report's last line, SIGINT, SIGTERM and SIGHUP
    end the command with one line that says what the prefix is (shrunk, rolled back,
    untouched: what the transaction recorded when the signal came) and the status a
    shell gives a process that signal ended, 128 + signum."""
    with interrupt.handled():  # still while the message is on its way: later ones wait
        try:
            yield
        except Interrupted as exc:
            _traceback_if_debug()
            click.echo(f"Error: {exc}", err=True)
            sys.exit(128 + exc.signum)  # 130 for SIGINT, 143 for SIGTERM, as a shell says


def _traceback_if_debug() -> None:
    if click.get_current_context().meta.get(_DEBUG):
        traceback.print_exc(file=sys.stderr)


def _show(report: Report, as_json: bool, quiet: bool) -> None:
    if as_json:
        click.echo(to_json(report))
    elif not quiet:
        click.echo(render(report))
    elif report.errors:
        for problem in report.errors:
            click.echo(f"{problem.path or '.'}: {problem.message}", err=True)


class _Bars:
    """One tqdm bar per stage on stderr, opened when the stage starts."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._stage = ""
        self._bar: Any = None

    def update(self, stage: str, n: int) -> None:
        if stage != self._stage:
            from tqdm import tqdm  # type: ignore[import-untyped]  # paid only when watched

            self.close()
            self._stage = stage
            self._bar = tqdm(desc=stage, unit=" entries", file=sys.stderr, leave=False)
        self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
