"""`evaluate --scenarios` end to end on generated data: a real (tiny) training run writes the
scenario side data into the checkpoint, and the evaluation reports every scenario beside its baseline."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from typer.testing import CliRunner

from behavior_stream.cli.evaluate import evaluate_command
from behavior_stream.data.loaders import write_jsonl
from behavior_stream.nn.checkpoint import load_checkpoint, save_checkpoint
from behavior_stream.nn.config import ModelConfig
from behavior_stream.simulate.generator import generate
from behavior_stream.training.config import TrainConfig
from behavior_stream.training.loop import train_model


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(evaluate_command)
    return app


def test_scenarios_beside_their_baselines(tmp_path: Path) -> None:
    data = generate(300, 150, 8_000, seed=3)
    path = tmp_path / "events.jsonl"
    write_jsonl(data.events, path)
    config = ModelConfig(hidden_size=16, item_dim=16, query_buckets=256, repeat_window=8, repeat_dim=8)
    result = train_model(data.events, config, TrainConfig(epochs=1, threads=1, progress=False, batch_size=64))
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, result.model, result.vocab, result.metadata, result.categories)
    meta = load_checkpoint(checkpoint).metadata  # weights_only loading of the side data
    assert meta["purchase_calibration"]["method"] == "platt" and meta["purchase_calibration"]["n"] > 0
    assert meta["bought_together"]["pairs"], "the generator's shoppers cart and buy together"

    out = tmp_path / "eval"
    args = [
        str(path),
        "--checkpoint",
        str(checkpoint),
        "--baselines",
        "pop",
        "--scenarios",
        "--n-bootstrap",
        "50",
    ]
    run = CliRunner().invoke(cli(), [*args, "--out", str(out)])
    assert run.exit_code == 0, run.output
    scenarios = orjson.loads((out / "metrics.json").read_bytes())["scenarios"]
    assert set(scenarios) == {"search", "cart", "related", "purchase_intent"}
    for name in ("search", "related"):
        row = scenarios[name]
        assert row["predictions"] > 0 and row["baseline"]
        low, high = row["hit@20"]["ci95"]
        assert low <= row["hit@20"]["difference"] <= high
    intent = scenarios["purchase_intent"]
    assert intent["calibration"] == "platt" and len(intent["calibration_curve"]) == 10
    assert sum(b["n"] for b in intent["calibration_curve"]) == intent["predictions"]
    report = (out / "report.md").read_text()
    assert "## Shopping scenarios" in report and "| search | hit@20 |" in report
    assert "| scenario | metric |" in run.output

    bad = CliRunner().invoke(cli(), [*args, "--cart-horizon", "week", "--out", str(out)])
    assert bad.exit_code != 0 and "--cart-horizon" in bad.output
