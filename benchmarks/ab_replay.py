"""A/B on a replay: does the better offline model also win online? (figures for the issue note)

    python -m benchmarks.ab_replay --workdir runs/demo

Uses the demo's generated data and trained checkpoint (run `make demo` first) as variant A,
trains a deliberately weaker variant B (hidden 16, one epoch), evaluates both offline on the
replayed part, then replays that part through one worker serving both at a 50/50 split and
prints `/experiments` and the per-variant online metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from behavior_stream.data.loaders import load_events
from behavior_stream.data.splits import eval_sequences
from behavior_stream.evaluation.model_scorer import ModelScorer
from behavior_stream.nn.checkpoint import load_checkpoint, save_checkpoint
from behavior_stream.nn.config import ModelConfig
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.broker import EmbeddedBroker, free_port
from behavior_stream.testing.promtext import total
from behavior_stream.testing.replay import replay_events
from behavior_stream.testing.workerproc import WorkerProcess, wait_until
from behavior_stream.training.config import TrainConfig
from behavior_stream.training.loop import rank_metrics, train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/demo"))
    args = parser.parse_args()
    data = sorted(args.workdir.glob("events-*.jsonl.gz"))[0]
    a_path = sorted(args.workdir.glob("model-gru-*.pt"))[0]
    events = load_events(data, "jsonl").events
    cut = events[int(len(events) * 0.8)].ts
    history, later = [e for e in events if e.ts < cut], [e for e in events if e.ts >= cut]
    b_path = args.workdir / "ab-weak-gru.pt"
    if not b_path.exists():
        weak = ModelConfig(cell="gru", hidden_size=16, item_dim=16)
        res = train_model(history, weak, TrainConfig(epochs=1, threads=1, test_frac=0.0, progress=False))
        save_checkpoint(b_path, res.model, res.vocab, res.metadata, res.categories)
    seqs = eval_sequences(history, later)
    offline = {
        v: rank_metrics(ModelScorer(load_checkpoint(p)), seqs, 20) for v, p in (("A", a_path), ("B", b_path))
    }
    print("offline", json.dumps(offline))
    with EmbeddedBroker() as broker:
        settings = Settings(
            broker=broker.url,
            checkpoint=a_path,
            ab_checkpoint=b_path,
            ab_split=0.5,
            web_port=free_port(),
            data_dir=args.workdir / "faust-ab",
            online_eval_model=True,
        )
        asyncio.run(ensure_topics(settings))
        worker = WorkerProcess(settings, args.workdir / "ab-worker.log").start()
        try:
            worker.wait_ready()
            asyncio.run(replay_events(settings, later))
            wait_until(
                lambda: total(worker.metrics(), "behavior_stream_events_total") >= len(later), 600, "replay"
            )
            time.sleep(3)
            metrics = worker.metrics()
            print("experiments", json.dumps(worker.json("/experiments")))
            for v in ("A", "B"):
                r = metrics.get(f'behavior_stream_online_model_recall{{k="20",variant="{v}"}}')
                m = metrics.get(f'behavior_stream_online_model_mrr{{k="20",variant="{v}"}}')
                print(f"variant {v}: online per-event recall@20 {r:.4f} mrr@20 {m:.4f}")
        finally:
            worker.stop()


if __name__ == "__main__":
    main()
