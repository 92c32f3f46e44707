"""`behavior-stream evaluate` end to end: a GRU4Rec split vs the reference protocol, checkpoints, errors."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson
import pytest
import typer
from typer.testing import CliRunner

from behavior_stream.cli.compare import compare_command
from behavior_stream.cli.errors import ErrorHandlingGroup
from behavior_stream.cli.evaluate import evaluate_command
from behavior_stream.data.loaders import load_events, write_jsonl
from behavior_stream.data.splits import EvalSequence
from behavior_stream.evaluation.baselines import FirstOrderMarkov
from behavior_stream.nn.checkpoint import save_checkpoint
from behavior_stream.nn.config import ModelConfig
from behavior_stream.schema.events import EventType, make_event
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.training.config import TrainConfig
from behavior_stream.training.loop import train_model
from tests import probekit
from tests.cli.clirun import non_log_lines, run_cli
from tests.streamkit import make_checkpoint

T0 = 1_500_000_000  # seconds, as GRU4Rec files store time


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(evaluate_command)
    return app


def write_gru4rec(path: Path, sessions: dict[int, list[str]], start: int) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f, delimiter="\t")
        out.writerow(["SessionId", "ItemId", "Time"])
        for sid, items in sessions.items():
            for i, item in enumerate(items):
                out.writerow([sid, item, start + sid * 1000 + i * 10])


def gru4rec_split(tmp_path: Path) -> tuple[Path, Path]:
    """Sessions walking a ring of items (so transitions carry signal), with test-only items sprinkled in."""
    rng = np.random.default_rng(4)

    def session(n: int, unseen: float) -> list[str]:
        pos = int(rng.integers(40))
        items = []
        for _ in range(n):
            items.append(f"new{rng.integers(5)}" if rng.random() < unseen else str(pos))
            pos = (pos + int(rng.integers(1, 3))) % 40
        return items

    train = {sid: session(int(rng.integers(2, 9)), 0.0) for sid in range(300)}
    test = {sid: session(int(rng.integers(1, 9)), 0.15) for sid in range(300, 360)}
    write_gru4rec(tmp_path / "train.tsv", train, T0)
    write_gru4rec(tmp_path / "test.tsv", test, T0 + 10**6)
    return tmp_path / "train.tsv", tmp_path / "test.tsv"


def reference_recall_mrr(train: Path, test: Path, k: int) -> tuple[float, float, int]:
    """GRU4Rec's reference loop: drop test rows with items not in train, then rank each next item of each
    session among all train items, rank = number of items scoring >= the target (its `conservative` mode)."""
    train_events = load_events(train, "gru4rec").events
    vocab = ItemVocab.build(e.item_id for e in train_events)
    scorer = FirstOrderMarkov().fit(train_events, vocab)
    sessions: dict[str, list[tuple[float, str]]] = defaultdict(list)
    with test.open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if vocab.index(row["ItemId"]) is not None:
                sessions[row["SessionId"]].append((float(row["Time"]), row["ItemId"]))
    hits = rr = n = 0.0
    for sid, rows in sessions.items():
        items = [item for _, item in sorted(rows)]
        events = tuple(
            make_event(sid, EventType.CLICK, T0 * 1000 + i, item_id=it) for i, it in enumerate(items)
        )
        for t in range(1, len(items)):
            scores = scorer.score_sequence(EvalSequence(sid, (), events), [t])[0]
            rank = int((scores >= scores[vocab.index(items[t])]).sum())
            hits += rank <= k
            rr += 1 / rank if rank <= k else 0.0
            n += 1
    return hits / n, rr / n, int(n)


def test_gru4rec_split_matches_the_reference_protocol(tmp_path: Path) -> None:
    train, test = gru4rec_split(tmp_path)
    out = tmp_path / "eval"
    args = [str(train), "--format", "gru4rec", "--test", str(test), "--k", "5", "10", "20"]
    result = CliRunner().invoke(
        cli(), [*args, "--baselines", "pop,markov", "--out", str(out), "--n-bootstrap", "50"]
    )
    assert result.exit_code == 0, result.output
    metrics = orjson.loads((out / "metrics.json").read_bytes())
    recall, mrr, n = reference_recall_mrr(train, test, 20)
    assert metrics["counts"]["predictions"] == n
    assert metrics["counts"]["skipped_unseen_targets"] == 0
    assert metrics["counts"]["dropped_unseen_events"] > 0
    assert metrics["next_item"]["markov"]["recall@20"] == recall
    assert metrics["next_item"]["markov"]["mrr@20"] == pytest.approx(mrr, rel=1e-12)  # summation order
    assert metrics["protocol"]["ks"] == [5, 10, 20]
    report = (out / "report.md").read_text()
    assert "GRU4Rec compatibility" in report and "| markov |" in report
    assert (out / "metric_at_k.png").stat().st_size > 0 and (out / "metric_by_length.png").exists()
    assert "| markov |" in result.output  # the table is printed

    # Without the compatibility switch unseen targets are skipped and their events stay in the prefix.
    skip = tmp_path / "skip"
    result = CliRunner().invoke(
        cli(), [*args, "--baselines", "markov", "--out", str(skip), "--no-gru4rec-compat"]
    )
    assert result.exit_code == 0, result.output
    counts = orjson.loads((skip / "metrics.json").read_bytes())["counts"]
    assert counts["skipped_unseen_targets"] > 0 and counts["dropped_unseen_events"] == 0


def test_checkpoint_evaluation_scores_model_and_purchases(tmp_path: Path) -> None:
    train, test = gru4rec_split(tmp_path)
    items = ItemVocab.build(e.item_id for e in load_events(train, "gru4rec").events).items
    checkpoint = make_checkpoint(tmp_path / "model.pt", list(items), seed=0)
    out = tmp_path / "eval"
    args = [str(train), "-f", "gru4rec", "--test", str(test), "--checkpoint", str(checkpoint)]
    result = CliRunner().invoke(cli(), [*args, "--baselines", "none", "--k", "10,20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = orjson.loads((out / "metrics.json").read_bytes())
    assert list(metrics["next_item"]) == ["gru"]
    assert set(metrics["purchase"]) == {"gru", "base-rate"}
    assert metrics["dataset"]["model_version"].startswith("gru-")
    assert 0.0 <= metrics["next_item"]["gru"]["recall@20"] <= 1.0
    assert metrics["versus"] is None and "Model vs baselines" not in result.output  # nothing to compare

    # With baselines, the model is the reference of the paired differences, in the file and printed.
    out = tmp_path / "versus"
    result = CliRunner().invoke(
        cli(), [*args, "--baselines", "pop,markov", "--n-bootstrap", "50", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    versus = orjson.loads((out / "metrics.json").read_bytes())["versus"]
    assert versus["reference"] == "gru" and list(versus["baselines"]) == ["pop", "markov"]
    assert "Model vs baselines (paired 95% CI):" in result.output
    assert (
        "| markov | mrr@20 |" in result.output and "## Model vs baselines" in (out / "report.md").read_text()
    )


def test_bad_arguments_are_reported(tmp_path: Path) -> None:
    train, test = gru4rec_split(tmp_path)
    runner = CliRunner()
    bad_baseline = runner.invoke(cli(), [str(train), "-f", "gru4rec", "--baselines", "bpr"])
    assert bad_baseline.exit_code != 0 and "unknown baselines" in bad_baseline.output
    two_files = runner.invoke(cli(), [str(train), str(test), "-f", "gru4rec"])
    assert two_files.exit_code != 0 and "exactly one DATA file" in two_files.output
    bad_k = runner.invoke(cli(), [str(train), "-f", "gru4rec", "--k", "0"])
    assert bad_k.exit_code != 0


# --- Evaluations that would mislead are refused: exit 2 and one line naming the cause and the fix ---


def events_file(tmp_path: Path) -> Path:
    """One JSONL log of 40 users (960 events over a few weeks), as `train` and `evaluate` both read it."""
    history, test = probekit.history_and_test()
    path = tmp_path / "events.jsonl"
    write_jsonl([*history, *test], path)
    return path


def trained_checkpoint(tmp_path: Path, data: Path, test_frac: float, name: str = "model.pt") -> Path:
    """A real (tiny, one-epoch) training run on `data`, so the metadata is what `train_model` records."""
    config = ModelConfig(hidden_size=8, item_dim=8, query_buckets=64, repeat_window=4, repeat_dim=8)
    train_cfg = TrainConfig(epochs=1, threads=1, test_frac=test_frac, progress=False, batch_size=64)
    result = train_model(load_events(data, "jsonl").events, config, train_cfg)
    path = tmp_path / name
    save_checkpoint(path, result.model, result.vocab, result.metadata, result.categories)
    return path


def guarded() -> typer.Typer:
    """evaluate and compare under the app's error handler (`ErrorHandlingGroup`), in process; the real
    app's callback is left out because it binds a log handler to this runner's stderr for good."""
    app = typer.Typer(cls=ErrorHandlingGroup)
    app.command("evaluate")(evaluate_command)
    app.command("compare")(compare_command)
    return app


def refused(args: list[str], *names: str) -> str:
    """Exit 2, no output, no traceback, and one stderr line besides log records: `<command>: error: ...`
    naming each of `names`."""
    result = CliRunner().invoke(guarded(), args, prog_name="behavior-stream")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == "", result.output
    lines = non_log_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"behavior-stream {args[0]}: error: "), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0].removeprefix("behavior-stream ")


def test_a_checkpoint_trained_without_a_test_part_is_refused_naming_the_option(tmp_path: Path) -> None:
    # What `demo` does: train with test fraction 0. Reusing its split leaves nothing to test on.
    data = events_file(tmp_path)
    checkpoint = trained_checkpoint(tmp_path, data, test_frac=0.0)
    out = tmp_path / "eval"
    base = ["evaluate", "--checkpoint", str(checkpoint), str(data), "--out", str(out), "--baselines", "pop"]
    line = refused(base, "events.jsonl", "test split is empty", "test fraction 0", "--test-frac", "model.pt")
    assert not out.exists()
    # The same through the console entry point, as a user runs it (log records may precede the line).
    result = run_cli(base, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert non_log_lines(result.stderr) == [f"behavior-stream {line}"] and result.stdout == ""
    # The model was fitted on all of DATA: any test fraction of it is data it trained on.
    line = refused([*base, "--test-frac", "0.2"], "overlaps", "model.pt", "training data", "--test")
    assert re.search(r" (\d+) of \1 test events were in its training", line), line  # all of them
    assert not out.exists()


def test_a_test_fraction_larger_than_the_checkpoints_overlaps_its_training_data(tmp_path: Path) -> None:
    data = events_file(tmp_path)
    checkpoint = trained_checkpoint(tmp_path, data, test_frac=0.1)
    out = tmp_path / "eval"
    base = ["evaluate", "--checkpoint", str(checkpoint), str(data), "--out", str(out), "--n-bootstrap", "20"]
    refused([*base, "--test-frac", "0.3"], "overlaps", "--test-frac 0.1", "or less")
    refused([*base, "--split-unit", "sequence"], "overlaps", "--split-unit event")
    # Its own split, or a smaller held-out share, is checked and accepted, and says so in the dataset.
    for extra in ([], ["--test-frac", "0.05"]):
        result = CliRunner().invoke(guarded(), ["evaluate", *base[1:], "--baselines", "pop", *extra])
        assert result.exit_code == 0, result.output
        split = orjson.loads((out / "metrics.json").read_bytes())["dataset"]["split"]
        assert split["training_overlap"] == [
            f"{checkpoint}: checked, no test event was in its training or validation part"
        ]


def test_an_empty_test_split_is_refused(tmp_path: Path) -> None:
    data = events_file(tmp_path)
    refused(
        ["evaluate", str(data), "--test-frac", "0"], "test split is empty", "--test-frac 0", "--test FILE"
    )
    # 960 events: 0.0001 of them rounds to none.
    refused(["evaluate", str(data), "--test-frac", "0.0001"], "test split is empty", "raise --test-frac")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("not json\n")
    refused(["evaluate", str(data), "--test", str(empty)], "empty.jsonl", "no valid test events")


def test_zero_predictions_are_refused(tmp_path: Path) -> None:
    history, test = probekit.history_and_test()
    write_jsonl(history, tmp_path / "history.jsonl")
    # One test event per user: never a target (a target follows the user's first test event).
    firsts = list({e.user_id: e for e in reversed(test)}.values())
    write_jsonl(firsts, tmp_path / "single.jsonl")
    args = ["evaluate", str(tmp_path / "history.jsonl"), "--test", str(tmp_path / "single.jsonl")]
    refused([*args, "--baselines", "pop"], "0 next-item predictions", "40 test sequences", "--test-frac")
