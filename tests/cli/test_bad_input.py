"""Bad input at the command line: one stderr line naming the input, exit 2, no traceback.

Every case runs the real console entry point in a subprocess, so the exit code, the stream the
line goes to and the absence of a traceback are what a user sees. Log records (the loader's
summary of bad rows, faiss' loading notes) may precede the line; nothing else may.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from behavior_stream.testing.broker import free_port
from tests.cli.clirun import non_log_lines, run_cli
from tests.streamkit import make_checkpoint

MALFORMED = "".join(f"row {i} is not json\n" for i in range(7))


def assert_one_line(result: object, command: str, *names: str) -> str:
    """Exit 2, no traceback, and exactly one non-log stderr line: this command's error naming `names`."""
    assert result.returncode == 2, (result.returncode, result.stderr)  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr, stderr
    lines = non_log_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"behavior-stream {command}: error: "), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def malformed(tmp_path: Path) -> Path:
    path = tmp_path / "malformed.jsonl"
    path.write_text(MALFORMED)
    return path


def test_train_on_a_file_without_valid_rows(tmp_path: Path, malformed: Path) -> None:
    result = run_cli(["train", str(malformed), "--out", "model.pt"], tmp_path)
    line = assert_one_line(result, "train", "malformed.jsonl", "no valid events")
    assert "7 malformed" in line
    assert not (tmp_path / "model.pt").exists()


def test_evaluate_with_a_checkpoint_that_is_not_one(tmp_path: Path, malformed: Path) -> None:
    fake = tmp_path / "notes.pt"
    fake.write_text("these are my notes, not a model\n")
    result = run_cli(["evaluate", "--checkpoint", str(fake), str(malformed)], tmp_path)
    assert_one_line(result, "evaluate", "notes.pt", "not a torch checkpoint")


def test_compare_with_a_checkpoint_that_is_not_one(tmp_path: Path, malformed: Path) -> None:
    real = make_checkpoint(tmp_path / "real.pt", ["a", "b"], seed=1)
    fake = tmp_path / "notes.pt"
    fake.write_bytes(b"PK\x03\x04 truncated zip")
    result = run_cli(["compare", str(real), str(fake), str(malformed)], tmp_path)
    assert_one_line(result, "compare", "notes.pt", "not a complete torch checkpoint")


def test_replay_of_a_missing_file(tmp_path: Path) -> None:
    result = run_cli(["replay", "missing.jsonl", "--broker", f"kafka://127.0.0.1:{free_port()}"], tmp_path)
    assert_one_line(result, "replay", "missing.jsonl", "No such file or directory")


def test_worker_with_a_missing_checkpoint(tmp_path: Path) -> None:
    result = run_cli(["worker", "--checkpoint", "absent.pt", "--data-dir", "faust"], tmp_path)
    assert_one_line(result, "worker", "absent.pt", "does not exist")


def test_worker_with_no_broker_listening(tmp_path: Path) -> None:
    """Faust would retry forever: the worker gives up after its bounded wait, with one line."""
    checkpoint = make_checkpoint(tmp_path / "model.pt", ["a", "b", "c"], seed=1)
    broker = f"kafka://127.0.0.1:{free_port()}"  # a free port: nothing listens there
    args = ["worker", "--checkpoint", str(checkpoint), "--broker", broker, "--data-dir", "faust"]
    result = run_cli(args, tmp_path, timeout=120)
    assert_one_line(result, "worker", broker, "no Kafka broker answered")
    assert "Unable connect" not in result.stderr  # aiokafka's per-attempt errors are not shown


@pytest.mark.parametrize(
    ("args", "command", "names"),
    [
        (["demo", "--data", "missing.jsonl"], "demo", ("missing.jsonl", "No such file")),
        (["demo", "--format", "csv"], "demo", ("--format", "csv")),
        (["generate", "--out", "g.jsonl", "--users", "0"], "generate", ("--users",)),
        (["train", "missing.jsonl"], "train", ("missing.jsonl", "does not exist")),
        (["evaluate", "--checkpoint", "absent.pt", "x.jsonl"], "evaluate", ("absent.pt", "does not exist")),
    ],
)
def test_other_bad_files_and_options(tmp_path: Path, args: list[str], command: str, names: tuple) -> None:
    assert_one_line(run_cli(args, tmp_path), command, *names)


def test_demo_on_a_file_without_valid_rows(tmp_path: Path, malformed: Path) -> None:
    result = run_cli(["demo", "--data", str(malformed), "--workdir", "demo"], tmp_path)
    assert_one_line(result, "demo", "malformed.jsonl", "too few valid events")


def test_debug_shows_the_traceback_instead(tmp_path: Path, malformed: Path) -> None:
    result = run_cli(["--debug", "train", str(malformed), "--out", "model.pt"], tmp_path)
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "InputError: " in result.stderr and "malformed.jsonl: no valid events" in result.stderr
    assert "behavior-stream train: error:" not in result.stderr
