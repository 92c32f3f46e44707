"""Training: time split, next-item + purchase losses, early stopping on validation Recall/MRR@K.

`train_model` is the one entry point (the CLI, the demo and the tests call it). It never looks at
the test part to make a choice: the best epoch is picked on validation, and the test figures are
computed once, for the report, after training.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from behavior_stream.data.splits import EvalSequence, group_by_user
from behavior_stream.evaluation.metrics import mrr_at_k, recall_at_k
from behavior_stream.evaluation.model_scorer import ModelScorer
from behavior_stream.evaluation.ranking import next_item_targets, rank_targets
from behavior_stream.evaluation.scenarios import bought_together
from behavior_stream.nn.categories import CategoryVocab
from behavior_stream.nn.checkpoint import LoadedModel
from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.features import EncodedEvents, encode_arrays
from behavior_stream.nn.network import SequenceModel
from behavior_stream.nn.rules import fit_rules
from behavior_stream.schema.events import Event
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.training.batching import TrainBatch, iterate_batches, make_windows, target_counts
from behavior_stream.training.calibration import calibration_metadata
from behavior_stream.training.config import TrainConfig
from behavior_stream.training.multitask import aux_labels, aux_losses, weighted_aux_loss
from behavior_stream.training.objective import NextItemLoss, purchase_loss
from behavior_stream.training.optim import WeightAverage, make_optimizer
from behavior_stream.training.parts import TooLittleData, TrainingParts, training_parts
from behavior_stream.training.progress import Progress

__all__ = [
    "EpochStats",
    "NonFiniteLoss",
    "TooLittleData",
    "TrainConfig",
    "TrainResult",
    "TrainingParts",
    "rank_metrics",
    "train_model",
    "training_parts",
]

log = logging.getLogger(__name__)
BOUGHT_TOGETHER_TOP_N = 20  # partners kept per item in the checkpoint's cart table


class NonFiniteLoss(ValueError):
    """The training loss became NaN or infinite: the weights are lost, so training stops there."""


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
    """Recall@k and MRR@k under the offline evaluation protocol (`model.ranking`)."""
    targets = next_item_targets(seqs, scorer.vocab)
    ranks = rank_targets(scorer, seqs, targets, min(k, scorer.vocab.n_items)).ranks
    return {f"recall@{k}": recall_at_k(ranks, k), f"mrr@{k}": mrr_at_k(ranks, k), "predictions": len(ranks)}


def _batch_loss(
    model: SequenceModel, batch: TrainBatch, cfg: TrainConfig, gen: torch.Generator, item_loss: NextItemLoss
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(next-item loss, purchase loss, weighted auxiliary-head losses) of one batch."""
    out = model(batch.sequences, batch.state)
    top = out.hidden[batch.item_mask]  # (n, hidden)
    hist, types = out.history[batch.item_mask], out.history_types[batch.item_mask]
    item = item_loss(model, top, hist, types, batch.item_targets, gen)
    buy = purchase_loss(model, out.hidden[batch.purchase_mask], batch.purchase_labels)
    labels = aux_labels(batch.sequences, batch.state, batch.purchase_mask, model, model.config.future_k)
    aux = weighted_aux_loss(aux_losses(model, out.hidden, labels, cfg, gen), cfg)
    return item, buy, aux if aux is not None else item.new_zeros(())


def _train_epoch(
    model: SequenceModel,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[TrainBatch],
    n_batches: int,
    cfg: TrainConfig,
    gen: torch.Generator,
    epoch: int,
    item_loss: NextItemLoss,
    average: WeightAverage | None = None,
) -> tuple[np.ndarray, int]:
    """One pass over the batches; returns example-weighted (loss, item, purchase) sums and examples.

    A NaN or infinite loss raises `NonFiniteLoss` before the step that would spread it to the
    weights, and so do non-finite weights at the end of the epoch.
    """
    model.train()
    sums = np.zeros(3)
    n_examples = 0
    start = time.perf_counter()
    # A bar on a terminal; in a log, a line per 30 s of a long epoch (the epoch's own line follows).
    with Progress(n_batches, f"epoch {epoch}", "batch", enabled=cfg.progress) as bar:
        for i, batch in enumerate(batches, 1):
            bar.update(i)
            if batch.n_examples == 0:
                continue
            item, buy, aux = _batch_loss(model, batch, cfg, gen, item_loss)
            loss = item + cfg.purchase_weight * buy + aux
            if not torch.isfinite(loss):  # a sync, but `loss.item()` below syncs anyway
                raise NonFiniteLoss(
                    f"training diverged: the loss is {loss.item()} at epoch {epoch}, batch {i} of "
                    f"{n_batches}; lower the learning rate (lr {cfg.lr:g})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            optimizer.step()
            if average is not None:
                average.update()
            sums += batch.n_examples * np.array([loss.item(), item.item(), buy.item()])
            n_examples += batch.n_examples
            rate = n_examples / (time.perf_counter() - start)
            bar.postfix(loss=f"{sums[0] / n_examples:.3f}", ex_s=f"{rate:.0f}")
    # The epoch's last step may have made the weights non-finite with no loss left to show it.
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise NonFiniteLoss(
            f"training diverged: the weights are not finite after epoch {epoch}; "
            f"lower the learning rate (lr {cfg.lr:g})"
        )
    model.eval()
    return sums, n_examples


def _log_epoch(stats: EpochStats, k: int) -> None:
    log.info(
        "epoch %d: loss %.4f (item %.4f, purchase %.4f) valid recall@%d %.4f mrr@%d %.4f, %.1fs, %.0f ex/s",
        stats.epoch, stats.train_loss, stats.item_loss, stats.purchase_loss, k, stats.valid_recall,
        k, stats.valid_mrr, stats.seconds, stats.examples_per_s,
    )  # fmt: skip


def _fit_rules(
    encoded: Sequence[EncodedEvents], vocab: ItemVocab, config: ModelConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequential-rules table (`nn.rules.fit_rules`) of encoded user sequences."""
    return fit_rules(
        (e.catalog for e in encoded), vocab.n_items, config.rules_window, config.rules_neighbours
    )


def train_model(
    events: list[Event],
    config: ModelConfig,
    train_cfg: TrainConfig,
    *,
    categories: dict[str, str] | None = None,
    test_events: list[Event] | None = None,
    dataset: dict[str, Any] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    parts: TrainingParts | None = None,
) -> TrainResult:
    """Split, train with early stopping on validation, and return the best epoch's model.

    The catalog is every item of the train and validation parts: at test time both are the
    user's history, so items first seen in validation must be rankable (repeat purchases).
    Epochs are compared on the monitored metric, ties broken by the other one (on repeat-heavy
    data Recall@20 often sits exactly at the share of targets found in the history window).
    `on_epoch`, when given, sees each epoch's figures as soon as they exist (the tuner reports them
    to its pruner); an exception it raises ends training there and propagates to the caller.
    `parts`, when given, is `training_parts(events, train_cfg, test_events)` made by the caller
    (the tuner's trials share one split instead of each making its own).
    """
    started = time.perf_counter()
    cfg = train_cfg
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    if parts is None:
        parts = training_parts(events, cfg, test_events)
    train, valid, test, vocab = parts.train, parts.valid, parts.test, parts.vocab
    valid_seqs, test_seqs = parts.valid_seqs, parts.test_seqs
    # Item side data as an input: categories of the training items get rows; the map keeps every
    # item the side data knows, so a new item still brings its category.
    cats = CategoryVocab.build(categories, (e.item_id for e in train)) if categories else None
    encoded = [encode_arrays(seq, vocab, config, cats) for seq in group_by_user(train).values()]
    windows = make_windows([len(e) for e in encoded], cfg.max_len, cfg.burn_in)
    log.info("split %d/%d/%d events, %d catalog items, %d training windows",
             len(train), len(valid), len(test), vocab.n_items, len(windows))  # fmt: skip

    model = SequenceModel(config, vocab.n_items, vocab.n_inputs, cats, vocab.items)
    if config.rules_weight > 0:
        # Before training, so validation (and the epoch it picks) ranks as the stream will.
        model.set_rules(*_fit_rules(encoded, vocab, config))
    optimizer, schedule = make_optimizer(model.parameters(), cfg)
    average = WeightAverage(model.parameters(), cfg.ema_decay) if cfg.ema_decay > 0 else None
    item_loss = NextItemLoss.build(cfg, target_counts(encoded, vocab.n_items))
    scorer = ModelScorer(LoadedModel(model, vocab, config, {}, "training"))
    keys = [f"{m}@{cfg.k}" for m in (("recall", "mrr") if cfg.monitor == "recall" else ("mrr", "recall"))]
    history: list[EpochStats] = []
    best: tuple[tuple[float, ...], EpochStats, dict[str, Any], dict[str, torch.Tensor]] | None = None
    n_batches = -(-len(windows) // cfg.batch_size)
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        batches = iterate_batches(encoded, windows, cfg.batch_size, config, rng)
        sums, n = _train_epoch(model, optimizer, batches, n_batches, cfg, gen, epoch, item_loss, average)
        schedule.step()
        train_seconds = time.perf_counter() - t0
        # With a weight average, the epoch is judged (and kept) by the averaged weights.
        averaged: AbstractContextManager[None] = average.applied() if average is not None else nullcontext()
        with averaged:
            figures = rank_metrics(scorer, valid_seqs, cfg.k)
            score = tuple(figures[key] for key in keys)
            snapshot = copy.deepcopy(model.state_dict()) if best is None or score > best[0] else None
        loss, item, buy = (sums / max(n, 1)).tolist()
        stats = EpochStats(epoch, loss, item, buy, figures[f"recall@{cfg.k}"], figures[f"mrr@{cfg.k}"],
                           time.perf_counter() - t0, n / train_seconds)  # fmt: skip
        history.append(stats)
        _log_epoch(stats, cfg.k)
        if on_epoch is not None:
            on_epoch(stats)
        if snapshot is not None:
            best = (score, stats, figures, snapshot)
        elif best is not None and epoch - best[1].epoch >= cfg.patience:
            log.info("early stop: %s has not improved for %d epochs", keys[0], cfg.patience)
            break
    assert best is not None
    model.load_state_dict(best[3])
    if config.rules_weight > 0:
        # Refitted on train + validation, the history at test time (as the catalog is); the
        # validation figures above are those of the train-only table.
        both = group_by_user([*train, *valid]).values()
        model.set_rules(*_fit_rules([encode_arrays(seq, vocab, config, cats) for seq in both], vocab, config))
    test_figures = rank_metrics(scorer, test_seqs, cfg.k) if test_seqs is not None else None
    metadata = {
        "dataset": dataset or {},
        "seed": cfg.seed,
        "train_config": asdict(cfg),
        "split": {"train": len(train), "valid": len(valid), "test": len(test)},
        "n_items": vocab.n_items,
        "history": [asdict(s) for s in history],
        "best_epoch": best[1].epoch,
        "valid": best[2],
        "test": test_figures,
        "train_seconds": time.perf_counter() - started,
        "torch_version": str(torch.__version__),
        # Scenario side data (stream/core/cart.py, intent.py): plain lists and numbers.
        "bought_together": {"top_n": BOUGHT_TOGETHER_TOP_N, "pairs": bought_together([*train, *valid])},
        "purchase_calibration": calibration_metadata(scorer, valid_seqs),
    }
    if categories is not None and model.categories is None:
        categories = {item: categories[item] for item in vocab.items if item in categories}
    return TrainResult(model, vocab, history, best[1].epoch, best[2], test_figures, metadata, categories)
