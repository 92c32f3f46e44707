"""`behavior-stream train` end to end on a small generated file: checkpoint, sidecar, summary, errors."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from behavior_stream.cli.train import train_command
from behavior_stream.data.loaders import write_jsonl
from behavior_stream.nn.checkpoint import load_checkpoint, sidecar_path
from behavior_stream.simulate.generator import generate


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(train_command)
    return app


def test_train_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    write_jsonl(generate(users=40, items=80, events=2_500, seed=2).events, data)
    out = tmp_path / "lstm.pt"
    args = [
        str(data),
        "--cell",
        "lstm",
        "--out",
        str(out),
        "--epochs",
        "2",
        "--hidden",
        "16",
        "--threads",
        "1",
        "--no-progress",
        "--seed",
        "5",
    ]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 0, result.output
    assert sidecar_path(out).exists()
    loaded = load_checkpoint(out)
    assert loaded.config.cell == "lstm" and loaded.config.hidden_size == 16
    assert loaded.metadata["dataset"]["path"] == str(data)
    assert loaded.metadata["seed"] == 5 and len(loaded.metadata["history"]) >= 1
    assert f"trained {loaded.model_version}" in result.output and "test: recall@20" in result.output


def test_train_rejects_unknown_choices(tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    data.write_text("")
    for flag, value in (("--cell", "rnn"), ("--format", "csv"), ("--monitor", "auc")):
        result = CliRunner().invoke(cli(), [str(data), flag, value])
        assert result.exit_code != 0
        assert value in result.output
