"""Option parsing shared by the CLI commands."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, cast

import typer

from behavior_stream.data.loaders import FORMATS, Format

if TYPE_CHECKING:  # the settings module imports the stream's core: not at CLI start-up
    from behavior_stream.stream.runtime.settings import Settings

# Options that several commands take with the same meaning: one declaration each.
ValidFracOption = Annotated[float, typer.Option(help="Share of events (by time) for validation.")]
SplitUnitOption = Annotated[
    str | None, typer.Option(help="event|sequence; default: sequence for session formats.")
]


def parse_format(fmt: str) -> Format:
    """The `--format` value as a loader format, or a usage error naming the choices."""
    if fmt not in FORMATS:
        raise typer.BadParameter(
            f"unknown format {fmt!r}; one of {', '.join(FORMATS)}", param_hint="--format"
        )
    return cast(Format, fmt)


def positive(value: float | None, option: str) -> float | None:
    """`value` when unset or a positive finite number; otherwise a usage error naming `option`."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a positive number, got {value}", param_hint=option)
    return value


def load_flag_settings(**flags: object) -> Settings:
    """`load_settings(**flags)`, where a bad flag value is a usage error naming the flag.

    A bad value from the environment keeps the message of `SettingsError`, which names the variable.
    """
    from behavior_stream.stream.runtime.settings import SettingsError, load_settings

    try:
        return load_settings(**flags)
    except SettingsError as exc:
        if exc.from_env or flags.get(exc.setting) is None:
            raise
        raise typer.BadParameter(exc.problem, param_hint=f"--{exc.setting.replace('_', '-')}") from None
