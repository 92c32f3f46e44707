"""Bad options and settings of `train`, `tune` and `retrain`: one line naming the option or the
settings-file key (never the data file, never the whole config), checked before any work, and an
output that would overwrite an input is refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from behavior_stream.cli.errors import InputError
from behavior_stream.cli.retrain import _round_failed, retrain_command
from behavior_stream.cli.train import train_command
from behavior_stream.cli.tune import tune_command
from behavior_stream.data.loaders import write_jsonl
from behavior_stream.simulate.generator import generate
from tests.cli.clirun import run_cli
from tests.cli.test_bad_input import assert_one_line

FIVE_EVENTS = generate(users=2, items=5, events=5, seed=1).events


def write_data(path: Path, events: int = 1_500) -> Path:
    write_jsonl(generate(users=30, items=60, events=events, seed=4).events, path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data(tmp_path_factory.mktemp("options") / "events.jsonl")


def invoke(*args: str) -> Result:
    """`train`, `tune` or `retrain` in-process, without the app's error handling: a failure is
    `result.exception` (InputError) or a usage error (exit 2, in the output)."""
    app = typer.Typer()
    for name, command in (("train", train_command), ("tune", tune_command), ("retrain", retrain_command)):
        app.command(name)(command)
    return CliRunner().invoke(app, list(args))


def input_error(result: Result) -> InputError:
    assert isinstance(result.exception, InputError), (result.exception, result.output)
    return result.exception


# At most 6 subprocess cases: the real entry point's exit code, stderr line and no traceback.
@pytest.mark.parametrize(
    ("args", "names", "absent"),
    [
        (["train", "events.jsonl", "--out", "events.jsonl"], ("--out", "DATA"), ()),
        (["train", "events.jsonl", "--seed", "-1"], ("--seed", "-1"), ()),
        (["train", "events.jsonl", "--epochs", "-1"], ("--epochs", "-1"), ()),
        (["train", "events.jsonl", "--config", "cfg.json"], ("train.weight_decay", "cfg.json", "-1"), ()),
        (["train", "events.jsonl", "--out", "adir"], ("--out adir", "is a directory"), ("adir.sha256",)),
        (["retrain", "--log", "events.jsonl", "--checkpoint", "r.pt", "--every", "-1", "--runs", "2"],
         ("--every",), ("r.pt", "r.pt.sha256")),
    ],
)  # fmt: skip
def test_bad_settings_are_one_line_naming_the_option(
    tmp_path: Path, args: list[str], names: tuple[str, ...], absent: tuple[str, ...]
) -> None:
    data = write_data(tmp_path / "events.jsonl", events=600)
    before = data.read_bytes()
    (tmp_path / "cfg.json").write_text(json.dumps({"train": {"weight_decay": -1}}))
    (tmp_path / "adir").mkdir()
    result = run_cli(args, tmp_path)
    line = assert_one_line(result, args[0], *names)
    assert "TrainConfig(" not in line and len(line) < 200, line
    if "DATA" not in names:
        assert "events.jsonl" not in line  # a setting's fault is not blamed on the data file
    assert data.read_bytes() == before
    assert not (tmp_path / "events.jsonl.sha256").exists()
    for name in absent:
        assert not (tmp_path / name).exists(), name


def test_an_output_that_is_an_input_or_its_sidecar_is_refused(data: Path, tmp_path: Path) -> None:
    before = data.read_bytes()
    line = str(input_error(invoke("train", str(data), "--out", str(data))))
    assert line.startswith(f"--out {data}: is the same file as DATA")
    # The checkpoint's sidecar would overwrite the data: `--out X` writes X.sha256.
    named = tmp_path / "m.pt.sha256"
    named.write_bytes(before)
    out = tmp_path / "m.pt"
    line = str(input_error(invoke("train", str(named), "--out", str(out))))
    assert "its checksum file" in line and "DATA" in line
    # A symlink to the data is the same file.
    link = tmp_path / "link.pt"
    link.symlink_to(data)
    assert "same file as DATA" in str(input_error(invoke("train", str(data), "--out", str(link))))
    assert "same file as --test" in str(
        input_error(invoke("train", str(named), "--test", str(data), "--out", str(data)))
    )
    assert data.read_bytes() == before and named.read_bytes() == before and not out.exists()


def test_an_output_whose_directory_cannot_be_made_is_refused_before_training(
    data: Path, tmp_path: Path
) -> None:
    # A file where a directory of the path should be: the save would fail after the whole training.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "runs" / "m.pt"
    line = str(input_error(invoke("train", str(data), "--out", str(out), "--epochs", "1")))
    assert line == f"--out {out}: {blocker} is not a directory"
    assert "is not a directory" in str(
        input_error(invoke("tune", str(data), "--out", str(blocker / "best"), "--trials", "1"))
    )


def test_tune_refuses_outputs_that_clash_before_any_trial(data: Path, tmp_path: Path) -> None:
    result = invoke("tune", str(data), "--out", str(data), "--trials", "1")
    assert "is not a directory" in str(input_error(result)) and "trial" not in result.output
    runs = tmp_path / "runs"
    runs.mkdir()
    best = runs / "best.json"
    best.write_bytes(data.read_bytes())
    line = str(input_error(invoke("tune", str(best), "--out", str(runs), "--trials", "1")))
    assert line.startswith(f"--out {best}: is the same file as DATA")
    assert best.read_bytes() == data.read_bytes()
    assert str(input_error(invoke("tune", str(data), "--seed", "-1"))).startswith("--seed: ")


def test_a_loss_that_becomes_nan_saves_nothing(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    result = invoke("train", str(data), "--lr", "1e308", "--out", str(out), "--no-progress", "--threads", "1")
    error = input_error(result)
    assert error.subject == "--lr"
    assert (
        "diverged" in error.problem
        and "epoch 1" in error.problem
        and "lower the learning rate" in error.problem
    )
    assert not out.exists() and not (tmp_path / "m.pt.sha256").exists()
    error = input_error(invoke("train", str(data), "--lr", "nan", "--out", str(out)))
    assert error.subject == "--lr" and "finite" in error.problem


def test_config_keys_are_named_unless_an_option_overrides_them(data: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": {"item_dim": 0}, "train": {"clip_norm": -1, "epochs": 1}}))
    error = input_error(invoke("train", str(data), "--config", str(cfg)))
    assert error.subject == f"model.item_dim in {cfg}"
    cfg.write_text(json.dumps({"train": {"clip_norm": -1, "epochs": -1}}))
    assert input_error(invoke("train", str(data), "--config", str(cfg))).subject == f"train.epochs in {cfg}"
    # An explicit option overrides the file's value, and so is what an error names.
    error = input_error(invoke("train", str(data), "--config", str(cfg), "--epochs", "0"))
    assert error.subject == "--epochs" and error.problem == "must be an integer >= 1, got 0"
    error = input_error(invoke("train", str(data), "--config", str(cfg), "--epochs", "1"))
    assert error.subject == f"train.clip_norm in {cfg}" and "got -1" in error.problem


def test_too_little_data_names_the_fraction_and_an_empty_test_file_is_rejected(
    data: Path, tmp_path: Path
) -> None:
    five = tmp_path / "five.jsonl"
    write_jsonl(FIVE_EVENTS, five)
    out = tmp_path / "m.pt"
    error = input_error(invoke("train", str(five), "--out", str(out)))
    assert error.subject == str(five) and "--valid-frac" in error.problem and "validation" in error.problem
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    error = input_error(invoke("train", str(data), "--test", str(empty), "--out", str(out)))
    assert error.subject == str(empty) and error.problem.startswith("no valid events to test on")
    assert not out.exists()


def test_retrain_checks_its_schedule_and_settings_before_any_round(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.pt"
    base = ["retrain", "--log", str(data), "--checkpoint", str(out)]
    for args, option in (
        (["--runs", "0"], "--runs"),
        (["--max-events", "-10"], "--max-events"),
        (["--every", "nan"], "--every"),
        (["--since", "-5"], "--since"),
        (["--broker", "http://x:y:z"], "--broker"),
    ):
        result = invoke(*base, *args)
        assert result.exit_code == 2 and option in result.output, result.output
    assert input_error(invoke(*base, "--epochs", "0")).subject == "--epochs"
    assert input_error(invoke(*base, "--hidden", "0")).subject == "--hidden"
    assert str(input_error(invoke("retrain", "--log", str(data), "--checkpoint", str(data)))).startswith(
        f"--checkpoint {data}: is the same file as --log"
    )
    adir = tmp_path / "adir"
    adir.mkdir()
    assert str(input_error(invoke("retrain", "--log", str(data), "--checkpoint", str(adir)))) == (
        f"--checkpoint {adir}: is a directory"
    )
    assert not out.exists()


def test_scheduled_rounds_log_bad_input_in_one_line_and_the_last_failure_fails_the_command(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    five = tmp_path / "five.jsonl"
    write_jsonl(FIVE_EVENTS, five)
    out = tmp_path / "r.pt"
    args = ["retrain", "--log", str(five), "--checkpoint", str(out), "--min-events", "1"]
    with caplog.at_level(logging.ERROR, logger="behavior_stream.cli.retrain"):
        result = invoke(*args, "--every", "0.01", "--runs", "2")
    error = input_error(result)  # the last round failed: the command fails as one round would
    assert error.subject == str(five) and "--valid-frac" in error.problem
    failed = [r for r in caplog.records if r.name == "behavior_stream.cli.retrain"]
    assert len(failed) == 1 and failed[0].exc_info is None  # round 1: one line, no traceback
    assert "retrain round 1 failed" in failed[0].getMessage() and not out.exists()


def test_an_unexpected_round_failure_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="behavior_stream.cli.retrain"):
        for number, exc in ((3, ValueError("five.jsonl: too short")), (4, RuntimeError("a bug"))):
            try:
                raise exc
            except Exception as caught:  # as the round loop calls it: inside the handler
                _round_failed(number, Path("r.pt"), caught)
    bad_input, bug = caplog.records
    assert bad_input.exc_info is None and "five.jsonl: too short" in bad_input.getMessage()
    assert bug.exc_info is not None and bug.exc_info[0] is RuntimeError and "round 4" in bug.getMessage()
