"""Option parsing shared by the CLI commands."""

from __future__ import annotations

from typing import Annotated, cast

import typer

from behavior_stream.data.loaders import FORMATS, Format

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
