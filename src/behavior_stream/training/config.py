"""Settings of training (`TrainConfig`): optimisation, data split, early stopping.

No torch here: the CLI builds and validates it before importing the model code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from behavior_stream.data.splits import SplitUnit
from behavior_stream.nn.config import SettingError, check_choice, check_float, check_int

Monitor = Literal["recall", "mrr"]
# Next-item softmax: "auto" is exact up to `full_softmax_max_items` catalog items, sampled above.
ItemSoftmax = Literal["auto", "full", "sampled"]
# Proposal of the sampled softmax's negatives: uniform, or popularity ** sample_alpha with logQ.
Negatives = Literal["uniform", "popularity"]
Optimizer = Literal["adamw", "adagrad"]
SEED_MAX = 2**32 - 1  # numpy, torch and optuna's samplers all take a seed in [0, 2**32)
THREADS_MAX = 1024  # torch overflows far above this; no CPU here has more cores
AUX_HEADS = ("session_purchase", "next_type", "log_gap", "session_rest", "next_category", "future")


@dataclass(frozen=True)
class TrainConfig:
    """Optimization, data split and early-stopping settings (the model's own are in `ModelConfig`)."""

    epochs: int = 5
    batch_size: int = 32
    lr: float = 0.02
    lr_decay: float = 0.5  # learning-rate multiplier after each epoch: fast start, then settle
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    seed: int = 0
    threads: int = 1
    valid_frac: float = 0.1
    test_frac: float = 0.1
    split_unit: SplitUnit = "event"
    max_len: int = 200
    burn_in: int = 50
    n_oov_buckets: int = 1024
    optimizer: Optimizer = "adamw"
    momentum: float = 0.0  # of optimizer "adagrad" (GRU4Rec's Adagrad with momentum)
    # Per-step decay of a moving average of the weights, which is what is validated and kept
    # (training/optim.py `WeightAverage`); 0 = off, the raw weights are used.
    ema_decay: float = 0.0
    # Up to this catalog size the softmax is exact (in chunks); above it, sampled negatives.
    item_softmax: ItemSoftmax = "auto"
    full_softmax_max_items: int = 20_000
    n_negatives: int = 2048
    negatives: Negatives = "uniform"
    sample_alpha: float = 0.5  # popularity exponent of `negatives="popularity"` (0 = uniform)
    softmax_chunk: int = 512
    purchase_weight: float = 0.2
    k: int = 20
    monitor: Monitor = "recall"
    patience: int = 2
    progress: bool = True
    # Auxiliary heads (nn/heads.py, training/multitask.py): weights of their losses beside the
    # next-item loss; a head the model lacks (no side data, future_k 0) adds nothing. Session
    # purchase at 1.0 (not 0.2) is what moved the next-session purchase probe off chance on
    # generated data, at the same Recall@20 (README, "Representations with intent").
    session_purchase_weight: float = 1.0
    next_type_weight: float = 0.1
    log_gap_weight: float = 0.05
    session_rest_weight: float = 0.2
    next_category_weight: float = 0.1
    future_weight: float = 0.2

    def __post_init__(self) -> None:
        """Check every field on its own, so an error names the one field (`SettingError`)."""
        for name in ("epochs", "batch_size", "max_len", "n_negatives", "softmax_chunk", "k", "patience"):
            check_int(name, getattr(self, name), 1)
        check_int("seed", self.seed, 0, SEED_MAX)
        check_int("threads", self.threads, 1, THREADS_MAX)
        check_int("burn_in", self.burn_in, 0)
        # >= 1: an item outside the catalog is hashed into one of the buckets (schema/vocab.py).
        check_int("n_oov_buckets", self.n_oov_buckets, 1)
        check_int("full_softmax_max_items", self.full_softmax_max_items, 0)  # 0: always sampled
        check_float("lr", self.lr, 0.0, low_open=True)
        check_float("lr_decay", self.lr_decay, 0.0, 1.0, low_open=True)
        check_float("weight_decay", self.weight_decay, 0.0)
        # 0 would scale every gradient to nothing, a negative norm flips it (torch clip_grad_norm_).
        check_float("clip_norm", self.clip_norm, 0.0, low_open=True)
        check_float("valid_frac", self.valid_frac, 0.0, 1.0, low_open=True, high_open=True)
        check_float("test_frac", self.test_frac, 0.0, 1.0, high_open=True)  # 0: no test part
        if self.valid_frac + self.test_frac >= 1:
            raise SettingError(
                ("valid_frac", "test_frac"),
                f"must sum to less than 1 (the rest is training), got {self.valid_frac} + {self.test_frac}",
            )
        check_float("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_float("ema_decay", self.ema_decay, 0.0, 1.0, high_open=True)  # 0: off
        check_float("sample_alpha", self.sample_alpha, 0.0, 1.0)
        check_float("purchase_weight", self.purchase_weight, 0.0)
        for name in AUX_HEADS:
            check_float(f"{name}_weight", getattr(self, f"{name}_weight"), 0.0)
        for name, kind in (("split_unit", SplitUnit), ("monitor", Monitor), ("item_softmax", ItemSoftmax),
                           ("negatives", Negatives), ("optimizer", Optimizer)):  # fmt: skip
            check_choice(name, getattr(self, name), get_args(kind))
