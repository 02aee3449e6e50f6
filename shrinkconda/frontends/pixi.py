"""``pixi shrink``: the ``pixi-shrink`` executable, which pixi runs for ``pixi shrink``.

It shrinks an environment of the pixi project in the current directory or above
(``.pixi/envs/<name>``, ``-e/--environment`` as in pixi's own commands), or an explicit
prefix, with every option of ``shrinkconda shrink``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from shrinkconda import frontends

DEFAULT_ENVIRONMENT = "default"


def project_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` with a pixi manifest: ``pixi.toml``,
    or a ``pyproject.toml`` with a ``[tool.pixi...]`` table."""
    for directory in (start, *start.parents):
        if (directory / "pixi.toml").is_file():
            return directory
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file() and "[tool.pixi" in pyproject.read_text(errors="replace"):
            return directory
    return None


def environment_prefix(environment: str, manifest_path: str | None, cwd: Path) -> Path:
    """The prefix of the project's ``environment``; a usage error naming what is
    missing when there is no project or the environment is not installed."""
    if manifest_path:
        manifest = Path(manifest_path)
        root: Path | None = manifest if manifest.is_dir() else manifest.parent
    else:
        root = project_root(cwd.resolve())
    if root is None:
        raise click.UsageError(f"no pixi project (pixi.toml, or pyproject.toml with "
                               f"[tool.pixi]) in {cwd} or above: run it in the project, or "
                               "give --manifest-path or a PREFIX")
    prefix = root.resolve() / ".pixi" / "envs" / environment
    if not (prefix / "conda-meta").is_dir():
        raise click.UsageError(f"the environment {environment!r} of {root} is not installed "
                               f"({prefix}): run 'pixi install -e {environment}' first")
    return prefix


def _run(prefix: str | None, environment: str | None, manifest_path: str | None,
         dry_run: bool, **values: Any) -> None:
    if prefix and (environment or manifest_path):
        raise click.UsageError("give a PREFIX, or -e/--environment and --manifest-path, "
                               "not both")
    target = prefix or str(environment_prefix(environment or DEFAULT_ENVIRONMENT,
                                              manifest_path, Path(os.getcwd())))
    status = frontends.run(frontends.command_line(values, dry_run, target), "pixi shrink")
    click.get_current_context().exit(status)


main = click.Command(
    name="pixi-shrink",
    callback=_run,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=("Shrink an environment of the pixi project here or above: remove what it does "
          "not need at run time (shrinkconda). PREFIX, if given, is shrunk instead. Exit "
          "status 3: the shrink broke something and was rolled back."),
    params=[
        click.Argument(["prefix"], required=False, type=click.Path(file_okay=False)),
        click.Option(["-e", "--environment"], metavar="NAME",
                     help=f"The project's environment to shrink [default: "
                          f"{DEFAULT_ENVIRONMENT}]."),
        click.Option(["--manifest-path"], metavar="PATH",
                     help="The project's pixi.toml or pyproject.toml (or its directory) "
                          "[default: found in the current directory or above]."),
        click.Option(["--dry-run"], is_flag=True,
                     help="Only say what a shrink would free (shrinkconda audit); change "
                          "nothing."),
        *frontends.options(),
    ],
)
"""The ``pixi-shrink`` command."""
