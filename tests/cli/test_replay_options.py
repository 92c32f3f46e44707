"""Bad options of replay and of the other stream and data commands: one line naming the option.

The subprocess cases give replay a free port as its broker (nothing listens there): an option
checked only after connecting would wait out the broker and report that instead, so each of
them also proves the check comes first. The in-process cases run the real app with logging
left alone (its callback configures the process' logging).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from behavior_stream.cli import main
from behavior_stream.testing.broker import free_port
from behavior_stream.testing.replay import Pace
from tests.cli.clirun import run_cli
from tests.cli.test_bad_input import assert_one_line

ROWS = "".join(
    f'{{"user_id": "u{i % 2}", "type": "click", "item_id": "i{i}", "ts": {1767571200000 + i}}}\n'
    for i in range(3)
)


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text(ROWS)
    return path


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--broker", "kafka://127.0.0.1:99999"], ("--broker", "expected kafka://HOST:PORT", "99999")),
        (["--broker", "http://x:y:z"], ("--broker", "expected kafka://HOST:PORT", "'http://x:y:z'")),
        (["--limit", "-5"], ("--limit",)),
        (["--speed", "-1"], ("--speed", "-1")),
        (["--rate", "0"], ("--rate", "0")),
    ],
)
def test_replay_refuses_bad_options_before_connecting(
    tmp_path: Path, log_file: Path, args: list[str], names: tuple[str, ...]
) -> None:
    result = run_cli(
        ["replay", str(log_file), "--broker", f"kafka://127.0.0.1:{free_port()}", *args], tmp_path
    )
    assert_one_line(result, "replay", *names)
    assert "no broker at" not in result.stderr  # it never tried to connect


def test_generate_names_the_seed(tmp_path: Path) -> None:
    result = run_cli(["generate", "--out", "g.jsonl", "--seed", "-1"], tmp_path)
    assert_one_line(result, "generate", "--seed")
    assert not (tmp_path / "g.jsonl").exists()


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Result]:
    """Run `behavior-stream ARGS` in-process, in `tmp_path`, without touching the process' logging."""
    monkeypatch.setattr(main, "configure_logging", lambda level: None)
    monkeypatch.chdir(tmp_path)
    for name in ("BEHAVIOR_STREAM_BROKER", "BEHAVIOR_STREAM_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str) -> Result:
        return CliRunner().invoke(main.app, list(args), prog_name="behavior-stream")

    return run


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["replay", "x.jsonl", "--limit", "0"], "'--limit'"),  # was: "5,000 events ... no valid events"
        (["replay", "x.jsonl", "--speed", "nan"], "--speed"),
        (["replay", "x.jsonl", "--rate", "inf"], "--rate"),  # was: OverflowError sizing the chunks
        (["generate", "--out", "g.jsonl", "--users", "0"], "'--users'"),
        (["generate", "--out", "g.jsonl", "--items", "0"], "'--items'"),
        (["generate", "--out", "g.jsonl", "--events", "0"], "'--events'"),  # was: an empty file
        (["generate", "--out", "g.jsonl", "--categories", "295"], "'--categories'"),
        (["generate", "--out", "g.jsonl", "--items", "10", "--categories", "20"], "--categories"),
        (["demo", "--epochs", "0"], "'--epochs'"),
        (["demo", "--web-port", "65536"], "'--web-port'"),
        (["broker", "--port", "99999"], "'--port'"),  # was: unexpected OverflowError
        (["worker", "--checkpoint", "m.pt", "--partitions", "0"], "--partitions"),
        (["worker", "--checkpoint", "m.pt", "--broker", "host:port"], "--broker"),
        (["worker", "--checkpoint", "m.pt", "--web-port", "70000"], "--web-port"),
    ],
)
def test_numeric_and_address_options_name_the_option(
    invoke: Callable[..., Result], args: list[str], option: str
) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    command = args[0]
    assert result.stderr.startswith(f"behavior-stream {command}: error: Invalid value for {option}: "), (
        result.stderr
    )
    assert result.stderr.count("\n") == 1, result.stderr
    assert list(Path.cwd().iterdir()) == []  # nothing generated, trained or started


def test_broker_refuses_a_port_in_use(invoke: Callable[..., Result]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("broker", "--port", str(port))
    assert result.exit_code == 2, result.output  # was: "broker listening on ..." and exit 0
    assert result.stderr.startswith(
        f"behavior-stream broker: error: Invalid value for --port: {port} is already"
    )
    assert "listening" not in result.stdout


def test_bench_help_outside_a_checkout_is_help(invoke: Callable[..., Result]) -> None:
    result = invoke("bench", "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: behavior-stream bench" in result.stdout
    assert "error" not in result.output


def test_bench_outside_a_checkout_is_a_one_line_error(invoke: Callable[..., Result], tmp_path: Path) -> None:
    result = invoke("bench", "--quick")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"behavior-stream bench: error: {tmp_path}: no benchmarks/ here: "
        "run `behavior-stream bench` from the source checkout\n"
    )


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_pace_refuses_what_it_cannot_pace_by(value: float) -> None:
    for option in ("speed", "rate"):
        with pytest.raises(ValueError, match=f"^{option} must be a positive number"):
            Pace(**{option: value})
    with pytest.raises(typer.BadParameter, match="must be a positive number"):
        main.positive(value, "--speed")
    assert main.positive(None, "--speed") is None
    assert main.positive(0.5, "--speed") == 0.5


def test_demo_checks_the_environment_before_generating_or_training(
    invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEHAVIOR_STREAM_PARTITIONS", "0")
    result = invoke("demo", "--workdir", "w")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "behavior-stream demo: error: BEHAVIOR_STREAM_PARTITIONS: "
        "Input should be greater than or equal to 1, got '0'\n"
    )
    assert list(Path.cwd().iterdir()) == []  # no data generated, no model trained
