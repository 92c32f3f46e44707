"""Training: time split, next-item + purchase losses, early stopping on validation Recall/MRR@K.

`train_model` is the one entry point (the CLI, the demo and the tests call it). It never looks at
the test part to make a choice: the best epoch is picked on validation, and the test figures are
computed once, for the report, after training.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from model.batching import TrainBatch, iterate_batches, make_windows
from model.checkpoint import LoadedModel
from model.config import ModelConfig, TrainConfig
from model.data import eval_sequences, group_by_user, time_split
from model.evaluate import next_item_targets
from model.events import Event
from model.features import encode_arrays
from model.metrics import conservative_ranks, mrr_at_k, recall_at_k
from model.network import SequenceModel
from model.objective import full_softmax_loss, purchase_loss, sampled_softmax_loss
from model.recommender import ModelScorer
from model.scoring import EvalSequence
from model.vocab import ItemVocab

__all__ = ["EpochStats", "TrainConfig", "TrainResult", "rank_metrics", "train_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochStats:
    """What one epoch did: mean losses, validation figures and speed."""

    epoch: int
    train_loss: float
    item_loss: float
    purchase_loss: float
    valid_recall: float
    valid_mrr: float
    seconds: float
    examples_per_s: float


@dataclass(frozen=True, eq=False)
class TrainResult:
    """The best model (eval mode), its catalog, per-epoch history and the checkpoint metadata."""

    model: SequenceModel
    vocab: ItemVocab
    history: list[EpochStats]
    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float] | None
    metadata: dict[str, Any] = field(default_factory=dict)
    categories: dict[str, str] | None = None  # item -> category, catalog items only

    def loaded(self, model_version: str = "unsaved") -> LoadedModel:
        """The result as a `LoadedModel`, e.g. for `ModelScorer` without a checkpoint round trip."""
        return LoadedModel(self.model, self.vocab, self.model.config, self.metadata, model_version)


def rank_metrics(scorer: ModelScorer, seqs: Sequence[EvalSequence], k: int) -> dict[str, float]:
    """Recall@k and MRR@k of the evaluation protocol (positions t >= 1 with a catalog target)."""
    targets = next_item_targets(seqs, scorer.vocab)
    starts = np.cumsum([0, *(len(p) for p in targets.positions)])
    ranks = np.zeros(len(targets.items), np.int64)
    for i, scores in scorer.iter_scores(seqs, targets.positions):
        ranks[starts[i] : starts[i + 1]] = conservative_ranks(
            scores, targets.items[starts[i] : starts[i + 1]]
        )
    return {f"recall@{k}": recall_at_k(ranks, k), f"mrr@{k}": mrr_at_k(ranks, k), "predictions": len(ranks)}


def _batch_loss(
    model: SequenceModel, batch: TrainBatch, cfg: TrainConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(next-item loss, purchase loss) of one batch."""
    out = model(batch.sequences, batch.state)
    top = out.hidden[batch.item_mask]  # (n, hidden)
    hist, types = out.history[batch.item_mask], out.history_types[batch.item_mask]
    if model.n_items <= cfg.full_softmax_max_items:
        item = full_softmax_loss(model, top, hist, types, batch.item_targets, cfg.softmax_chunk)
    else:
        item = sampled_softmax_loss(model, top, hist, types, batch.item_targets, cfg.n_negatives, gen)
    buy = purchase_loss(model, out.hidden[batch.purchase_mask], batch.purchase_labels)
    return item, buy


def _split(
    events: list[Event], cfg: TrainConfig, test_events: list[Event] | None
) -> tuple[list[Event], list[Event], list[Event]]:
    if test_events is None:
        split = time_split(events, cfg.valid_frac, cfg.test_frac, cfg.split_unit)
        return split.train, split.valid, split.test
    split = time_split(events, cfg.valid_frac, 0.0, cfg.split_unit)
    return split.train, split.valid, sorted(test_events, key=lambda e: e.ts)


def train_model(
    events: list[Event],
    config: ModelConfig,
    train_cfg: TrainConfig,
    *,
    categories: dict[str, str] | None = None,
    test_events: list[Event] | None = None,
    dataset: dict[str, Any] | None = None,
) -> TrainResult:
    """Split, train with early stopping on validation, and return the best model.

    The catalog is every item of the train and validation parts: at test time both are the
    user's history, so items first seen in validation must be rankable (repeat purchases).
    """
    started = time.perf_counter()
    torch.manual_seed(train_cfg.seed)
    rng = np.random.default_rng(train_cfg.seed)
    gen = torch.Generator().manual_seed(train_cfg.seed)
    torch.set_num_threads(train_cfg.threads)
    train, valid, test = _split(events, train_cfg, test_events)
    if not train or not valid:
        raise ValueError(f"need train and validation events, got {len(train)} / {len(valid)}")
    vocab = ItemVocab.build((e.item_id for e in (*train, *valid)), train_cfg.n_oov_buckets)
    encoded = [encode_arrays(seq, vocab, config) for seq in group_by_user(train).values()]
    windows = make_windows([len(e) for e in encoded], train_cfg.max_len, train_cfg.burn_in)
    valid_seqs = eval_sequences(train, valid)
    log.info(
        "split %d/%d/%d events, %d catalog items, %d training windows",
        len(train),
        len(valid),
        len(test),
        vocab.n_items,
        len(windows),
    )

    model = SequenceModel(config, vocab.n_items, vocab.n_inputs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    scorer = ModelScorer(LoadedModel(model, vocab, config, {}, "training"))
    history: list[EpochStats] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    key = f"{train_cfg.monitor}@{train_cfg.k}"
    for epoch in range(1, train_cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        sums = np.zeros(3)
        n_examples = 0
        n_batches = (len(windows) + train_cfg.batch_size - 1) // train_cfg.batch_size
        bar = tqdm(total=n_batches, desc=f"epoch {epoch}", disable=not train_cfg.progress, leave=False)
        for batch in iterate_batches(encoded, windows, train_cfg.batch_size, config, rng):
            if batch.n_examples == 0:
                bar.update()
                continue
            item, buy = _batch_loss(model, batch, train_cfg, gen)
            loss = item + train_cfg.purchase_weight * buy
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.clip_norm)
            optimizer.step()
            sums += batch.n_examples * np.array([loss.item(), item.item(), buy.item()])
            n_examples += batch.n_examples
            bar.update()
            bar.set_postfix(
                loss=f"{sums[0] / n_examples:.3f}", ex_s=f"{n_examples / (time.perf_counter() - t0):.0f}"
            )
        bar.close()
        train_seconds = time.perf_counter() - t0
        model.eval()
        figures = rank_metrics(scorer, valid_seqs, train_cfg.k)
        means = sums / max(n_examples, 1)
        stats = EpochStats(
            epoch=epoch,
            train_loss=float(means[0]),
            item_loss=float(means[1]),
            purchase_loss=float(means[2]),
            valid_recall=figures[f"recall@{train_cfg.k}"],
            valid_mrr=figures[f"mrr@{train_cfg.k}"],
            seconds=time.perf_counter() - t0,
            examples_per_s=n_examples / train_seconds,
        )
        history.append(stats)
        log.info(
            "epoch %d: loss %.4f (item %.4f, purchase %.4f) valid recall@%d %.4f mrr@%d %.4f, "
            "%.1fs, %.0f ex/s",
            epoch,
            stats.train_loss,
            stats.item_loss,
            stats.purchase_loss,
            train_cfg.k,
            stats.valid_recall,
            train_cfg.k,
            stats.valid_mrr,
            stats.seconds,
            stats.examples_per_s,
        )
        value = figures[key]
        if best is None or value > best[0]:
            best = (value, epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= train_cfg.patience:
            log.info("early stop: %s has not improved for %d epochs", key, train_cfg.patience)
            break
    assert best is not None
    model.load_state_dict(best[2])
    model.eval()
    valid_figures = rank_metrics(scorer, valid_seqs, train_cfg.k)
    test_figures = rank_metrics(scorer, eval_sequences([*train, *valid], test), train_cfg.k) if test else None
    metadata = {
        "dataset": dataset or {},
        "seed": train_cfg.seed,
        "train_config": asdict(train_cfg),
        "split": {"train": len(train), "valid": len(valid), "test": len(test)},
        "n_items": vocab.n_items,
        "history": [asdict(s) for s in history],
        "best_epoch": best[1],
        "valid": valid_figures,
        "test": test_figures,
        "train_seconds": time.perf_counter() - started,
        "torch_version": str(torch.__version__),
    }
    if categories is not None:
        categories = {item: categories[item] for item in vocab.items if item in categories}
    return TrainResult(model, vocab, history, best[1], valid_figures, test_figures, metadata, categories)
