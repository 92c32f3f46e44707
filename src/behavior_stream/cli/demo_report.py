"""What the demo shows: live progress while the worker runs, then the closing summary (CLI output)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import typer

from behavior_stream.schema.events import Event
from behavior_stream.testing.promtext import histogram_quantile, total
from behavior_stream.testing.workerproc import WorkerProcess
from behavior_stream.training.progress import Progress

LATENCY = "behavior_stream_processing_latency_seconds"


@dataclass
class DemoReport:
    """Figures gathered during a demo run."""

    events: int
    records: int
    train_events: int
    train_seconds: float
    model_version: str
    offline: dict[str, float]
    web: str
    names: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    feeds: list[dict[str, Any]] = field(default_factory=list)

    def watch(self, worker: WorkerProcess, expected: int, since: float, timeout: float = 600.0) -> None:
        """Show progress of applied events until all `expected` events are applied (a bar on a
        terminal, else a line every 10 s and one at the end)."""
        bar = Progress(expected, "stream", "ev", every_s=10.0, final_line=True)
        deadline = time.monotonic() + timeout
        done = 0.0
        while done < expected and time.monotonic() < deadline:
            self.metrics = worker.metrics()
            done = total(self.metrics, "behavior_stream_events_total")
            p50 = histogram_quantile(self.metrics, LATENCY, 0.5)
            bar.postfix(
                dlq=int(total(self.metrics, "behavior_stream_invalid_events_total")),
                p50_ms=f"{p50 * 1e3:.0f}",
            )
            bar.update(int(done))
            if done < expected:
                time.sleep(0.5)
        self.seconds = time.perf_counter() - since
        bar.close()
        if done < expected:
            raise TimeoutError(f"worker applied {done:.0f} of {expected} events in {timeout:.0f}s")

    def sample_users(self, events: list[Event], n: int = 3) -> list[str]:
        """The `n` most active users of the replay (their feeds are the most telling)."""
        return [u for u, _ in Counter(e.user_id for e in events).most_common(n)]


def print_summary(r: DemoReport) -> None:
    """Print the closing summary to the terminal."""
    m = r.metrics
    applied = total(m, "behavior_stream_events_total")
    echo = typer.echo
    echo("")
    echo("behavior-stream demo: summary")
    echo(f"  model {r.model_version}, trained on {r.train_events:,} earlier events in {r.train_seconds:.0f}s")
    echo(f"  replayed {r.records:,} records: {applied:,.0f} events processed, "
         f"{total(m, 'behavior_stream_invalid_events_total'):,.0f} invalid (-> DLQ), "
         f"{total(m, 'behavior_stream_duplicate_events_total'):,.0f} duplicates skipped")  # fmt: skip
    rate = applied / max(r.seconds, 1e-9)
    echo(f"  throughput {rate:,.0f} events/s over {r.seconds:.1f}s (first produce to last apply)")
    echo(f"  consume-to-emit latency p50 {histogram_quantile(m, LATENCY, 0.5) * 1e3:.1f} ms, "
         f"p99 {histogram_quantile(m, LATENCY, 0.99) * 1e3:.1f} ms")  # fmt: skip
    online_r = m.get('behavior_stream_online_recall{k="20",variant="A"}', float("nan"))
    online_m = m.get('behavior_stream_online_mrr{k="20",variant="A"}', float("nan"))
    echo("  next-item quality @20     Recall   MRR")
    model_r = m.get('behavior_stream_online_model_recall{k="20",variant="A"}', float("nan"))
    model_m = m.get('behavior_stream_online_model_mrr{k="20",variant="A"}', float("nan"))
    echo(f"    online, each event       {model_r:.4f}  {model_m:.4f}   (from the state just before it)")
    echo(f"    online, served feeds     {online_r:.4f}  {online_m:.4f}   (stale within a batch)")
    off_r, off_m = r.offline.get("recall@20", float("nan")), r.offline.get("mrr@20", float("nan"))
    echo(f"    offline (same model)     {off_r:.4f}  {off_m:.4f}")
    for feed in r.feeds:
        items = feed.get("items", [])[:5]
        echo(f"  feed of user {feed.get('user_id')}:")
        for it in items:
            echo(f"    {it['score']:8.3f}  {r.names.get(it['item_id'], it['item_id'])}")
    echo(f"  metrics: {r.web}/metrics   API: {r.web}/users/<id>/recommendations, /representation, /health")
