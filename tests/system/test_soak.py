"""Soak on the real broker: half the measured maximum rate for a bounded time; RSS, lag and latency
must stay flat. CI runs 60 s; `make soak` runs 10 minutes (BEHAVIOR_STREAM_SOAK_SECONDS=600)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.simulate.generator import generate
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.testing.broker import EmbeddedBroker
from behavior_stream.testing.promtext import histogram_quantile, total
from behavior_stream.testing.replay import Pace, replay_events
from behavior_stream.testing.workerproc import WorkerProcess
from tests.streamkit import make_checkpoint, stream_settings, wait_until

LATENCY = "behavior_stream_processing_latency_seconds"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def applied(worker: WorkerProcess) -> float:
    return total(worker.metrics(), "behavior_stream_events_total")


def run_soak(broker: EmbeddedBroker, tmp_path: Path, seconds: float) -> None:
    warmup_n = 20_000
    # A fixed user population, so state stops growing once every user has been seen.
    data = generate(users=2000, items=3000, events=warmup_n + int(seconds * 4000), seed=21)
    events = data.events
    items = ItemVocab.build(e.item_id for e in events).items
    checkpoint = make_checkpoint(tmp_path / "soak.pt", list(items), seed=4)
    settings = stream_settings(broker, tmp_path, checkpoint, ann_threshold=0)
    asyncio.run(ensure_topics(settings))
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        # 1. Maximum rate: after a first trickle (the group is joined, partitions assigned), a
        #    burst timed from first produce to last apply.
        asyncio.run(replay_events(settings, events[:1000]))
        wait_until(lambda: applied(worker) >= 1000, 300, "first events")
        start = time.perf_counter()
        asyncio.run(replay_events(settings, events[1000:warmup_n]))
        wait_until(lambda: applied(worker) >= warmup_n, 300, "warm-up")
        max_rate = (warmup_n - 1000) / (time.perf_counter() - start)
        rate = max_rate / 2
        n = min(len(events) - warmup_n, int(rate * seconds))
        # 2. Half that rate for `seconds`, sampling the worker every 5 s.
        feeder = threading.Thread(
            target=lambda: asyncio.run(
                replay_events(settings, events[warmup_n : warmup_n + n], pace=Pace(rate=rate))
            )
        )
        feeder.start()
        assert worker.proc is not None
        samples = []
        prev = worker.metrics()
        while feeder.is_alive():
            time.sleep(5)
            now = worker.metrics()
            window = {k: v - prev.get(k, 0.0) for k, v in now.items() if k.startswith(LATENCY)}
            samples.append(
                {
                    "rss_mb": rss_mb(worker.proc.pid),
                    "users": now.get("behavior_stream_users", 0.0),
                    "lag": total(now, "behavior_stream_consumer_lag"),
                    "p99": histogram_quantile(window, LATENCY, 0.99),
                }
            )
            prev = now
        feeder.join()
        wait_until(
            lambda: total(worker.metrics(), "behavior_stream_events_total") >= warmup_n + n, 120, "drain"
        )
        assert worker.alive()
    finally:
        worker.stop()
    print(f"soak: max {max_rate:.0f} ev/s, offered {rate:.0f} ev/s for {seconds:.0f}s")
    for s in samples:
        rss, lag, p99 = s["rss_mb"], s["lag"], s["p99"] * 1e3
        print(f"  rss {rss:.0f} MB  users {s['users']:.0f}  lag {lag:.0f}  p99 {p99:.0f} ms")
    assert len(samples) >= 3
    half = samples[len(samples) // 2 :]
    # Memory: once the user population is in state, RSS stays flat (allocator noise allowed).
    saturated = [s for s in half if s["users"] == samples[-1]["users"]]
    if len(saturated) >= 2:
        assert saturated[-1]["rss_mb"] - saturated[0]["rss_mb"] < 40, saturated
    # Lag does not grow: at half the maximum rate the worker keeps up (a few seconds of backlog at most).
    assert max(s["lag"] for s in half) <= rate * 5, half
    # Latency stays in the same range from the first to the second half.
    p99s = [s["p99"] for s in samples if s["p99"] == s["p99"]]
    assert max(p99s[len(p99s) // 2 :]) <= max(5 * max(p99s[: len(p99s) // 2]), 1.0), p99s


@pytest.mark.broker
@pytest.mark.timeout(600)
def test_soak_ci(broker: EmbeddedBroker, tmp_path: Path) -> None:
    run_soak(broker, tmp_path, seconds=60)


@pytest.mark.soak
@pytest.mark.timeout(1500)
def test_soak_long(broker: EmbeddedBroker, tmp_path: Path) -> None:
    run_soak(broker, tmp_path, seconds=float(os.environ.get("BEHAVIOR_STREAM_SOAK_SECONDS", "600")))
