"""`behavior-stream evaluate` end to end: a GRU4Rec split vs the reference protocol, checkpoints, errors."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson
import pytest
import typer
from typer.testing import CliRunner

from behavior_stream.cli.evaluate import evaluate_command
from behavior_stream.data.loaders import load_events
from behavior_stream.data.splits import EvalSequence
from behavior_stream.evaluation.baselines import FirstOrderMarkov
from behavior_stream.schema.events import EventType, make_event
from behavior_stream.schema.vocab import ItemVocab
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


def test_bad_arguments_are_reported(tmp_path: Path) -> None:
    train, test = gru4rec_split(tmp_path)
    runner = CliRunner()
    bad_baseline = runner.invoke(cli(), [str(train), "-f", "gru4rec", "--baselines", "bpr"])
    assert bad_baseline.exit_code != 0 and "unknown baselines" in bad_baseline.output
    two_files = runner.invoke(cli(), [str(train), str(test), "-f", "gru4rec"])
    assert two_files.exit_code != 0 and "exactly one DATA file" in two_files.output
    bad_k = runner.invoke(cli(), [str(train), "-f", "gru4rec", "--k", "0"])
    assert bad_k.exit_code != 0
