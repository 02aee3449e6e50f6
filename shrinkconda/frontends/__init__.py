"""Front-ends that run shrinkconda's own commands from other tools: ``conda shrink`` (a
conda plugin) and ``pixi shrink`` (a ``pixi-shrink`` executable).

They take the ``shrinkconda shrink`` command's options as they are, decide the prefix
the way their tool does, and hand over to the ``audit`` or ``shrink`` command, so the
output, the exit statuses and the options stay those of ``shrinkconda``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

from shrinkconda import cli


def options() -> list[click.Option]:
    """The options of ``shrinkconda shrink`` (which has every option of ``audit``)."""
    return [p for p in cli.shrink.params if isinstance(p, click.Option)]


def command_line(values: Mapping[str, Any], dry_run: bool, prefix: str) -> list[str]:
    """``shrinkconda`` arguments for the option values ``values`` (by parameter name; a
    missing or ``None`` value, or an unset flag, leaves the option out): ``audit`` for
    a dry run (without the options only ``shrink`` has), else ``shrink``."""
    command = cli.audit if dry_run else cli.shrink
    known = {p.name for p in command.params}
    argv: list[str] = [str(command.name)]
    for option in options():
        value = values.get(option.name or "")
        if option.name not in known or value is None or value is False:
            continue
        name = next(o for o in option.opts if o.startswith("--"))
        if option.is_flag:
            argv.append(name)
        elif option.multiple:
            argv += [f"{name}={item}" for item in value]
        else:
            argv.append(f"{name}={value}")
    return [*argv, "--", prefix]


def run(argv: Sequence[str], prog_name: str) -> int:
    """Run ``shrinkconda ARGV`` in this process; returns its exit status."""
    try:
        cli.main.main(args=list(argv), prog_name=prog_name, standalone_mode=False)
    except click.UsageError as exc:  # one line, as argparse (conda) says it
        click.echo(f"{prog_name}: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    except SystemExit as exc:  # the shrink was rolled back: 3
        return exc.code if isinstance(exc.code, int) else 1
    return 0
