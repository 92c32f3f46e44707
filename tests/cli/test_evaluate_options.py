"""`evaluate` and `compare` refuse out-of-range options, an empty evaluation and damaged checkpoints
up front: one line naming the option or file, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import torch
from typer.testing import CliRunner

from behavior_stream.data.loaders import load_events
from behavior_stream.nn.checkpoint import sidecar_path
from behavior_stream.schema.vocab import ItemVocab
from tests.cli.clirun import run_cli
from tests.cli.test_bad_input import assert_one_line
from tests.cli.test_evaluate import events_file, guarded, refused
from tests.streamkit import make_checkpoint

ITEMS = [f"i{n}" for n in range(12)]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """events.jsonl, a valid checkpoint good.pt and one without its metadata, nometa.pt."""
    events_file(tmp_path)
    make_checkpoint(tmp_path / "good.pt", ITEMS, seed=0)
    bad = make_checkpoint(tmp_path / "nometa.pt", ITEMS, seed=1)
    data = torch.load(bad, weights_only=True)
    del data["metadata"]
    torch.save(data, bad)
    sidecar_path(bad).unlink()
    return tmp_path


EVALUATE = ["evaluate", "events.jsonl", "--out", "out"]
COMPARE = ["compare", "good.pt", "good.pt", "events.jsonl", "--out", "out"]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ([*EVALUATE, "--baselines", "none"], ("--baselines", "nothing to evaluate", "--checkpoint")),
        ([*EVALUATE, "--baselines", ""], ("--baselines", "nothing to evaluate", "--checkpoint")),
        ([*EVALUATE, "--n-bootstrap", "-1"], ("--n-bootstrap",)),
        ([*EVALUATE, "--n-bootstrap", "0"], ("--n-bootstrap",)),
        ([*EVALUATE, "--seed", "-1"], ("--seed",)),
        ([*EVALUATE, "--test-frac", "1.5"], ("--test-frac", "0 <= x < 1", "1.5")),
        ([*EVALUATE, "--valid-frac", "-0.1"], ("--valid-frac", "0 <= x < 1", "-0.1")),
        ([*EVALUATE, "--valid-frac", "0.5", "--test-frac", "0.6"], ("--valid-frac/--test-frac", "0.5 + 0.6")),
        ([*COMPARE, "--n-bootstrap", "0"], ("--n-bootstrap",)),
        ([*COMPARE, "--knn-k", "0"], ("--knn-k",)),
        ([*COMPARE, "--seed", "-3"], ("--seed",)),
        ([*COMPARE, "--test-frac", "1"], ("--test-frac", "0 <= x < 1")),
        (["evaluate", "events.jsonl", "--checkpoint", "nometa.pt"], ("nometa.pt", "missing metadata")),
        (["compare", "nometa.pt", "good.pt", "events.jsonl"], ("nometa.pt", "missing metadata")),
    ],
)
def test_refused_up_front_in_one_line(
    work: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], names: tuple[str, ...]
) -> None:
    monkeypatch.chdir(work)
    refused(args, *names)
    assert not (work / "out").exists()


def test_an_empty_baselines_value_with_a_checkpoint_evaluates_the_model_alone(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "Nothing to evaluate" is only without a checkpoint: `--baselines ''` is `none`, the model alone.
    monkeypatch.chdir(work)
    items = ItemVocab.build(e.item_id for e in load_events(work / "events.jsonl", "jsonl").events).items
    make_checkpoint(work / "model.pt", list(items), seed=0)
    args = ["evaluate", "events.jsonl", "--checkpoint", "model.pt", "--baselines", "", "--out", "out"]
    result = CliRunner().invoke(guarded(), args, prog_name="behavior-stream")
    assert result.exit_code == 0, result.output
    assert list(orjson.loads((work / "out" / "metrics.json").read_bytes())["next_item"]) == ["gru"]


# Through the console entry point, as a user runs it (a few: each is a process start).
@pytest.mark.parametrize(
    ("args", "names"),
    [
        ([*EVALUATE, "--baselines", "none"], ("--baselines", "--checkpoint")),
        ([*EVALUATE, "--baselines", ""], ("--baselines", "--checkpoint")),
        ([*EVALUATE, "--n-bootstrap", "0"], ("--n-bootstrap",)),
        ([*EVALUATE, "--seed", "-1"], ("--seed",)),
        ([*COMPARE, "--knn-k", "0"], ("--knn-k",)),
        (["compare", "nometa.pt", "good.pt", "events.jsonl"], ("nometa.pt", "missing metadata")),
    ],
)
def test_the_console_shows_one_line(work: Path, args: list[str], names: tuple[str, ...]) -> None:
    result = run_cli(args, work)
    line = assert_one_line(result, args[0], *names)
    assert "unexpected" not in line and not (work / "out").exists()
