"""`behavior-stream demo` end to end, as `make demo` runs it, on a small slice of the Taobao sample:
it starts its own broker, trains, replays with bad records and re-sends, prints the summary and
exits 0 having stopped everything it started."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from behavior_stream.data.loaders import write_jsonl
from behavior_stream.schema.events import Event

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]

REPLAYED = re.compile(
    r"replayed ([\d,]+) records: ([\d,]+) events processed, ([\d,]+) invalid \(-> DLQ\), ([\d,]+) duplicates"
)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_demo_runs_end_to_end_and_accounts_for_every_record(
    tmp_path: Path, taobao_events: list[Event]
) -> None:
    data = tmp_path / "taobao-slice.jsonl"
    write_jsonl(taobao_events[:8_000], data)
    workdir = tmp_path / "demo"
    cmd = [sys.executable, "-m", "behavior_stream.cli.main", "demo", "--data", str(data), "--format", "jsonl"]
    cmd += ["--epochs", "1", "--workdir", str(workdir), "--web-port", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=540, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    assert "behavior-stream demo: summary" in out
    match = REPLAYED.search(out)
    assert match, out
    records, applied, invalid, duplicates = (number(g) for g in match.groups())
    # Every replayed record is accounted for: applied, dead-lettered or skipped as a re-send.
    assert applied > 0 and invalid > 0 and duplicates > 0
    assert applied + invalid + duplicates == records
    assert "offline (same model)" in out and "feed of user" in out
