"""`behavior-stream compare` and `evaluate --probes` end to end on saved checkpoints and JSONL files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import typer
from typer.testing import CliRunner

from behavior_stream.cli.compare import compare_command
from behavior_stream.cli.evaluate import evaluate_command
from behavior_stream.data.loaders import write_jsonl
from behavior_stream.nn.checkpoint import save_checkpoint
from tests.cli.test_evaluate import events_file, refused, trained_checkpoint
from tests.probekit import CATEGORIES, history_and_test
from tests.seqkit import small_model, tiny_vocab


def app_with(command: Callable[..., None]) -> typer.Typer:
    app = typer.Typer()
    app.command()(command)
    return app


def files(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """History and test JSONL files, and a GRU and an LSTM checkpoint (with item categories)."""
    history, test = history_and_test()
    write_jsonl(history, tmp_path / "history.jsonl")
    write_jsonl(test, tmp_path / "test.jsonl")
    vocab = tiny_vocab()
    for cell in ("gru", "lstm"):
        model = small_model(vocab, cell=cell)
        save_checkpoint(tmp_path / f"{cell}.pt", model, vocab, {"note": "untrained"}, CATEGORIES)
    return tmp_path / "history.jsonl", tmp_path / "test.jsonl", tmp_path / "gru.pt", tmp_path / "lstm.pt"


def test_compare_prints_a_table_and_writes_compare_json(tmp_path: Path) -> None:
    history, test, gru, lstm = files(tmp_path)
    out = tmp_path / "cmp"
    args = [str(gru), str(lstm), str(history), "--test", str(test), "--k", "5", "10", "--out", str(out)]
    result = CliRunner().invoke(app_with(compare_command), [*args, "--n-bootstrap", "50", "--knn-k", "5"])
    assert result.exit_code == 0, result.output
    doc = orjson.loads((out / "compare.json").read_bytes())
    assert doc["a"]["cell"] == "gru" and doc["b"]["cell"] == "lstm"
    assert doc["protocol"]["ks"] == [5, 10] and doc["protocol"]["difference"] == "B - A"
    metrics = {(r["group"], r["metric"]) for r in doc["rows"]}
    assert {("next item", "recall@10"), ("probe category", "accuracy"), ("geometry", "uniformity")} <= metrics
    assert doc["b"]["probes"]["category"]["classes"] == 3  # categories came from the checkpoints
    assert "| next item | recall@5 |" in result.output and "B - A" in result.output


def test_evaluate_with_probes_adds_the_section_and_the_report(tmp_path: Path) -> None:
    history, test, gru, _ = files(tmp_path)
    out = tmp_path / "eval"
    args = [str(history), "--test", str(test), "--checkpoint", str(gru), "--baselines", "none"]
    result = CliRunner().invoke(app_with(evaluate_command), [*args, "--probes", "--out", str(out)])
    assert result.exit_code == 0, result.output
    probes = orjson.loads((out / "metrics.json").read_bytes())["probes"]
    assert probes["purchase"]["n"] == 39 and set(probes) >= {"category", "length", "geometry", "stability"}
    report = (out / "report.md").read_text()
    assert "## Representations" in report and "| purchase in next session | 39 |" in report
    without = CliRunner().invoke(app_with(evaluate_command), [str(history), "--test", str(test), "--probes"])
    assert without.exit_code != 0 and "needs --checkpoint" in without.output


def test_compare_refuses_a_test_split_either_checkpoint_trained_on(tmp_path: Path) -> None:
    data = events_file(tmp_path)
    held_out = trained_checkpoint(tmp_path, data, test_frac=0.2, name="a.pt")
    demo_like = trained_checkpoint(tmp_path, data, test_frac=0.0, name="b.pt")
    out = tmp_path / "cmp"
    # A's split (test fraction 0.2) is reused; B was fitted on all of DATA, its test part included.
    refused(["compare", str(held_out), str(demo_like), str(data), "--out", str(out)], "overlaps", "b.pt")
    # Reversed, B's split is empty: the line names the checkpoint and the option.
    refused(
        ["compare", str(demo_like), str(held_out), str(data)], "test split is empty", "b.pt", "--test-frac"
    )
    assert not out.exists()


def test_compare_refuses_test_sequences_without_a_prediction(tmp_path: Path) -> None:
    history, _, gru, lstm = files(tmp_path)
    # One test event per user: nothing follows it to be predicted.
    _, test = history_and_test()
    write_jsonl(list({e.user_id: e for e in reversed(test)}.values()), tmp_path / "single.jsonl")
    args = ["compare", str(gru), str(lstm), str(history), "--test", str(tmp_path / "single.jsonl")]
    refused(args, "0 next-item predictions for", "gru.pt", "--test-frac")
