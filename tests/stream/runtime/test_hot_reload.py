"""Hot reload against a real broker: a checkpoint that does not verify yet is retried, not forgotten.

The new file appears at the watched path first with the old (stale) sidecar, then with none,
and only then with its own; the worker keeps serving the old version meanwhile, logs each
distinct failure once, and serves the new version as soon as the sidecar matches, without a
restart.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from behavior_stream.nn.checkpoint import load_checkpoint, sidecar_path
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.testing.broker import EmbeddedBroker
from tests.streamkit import WorkerProcess, make_checkpoint, stream_settings, wait_until

ITEMS = [f"i{n}" for n in range(50)]


def log_count(worker: WorkerProcess, text: str) -> int:
    """Lines of the worker's log containing `text`."""
    return sum(text in line for line in worker.log_path.read_text(errors="replace").splitlines())


def served(worker: WorkerProcess) -> str:
    """The model version /health reports."""
    return str(worker.json("/health")["model_version"])


def uptime(worker: WorkerProcess) -> float:
    """The worker's own uptime (its clock, so waiting on it waits for its timer to run)."""
    return float(worker.json("/health")["uptime_seconds"])


def test_unverified_checkpoint_is_retried_until_its_sidecar_matches(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    path = make_checkpoint(tmp_path / "model.pt", ITEMS, seed=1)
    staged = make_checkpoint(tmp_path / "staged" / "model.pt", ITEMS, seed=2)
    old, new = load_checkpoint(path).model_version, load_checkpoint(staged).model_version
    assert old != new
    poll = 0.2
    settings = stream_settings(broker, tmp_path, path, reload_poll_s=poll)
    asyncio.run(ensure_topics(settings))
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        assert served(worker) == old

        # 1. the new bytes under the old sidecar (published by hand in the wrong order)
        tmp = tmp_path / "incoming.pt"
        shutil.copy(staged, tmp)
        os.replace(tmp, path)
        mismatch = "does not match"
        wait_until(lambda: log_count(worker, mismatch) >= 1, 60, "no warning for the stale sidecar")
        # several more polls, on the worker's clock, in the same state: still one warning
        since = uptime(worker)
        wait_until(lambda: uptime(worker) >= since + 10 * poll, 60, "worker clock did not advance")
        assert served(worker) == old
        assert log_count(worker, mismatch) == 1

        # 2. no sidecar at all: another reason, logged once more
        sidecar_path(path).unlink()
        missing = f"no {sidecar_path(path).name} yet"
        wait_until(lambda: log_count(worker, missing) >= 1, 60, "no warning for the missing sidecar")
        assert served(worker) == old

        # 3. the right sidecar arrives: loaded at the next poll, no restart
        shutil.copy(sidecar_path(staged), sidecar_path(path))
        wait_until(lambda: served(worker) == new, 60, "the verified checkpoint was not loaded")
        assert worker.alive()  # the same process: reloaded, not restarted
        assert worker.metrics()["behavior_stream_model_reloads_total"] == 1.0
        assert log_count(worker, mismatch) == 1 and log_count(worker, missing) == 1
        assert log_count(worker, f"{old} -> {new}") == 1
    finally:
        worker.stop()
