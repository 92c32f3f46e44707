"""Option parsing shared by the CLI commands."""

from __future__ import annotations

from typing import cast

import typer

from behavior_stream.data.loaders import FORMATS, Format


def parse_format(fmt: str) -> Format:
    """The `--format` value as a loader format, or a usage error naming the choices."""
    if fmt not in FORMATS:
        raise typer.BadParameter(
            f"unknown format {fmt!r}; one of {', '.join(FORMATS)}", param_hint="--format"
        )
    return cast(Format, fmt)
