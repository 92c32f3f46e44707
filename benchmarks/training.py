"""Training cost on the shared Taobao sample: examples/s, wall time, evaluation time per 10k predictions."""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass

from behavior_stream.data.loaders import load_events
from behavior_stream.data.splits import default_split_unit, eval_sequences, time_split
from behavior_stream.evaluation.model_scorer import ModelScorer
from behavior_stream.nn.config import ModelConfig
from behavior_stream.training.config import TrainConfig
from behavior_stream.training.loop import rank_metrics, train_model
from benchmarks.config import BenchConfig

log = logging.getLogger(__name__)

TAOBAO = ("taobao", "UserBehavior_prefix.csv")


@dataclass(frozen=True)
class TrainingCost:
    """What training and evaluating the default model on the Taobao sample cost."""

    events: int
    epochs: int
    threads: int
    wall_seconds: float
    examples_per_s: float
    eval_predictions: int
    eval_seconds: float
    eval_per: int  # the evaluation time is reported per this many predictions

    def figures(self) -> dict[str, float]:
        """Flat figures for the JSON line."""
        per = self.eval_seconds / max(self.eval_predictions, 1) * self.eval_per
        return {
            "train.events": self.events,
            "train.epochs": self.epochs,
            "train.threads": self.threads,
            "train.wall_s": round(self.wall_seconds, 2),
            "train.examples_per_s": round(self.examples_per_s, 1),
            "eval.predictions": self.eval_predictions,
            f"eval.seconds_per_{self.eval_per // 1000}k": round(per, 3),
        }


def measure_training(config: BenchConfig) -> TrainingCost:
    """Train `train_epochs` epochs (no early stop) and time the ranking evaluation of the test part.

    Training uses `TrainConfig`'s default of one torch thread: on two shared cores a second
    thread made training about 4x slower in our runs (OpenMP hand-offs under contention).
    """
    path = config.shared_data.joinpath(*TAOBAO)
    if not path.exists():
        raise FileNotFoundError(f"Taobao sample not found at {path}; set BEHAVIOR_STREAM_SHARED_DATA")
    events = load_events(path, "taobao").events[: config.train_rows]
    train_cfg = TrainConfig(
        epochs=config.train_epochs,
        patience=config.train_epochs,
        split_unit=default_split_unit("taobao"),
        progress=False,
    )
    start = time.perf_counter()
    result = train_model(events, ModelConfig(), train_cfg)
    wall = time.perf_counter() - start
    split = time_split(events, train_cfg.valid_frac, train_cfg.test_frac, train_cfg.split_unit)
    sequences = eval_sequences([*split.train, *split.valid], split.test)
    scorer = ModelScorer(result.loaded())
    start = time.perf_counter()
    figures = rank_metrics(scorer, sequences, train_cfg.k)
    eval_seconds = time.perf_counter() - start
    log.info(
        "trained %d epochs on %d events in %.1fs; %d predictions evaluated in %.2fs",
        len(result.history),
        len(events),
        wall,
        figures["predictions"],
        eval_seconds,
    )
    return TrainingCost(
        events=len(events),
        epochs=len(result.history),
        threads=train_cfg.threads,
        wall_seconds=wall,
        examples_per_s=statistics.fmean(e.examples_per_s for e in result.history),
        eval_predictions=int(figures["predictions"]),
        eval_seconds=eval_seconds,
        eval_per=config.eval_predictions,
    )
