"""``conda shrink``: shrinkconda as a conda subcommand plugin.

conda loads this module through the ``conda`` entry-point group (conda 26.3.1 and
later run no ``conda-NAME`` executables); nothing else imports it, so shrinkconda needs
no conda unless conda is the one asking. It follows conda's conventions (``-n NAME`` /
``-p PATH``, the active env by default, ``--dry-run``, ``--json``, ``-y``) and takes
every option of ``shrinkconda shrink`` as it is.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from typing import Any

import click
from conda import exceptions
from conda.base.context import locate_prefix_by_name
from conda.cli.helpers import add_parser_prefix
from conda.exceptions import ArgumentError
from conda.plugins import hookimpl
from conda.plugins.types import CondaSubcommand

from shrinkconda import cli, frontends

NAME = "shrink"
SUMMARY = "Shrink an environment: remove what it does not need at run time (shrinkconda)."


@hookimpl
def conda_subcommands() -> Iterator[CondaSubcommand]:
    """Register ``conda shrink``."""
    yield CondaSubcommand(name=NAME, summary=SUMMARY, action=action,
                          configure_parser=configure_parser)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """conda's own ``-n``/``-p`` and ``--dry-run``, then shrinkconda's options, each
    made from the ``shrinkconda shrink`` option of the same name."""
    parser.description = (f"{SUMMARY}\n\nWithout -n or -p, the active environment. "
                          "Exit status 3: the shrink broke something and was rolled back.")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_parser_prefix(parser)
    parser.add_argument("-d", "--dry-run", action="store_true",
                        help="Only say what a shrink would free (shrinkconda audit); "
                             "change nothing.")
    group = parser.add_argument_group("Shrink Options (shrinkconda shrink --help)")
    ctx = click.Context(cli.shrink, info_name="conda shrink")
    for option in frontends.options():
        group.add_argument(*option.opts, **_argparse(option, ctx))


def _argparse(option: click.Option, ctx: click.Context) -> dict[str, Any]:
    record = option.get_help_record(ctx)
    kwargs: dict[str, Any] = {"dest": option.name,
                              "help": record[1].replace("%", "%%") if record else None}
    if option.is_flag:
        kwargs["action"] = "store_true"
        return kwargs
    if isinstance(option.type, click.Choice):
        kwargs["choices"] = list(option.type.choices)
    else:
        kwargs["metavar"] = option.metavar or str(option.name).upper()
    if option.multiple:
        kwargs["action"] = "append"
    return kwargs


def action(args: argparse.Namespace) -> int:
    """Run ``shrinkconda audit`` (``--dry-run``) or ``shrinkconda shrink`` on the
    environment conda's arguments name."""
    argv = frontends.command_line(vars(args), args.dry_run, target_prefix(args))
    return frontends.run(argv, prog_name="conda shrink")


def target_prefix(args: argparse.Namespace) -> str:
    """``-p PATH``, the env named by ``-n NAME``, or the active env; never a default
    that was not asked for (conda's own would be the base env)."""
    if args.prefix:
        return os.path.abspath(os.path.expanduser(args.prefix))
    if args.name:
        try:
            return str(locate_prefix_by_name(args.name))
        except exceptions.EnvironmentNameNotFound:
            raise EnvironmentNameNotFound(args.name) from None
    active = os.environ.get("CONDA_PREFIX")
    if not active:
        raise ArgumentError("no active environment to shrink: activate one, "
                            "or name it with -n ENVIRONMENT or -p PATH")
    return active


class EnvironmentNameNotFound(exceptions.EnvironmentNameNotFound):  # type: ignore[misc]
    """conda's own error, on one line: ``conda info --envs`` is in the message."""

    def __init__(self, name: str) -> None:
        exceptions.CondaError.__init__(
            self, "Could not find conda environment: %(environment_name)s "
                  "(conda info --envs lists them)", environment_name=name)
