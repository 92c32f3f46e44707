"""Bad input at the command line: one line on stderr naming the input and what is wrong, exit 2.

Every command runs inside `ErrorHandlingGroup.invoke` (the typer app's group class), the one
place that turns an exception into that line, so no command catches errors for display itself.
Commands only raise `InputError` where they know which input is at fault and the exception
would not say. `behavior-stream --debug <command>` lets every exception through, traceback and
all.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

EXIT_BAD_INPUT = 2  # click's code for usage errors: bad input is a usage error, wherever it shows up
EXIT_FAILURE = 1


class InputError(Exception):
    """Input the user can fix: `subject` (a file, an option, the broker) and what is wrong with it."""

    def __init__(self, subject: str, problem: str) -> None:
        super().__init__(f"{subject}: {problem}")
        self.subject = subject
        self.problem = problem


def one_line(text: str) -> str:
    """`text` on one line: its non-blank lines joined (torch, pydantic and click messages span lines)."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def describe(exc: BaseException) -> tuple[str, int]:
    """(the line to show, exit code) for an exception raised by a command."""
    if isinstance(exc, typer.TyperException):  # typer's usage errors: bad option, missing argument, ...
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        return one_line(exc.format_message()) + hint, exc.exit_code
    if isinstance(exc, InputError):
        return one_line(str(exc)), EXIT_BAD_INPUT
    if isinstance(exc, OSError) and exc.filename is not None:
        # "[Errno 2] No such file or directory: 'x'" -> "x: No such file or directory"
        return f"{exc.filename}: {exc.strerror or exc}", EXIT_BAD_INPUT
    if isinstance(exc, OSError | ValueError):
        # Files, connections, checkpoints (CheckpointError), settings (pydantic) and option values
        # (config dataclasses): all raised about what the user gave, and their messages say which.
        return one_line(str(exc)) or type(exc).__name__, EXIT_BAD_INPUT
    text = one_line(str(exc))
    return f"unexpected {type(exc).__name__}{': ' + text if text else ''} (--debug shows the traceback)", (
        EXIT_FAILURE
    )


def _debug(ctx: typer.Context) -> bool:
    return bool(ctx.params.get("debug"))


class ErrorHandlingGroup(TyperGroup):
    """The app's click group: runs the callback and the command, and reports what they raise."""

    # `ctx` is typer's vendored click Context, which typer does not export: typed loosely.
    def invoke(self, ctx: Any) -> Any:
        """Invoke the chosen command; an exception becomes one line on stderr and an exit code."""
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise  # --help, Ctrl-C and explicit exits are not errors
        except Exception as exc:
            if _debug(ctx):
                raise
            line, code = describe(exc)
            command = " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand)))
            typer.echo(f"{command}: error: {line}", err=True)
            raise typer.Exit(code) from None
