"""The light commands stay light: `worker --help` and `replay` import neither matplotlib nor sklearn.

Each check runs the real typer app in a fresh interpreter and reads `sys.modules` when that
interpreter exits (an atexit hook), so everything the command imported at call time counts, not
only what importing the CLI module pulls in.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from behavior_stream.data.loaders import write_jsonl
from behavior_stream.schema.events import EventType, make_event
from behavior_stream.testing.broker import free_port

HEAVY = ("matplotlib", "sklearn", "torch")
MARKER = "MODULES "

# Runs `behavior-stream ARGS...` in-process, then prints the imported module names at exit (even
# when the command fails: replay with no broker ends in an exception).
PROGRAM = f"""
import atexit, json, sys
atexit.register(lambda: print({MARKER!r} + json.dumps(sorted(sys.modules)), flush=True))
from behavior_stream.cli.main import main
sys.argv = ["behavior-stream", *sys.argv[1:]]
main()
"""


def run_cli(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the CLI with `args` in a subprocess: (the finished process, the modules it had imported)."""
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, timeout=120, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    assert len(lines) == 1, done.stdout[-2000:] + done.stderr[-2000:]
    return done, set(orjson.loads(lines[0].removeprefix(MARKER)))


def loaded(modules: set[str], top: str) -> bool:
    return top in modules or any(m.startswith(top + ".") for m in modules)


def test_worker_help_imports_no_plotting_ml_or_torch() -> None:
    done, modules = run_cli("worker", "--help")
    assert done.returncode == 0, done.stderr
    assert "--checkpoint" in done.stdout  # the worker's help, so the command was reached
    assert {"typer", "behavior_stream.cli.main", "behavior_stream.stream.runtime.logs"} <= modules
    assert [m for m in HEAVY if loaded(modules, m)] == []


def test_replay_imports_no_plotting_or_ml(tmp_path: Path) -> None:
    """Replay to a port nobody listens on: the command loads the file, imports its Kafka code and
    fails connecting; everything it imported on the way is in `sys.modules` at exit."""
    data = tmp_path / "events.jsonl"
    write_jsonl(
        [make_event("u1", EventType.CLICK, 1_767_571_200_000 + i, item_id=f"i{i}") for i in range(3)], data
    )
    done, modules = run_cli("replay", str(data), "--broker", f"kafka://127.0.0.1:{free_port()}")
    assert done.returncode != 0  # no broker
    assert "no Kafka broker answered" in done.stderr, done.stderr[-2000:]
    # The command body ran: its call-time imports are there, and the loader logged (at INFO, in the
    # one format) the rows it read before the connection failed.
    assert {"behavior_stream.testing.replay", "behavior_stream.stream.runtime.kafka", "aiokafka"} <= modules
    assert " INFO behavior_stream.data.loaders: " in done.stderr, done.stderr[-2000:]
    assert [m for m in HEAVY if loaded(modules, m)] == []
