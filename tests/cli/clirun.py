"""Run `behavior-stream` as a real subprocess with pipes (not a terminal), as a user or a log would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

# A record written by configure_logging: "2026-01-01 12:00:00,000 LEVEL name: message".
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ")


def run_cli(args: list[str], cwd: Path, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """`behavior-stream ARGS` in `cwd`, stdout and stderr captured; no BEHAVIOR_STREAM_* settings
    leak in from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEHAVIOR_STREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "behavior_stream.cli.main", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def non_log_lines(text: str) -> list[str]:
    """The lines of `text` that are not part of a log record: records may span lines (faiss logs
    an exception text under one), so a line after a record is its continuation unless it is the
    CLI's own output."""
    out: list[str] = []
    in_record = False
    for line in text.splitlines():
        if LOG_LINE.match(line):
            in_record = True
        elif in_record and not line.startswith("behavior-stream "):
            continue
        elif line.strip():
            in_record = False
            out.append(line)
    return out
