"""The ``--config FILE`` (TOML): defaults for a command's options, keyed by their long names.

The keys are the options' long names without dashes in front (``profile``, ``skip``,
``strip-mode``, ``verify-command``, ``no-strip``), so every option a command has can be
set, and a new option needs no change here. The command line overrides the file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from shrinkconda.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # the zipapp runs on the environment's python, 3.9 or later
    from shrinkconda._vendor import tomli as tomllib

FLAG, LIST, VALUE = "flag", "list", "value"


@dataclass(frozen=True)
class Setting:
    """One option a config key can set."""

    key: str
    """The key in the file: the option's long name (``strip-mode``)."""
    name: str
    """The command's parameter it sets (``strip_mode``)."""
    kind: str
    """:data:`FLAG` (a boolean), :data:`LIST` (a repeatable option) or :data:`VALUE`."""
    convert: Callable[[Any], Any]
    """Checks and converts one value; raises ``TypeError`` or ``ValueError`` saying what
    is wrong."""


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file's keys and values; :class:`ConfigError` if it is unreadable or not TOML."""
    try:
        with open(path, "rb") as f:
            doc: dict[str, Any] = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return doc


def resolve(doc: Mapping[str, Any], settings: Sequence[Setting], path: str,
            elsewhere: Collection[str] = ()) -> dict[str, Any]:
    """Parameter name -> value for each key of ``doc``.

    Keys in ``elsewhere`` belong to another command of the same program (a file shared
    by ``audit`` and ``shrink`` may say ``verify-command``) and are skipped; any other
    unknown key, and any value of the wrong type, is a :class:`ConfigError` naming it.
    """
    by_key = {s.key: s for s in settings}
    values: dict[str, Any] = {}
    for key, value in doc.items():
        setting = by_key.get(key)
        if setting is None:
            if key in elsewhere:
                continue
            known = ", ".join(sorted(by_key))
            raise ConfigError(f"{path}: unknown key {key!r}; the keys are the long option "
                              f"names: {known}")
        values[setting.name] = _value(setting, value, path)
    return values


def _value(setting: Setting, value: Any, path: str) -> Any:
    where = f"{path}: key {setting.key!r}"
    if setting.kind == FLAG:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {_shown(value)}")
        return value
    if setting.kind == LIST:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, e.g. {setting.key} = [\"...\"], "
                              f"not {_shown(value)}")
        return tuple(_scalar(setting, item, where) for item in value)
    return _scalar(setting, value, where)


def _scalar(setting: Setting, value: Any, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where} must be a string or a number, not {_shown(value)}")
    try:
        return setting.convert(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _shown(value: Any) -> str:
    kinds = {bool: "a boolean", str: "a string", int: "an integer", float: "a number",
             list: "a list", dict: "a table"}
    return f"{kinds.get(type(value), type(value).__name__)} ({value!r})"
