"""Progress output when nobody watches a terminal: a bounded number of log lines, no redraw flood."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from behavior_stream.data.loaders import write_jsonl
from behavior_stream.simulate.generator import generate
from behavior_stream.testing.broker import EmbeddedBroker
from behavior_stream.training.progress import Progress
from tests.cli.clirun import run_cli


class FakeClock:
    """A clock the test moves by hand (no waiting, no timing)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_progress_logs_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="behavior_stream.training.progress")
    with Progress(1000, "replay", "ev", every_s=10.0, final_line=True, bar=False, clock=clock) as bar:
        for done in range(1, 1001):
            clock.now = done * 0.035  # 1000 updates over 35 s
            bar.postfix(at=done)
            bar.update(done)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines  # at 10, 20 and 30 s, and the final line
    assert lines[-1] == "replay: 1,000/1,000 ev (100%), at 1000"


def test_disabled_progress_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="behavior_stream.training.progress")
    with Progress(10, "epoch 1", enabled=False, final_line=True, bar=False, clock=clock) as bar:
        clock.now = 100.0
        bar.update(10)
    assert [r for r in caplog.records if r.name == "behavior_stream.training.progress"] == []


def test_train_through_pipes_logs_a_line_per_epoch(tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    write_jsonl(generate(users=40, items=80, events=2_500, seed=2).events, data)
    args = [
        str(data),
        "--out",
        "m.pt",
        "--epochs",
        "3",
        "--patience",
        "5",
        "--hidden",
        "16",
        "--threads",
        "1",
    ]
    result = run_cli(["train", *args], tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "\r" not in output  # no bar redraws
    assert "batch/s" not in output and "it/s" not in output
    epoch_logs = [ln for ln in result.stderr.splitlines() if "behavior_stream.training.loop: epoch " in ln]
    assert len(epoch_logs) == 3, result.stderr
    # Each epoch: its summary line, and at most one progress line per 30 s of it.
    assert len(result.stderr.splitlines()) <= 12, result.stderr


def test_replay_through_pipes_does_not_flood(broker: EmbeddedBroker, tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    write_jsonl(generate(users=50, items=60, events=20_000, seed=3).events, data)
    result = run_cli(["replay", str(data), "--broker", broker.url, "--topic", "progress-replay"], tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "\r" not in output
    assert "sent 20,000 events" in result.stdout
    # 10 chunks of 2,000: a bar would redraw for each; here at most a line per 10 s of replay.
    progress = [ln for ln in result.stderr.splitlines() if "behavior_stream.training.progress" in ln]
    assert len(progress) <= 3, result.stderr
