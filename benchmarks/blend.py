"""The model and session-kNN blended: how much next-item signal each has that the other lacks.

`python -m benchmarks.blend CHECKPOINT TRAIN TEST --format gru4rec` ranks TEST's next items
(after TRAIN as history, as `evaluate --test` does, unseen items dropped for the gru4rec format)
with the model, with sknn fitted on TRAIN, and with blends of the two: per position,
`alpha * softmax(model scores) + (1 - alpha) * sknn scores / their sum`. Both parts are
distributions over the catalog, so alpha is a share, not a scale. The stream serves the model
alone: this measures what a served hybrid (or a model distilled from one) could gain.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from behavior_stream.data.loaders import load_events
from behavior_stream.data.splits import EvalSequence, eval_sequences
from behavior_stream.evaluation.baselines import SessionKNN, item_counts
from behavior_stream.evaluation.model_scorer import ModelScorer
from behavior_stream.evaluation.protocol import EvalConfig, evaluate
from behavior_stream.evaluation.scoring import NextItemScorer
from behavior_stream.nn.checkpoint import load_checkpoint

ALPHAS = (0.9, 0.8, 0.7, 0.6, 0.5)


def blend_scores(model_scores: np.ndarray, knn_scores: np.ndarray, alpha: float) -> np.ndarray:
    """(n, n_items) `alpha` * softmax of the model's scores + (1 - alpha) * sknn's scores over
    their row sum (a row without neighbours contributes zeros)."""
    m = model_scores.astype(np.float64)
    m = np.exp(m - m.max(1, keepdims=True))
    m /= m.sum(1, keepdims=True)
    k = knn_scores.astype(np.float64)
    total = k.sum(1, keepdims=True)
    k = np.divide(k, total, out=np.zeros_like(k), where=total > 0)
    return (alpha * m + (1.0 - alpha) * k).astype(np.float32)


class Blend:
    """A `NextItemScorer` of `blend_scores` over a model scorer and a fitted sknn."""

    def __init__(self, model: NextItemScorer, neighbours: NextItemScorer, alpha: float) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.model, self.neighbours, self.alpha = model, neighbours, alpha
        self.name = f"blend {alpha:.2f}"

    def score_sequence(self, seq: EvalSequence, positions: Sequence[int]) -> np.ndarray:
        """Blended scores (len(positions), n_items)."""
        model = np.asarray(self.model.score_sequence(seq, positions))
        knn = np.asarray(self.neighbours.score_sequence(seq, positions))
        return blend_scores(model, knn, self.alpha)


def main(argv: Sequence[str] | None = None) -> None:
    """Print Recall@20 / MRR@20 of the model, sknn and each blend on the same predictions."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blend", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("train", type=Path)
    parser.add_argument("test", type=Path)
    parser.add_argument("--format", default="gru4rec")
    parser.add_argument("--alphas", default=",".join(str(a) for a in ALPHAS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    loaded = load_checkpoint(args.checkpoint)
    history = load_events(args.train, args.format).events
    sequences = eval_sequences(history, load_events(args.test, args.format).events)
    model = ModelScorer(loaded)
    knn = SessionKNN().fit(history, loaded.vocab)
    scorers: list[NextItemScorer] = [model, knn]
    scorers += [Blend(model, knn, float(a)) for a in args.alphas.split(",")]
    config = EvalConfig(ks=(20,), n_bootstrap=200, drop_unseen=args.format == "gru4rec")
    metrics = evaluate(sequences, loaded.vocab, item_counts(history, loaded.vocab), scorers, config=config)
    print(f"{metrics['counts']['predictions']:,} predictions")
    for name, row in metrics["next_item"].items():
        print(f"{name:12s} recall@20 {row['recall@20']:.4f}  mrr@20 {row['mrr@20']:.4f}")


if __name__ == "__main__":
    main()
