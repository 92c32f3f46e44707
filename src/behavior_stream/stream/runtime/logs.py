"""Logging for every entry point (the CLI's commands, the worker process): one format, one handler.

Our own loggers (`behavior_stream.*`) log at the chosen level; the stream libraries (Faust, mode,
aiokafka) stay at WARNING unless the level is debug, since at info they write several lines per
rebalance and commit that bury the worker's own.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("debug", "info", "warning", "error")
NOISY = ("faust", "mode", "aiokafka", "kafka")

# The name of the handler we install, so a second call finds and reuses it.
_HANDLER = "behavior_stream"


def level_number(level: str) -> int:
    """The `logging` number of one of LEVELS (case-insensitive); ValueError otherwise."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    return int(getattr(logging, level.upper()))


def configure_logging(level: str = "info") -> None:
    """Log records at `level` and above to stderr in FORMAT, the stream libraries at WARNING or above.

    Idempotent: calling it again (a command that picks its own level after the CLI's default) only
    changes the levels, so no record is ever written twice.
    """
    numeric = level_number(level)
    root = logging.getLogger()
    if not any(h.get_name() == _HANDLER for h in root.handlers):
        handler = logging.StreamHandler()
        handler.set_name(_HANDLER)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(numeric)
    noisy = numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    for name in NOISY:
        logging.getLogger(name).setLevel(noisy)
    # No logger wants records below the root level; disabling them makes the many debug calls on
    # Faust's and aiokafka's per-event paths return at the first check.
    logging.disable(numeric - 1)
