"""`behavior-stream tune` end to end on a small generated file, and `train --config` reading its result."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from behavior_stream.cli.train import train_command
from behavior_stream.cli.tune import tune_command
from behavior_stream.data.loaders import write_jsonl
from behavior_stream.nn.checkpoint import load_checkpoint
from behavior_stream.simulate.generator import generate
from tests.cli.clirun import non_log_lines, run_cli
from tests.cli.test_imports import loaded
from tests.cli.test_imports import run_cli as run_counting_imports


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tune") / "events.jsonl"
    write_jsonl(generate(users=40, items=80, events=2_500, seed=2).events, path)
    return path


def invoke(*args: str) -> str:
    """Run `tune` or `train` in-process (without the app's callback, which would configure logging
    onto the runner's stream); the output of a successful run."""
    app = typer.Typer()
    app.command("tune")(tune_command)
    app.command("train")(train_command)
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_tune_writes_a_config_that_train_reproduces(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    output = invoke(
        "tune", str(data), "--trials", "3", "--max-epochs", "2", "--out", str(out), "--threads", "1"
    )
    with (out / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["number"] for row in rows] == ["0", "1", "2"]
    assert {"state", "value", "seconds", "hidden_size", "lr", "batch_size"} <= set(rows[0])
    assert all(row["state"] in ("complete", "pruned") for row in rows)
    best = json.loads((out / "best.json").read_text())
    tuned = best["tuned"]
    assert f"best trial {tuned['trial']} of 3" in output
    assert tuned["value"] == max(float(row["value"]) for row in rows if row["state"] == "complete")

    model = tmp_path / "best.pt"
    invoke("train", str(data), "--config", str(out / "best.json"), "--out", str(model), "--no-progress",
           "--threads", "1")  # fmt: skip
    checkpoint = load_checkpoint(model)
    assert checkpoint.config.to_dict() == best["model"]
    assert {k: checkpoint.metadata["train_config"][k] for k in best["train"]} == best["train"]
    # Same split, seed and settings: the validation figure of the best trial, to the last digit.
    assert checkpoint.metadata["valid"]["recall@20"] == pytest.approx(tuned["value"], abs=1e-9)


def test_explicit_options_override_the_config_file(data: Path, tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"model": {"hidden_size": 24, "item_dim": 8}, "train": {"epochs": 3}}))
    model = tmp_path / "m.pt"
    invoke("train", str(data), "--config", str(settings), "--hidden", "16", "--epochs", "1",
           "--out", str(model), "--no-progress", "--threads", "1")  # fmt: skip
    checkpoint = load_checkpoint(model)
    assert (checkpoint.config.hidden_size, checkpoint.config.item_dim) == (16, 8)
    assert checkpoint.metadata["train_config"]["epochs"] == 1


def test_the_budget_stops_the_search(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    invoke("tune", str(data), "--trials", "1000", "--budget-s", "1", "--max-epochs", "1",
           "--out", str(out), "--threads", "1")  # fmt: skip
    tuned = json.loads((out / "best.json").read_text())["tuned"]
    # Trials of one epoch take well under a second here: a few start within the budget, then none.
    assert 1 <= tuned["trials"] < 100 and tuned["seconds"] < 20
    assert len((out / "trials.csv").read_text().splitlines()) == tuned["trials"] + 1


def one_error_line(args: list[str], cwd: Path, command: str) -> str:
    result = run_cli(args, cwd)
    assert result.returncode == 2, result.stderr
    lines = non_log_lines(result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"behavior-stream {command}: error: ")
    return lines[0]


def test_bad_options_and_files_are_one_line_and_exit_2(data: Path, tmp_path: Path) -> None:
    assert "auc" in one_error_line(["tune", str(data), "--metric", "auc"], tmp_path, "tune")
    assert "--trials" in one_error_line(["tune", str(data), "--trials", "0"], tmp_path, "tune")
    assert "missing.jsonl" in one_error_line(["tune", "missing.jsonl"], tmp_path, "tune")
    line = one_error_line(["tune", str(data), "--budget-s", "0"], tmp_path, "tune")
    assert "--budget-s" in line and "no trial completed" in line
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"model": {"hiden_size": 8}, "optimizer": {}}))
    line = one_error_line(["train", str(data), "--config", str(typo)], tmp_path, "train")
    assert "model.hiden_size" in line and "optimizer" in line
    typo.write_text(json.dumps({"train": {"epochs": "three"}}))
    assert "train.epochs" in one_error_line(["train", str(data), "--config", str(typo)], tmp_path, "train")


def test_tune_help_imports_neither_optuna_nor_torch() -> None:
    done, modules = run_counting_imports("tune", "--help")
    assert done.returncode == 0 and "--budget-s" in done.stdout, done.stderr
    assert not loaded(modules, "optuna") and not loaded(modules, "torch")
