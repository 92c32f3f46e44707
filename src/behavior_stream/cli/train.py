"""`behavior-stream train`: fit the GRU/LSTM sequence model on an event log and save the best checkpoint."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any, cast, get_args

import typer

from behavior_stream.cli.errors import InputError
from behavior_stream.cli.options import parse_format
from behavior_stream.data.loaders import FORMATS, load_events
from behavior_stream.data.splits import SplitUnit, default_split_unit
from behavior_stream.nn.config import CELLS, Cell, ModelConfig
from behavior_stream.training.config import Monitor, TrainConfig

log = logging.getLogger(__name__)


def _choice(value: str, choices: tuple[str, ...], hint: str) -> str:
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=hint)
    return value


def train_command(
    data: Annotated[Path, typer.Argument(help="Training events file.", exists=True, dir_okay=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.")] = "jsonl",
    cell: Annotated[str, typer.Option(help="gru|lstm.")] = "gru",
    out: Annotated[Path, typer.Option(help="Checkpoint to write (plus <out>.sha256).")] = Path("model.pt"),
    test: Annotated[
        Path | None, typer.Option(help="Separate test file; DATA is then split train/valid only.")
    ] = None,
    purchases: Annotated[Path | None, typer.Option(help="DIGINETICA purchases file.")] = None,
    epochs: Annotated[
        int, typer.Option(help="Maximum epochs (early stopping on validation).")
    ] = TrainConfig.epochs,
    batch_size: Annotated[int, typer.Option(help="Sequence windows per batch.")] = TrainConfig.batch_size,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = TrainConfig.lr,
    lr_decay: Annotated[
        float, typer.Option(help="Learning-rate multiplier per epoch.")
    ] = TrainConfig.lr_decay,
    hidden: Annotated[int, typer.Option(help="Hidden size.")] = ModelConfig.hidden_size,
    layers: Annotated[int, typer.Option(help="Recurrent layers.")] = ModelConfig.num_layers,
    dropout: Annotated[
        float, typer.Option(help="Dropout on inputs, between layers and on the output.")
    ] = ModelConfig.dropout,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same model).")] = TrainConfig.seed,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 2,
    valid_frac: Annotated[
        float, typer.Option(help="Share of events (by time) for validation.")
    ] = TrainConfig.valid_frac,
    test_frac: Annotated[
        float, typer.Option(help="Share of events (by time) for test; ignored with --test.")
    ] = TrainConfig.test_frac,
    split_unit: Annotated[
        str | None, typer.Option(help="event|sequence; default: sequence for session formats.")
    ] = None,
    max_len: Annotated[
        int, typer.Option(help="Predictions per training window (longer users are cut).")
    ] = TrainConfig.max_len,
    patience: Annotated[
        int, typer.Option(help="Epochs without improvement before stopping.")
    ] = TrainConfig.patience,
    monitor: Annotated[
        str, typer.Option(help="Early-stopping metric: recall|mrr (@20).")
    ] = TrainConfig.monitor,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a GRU/LSTM next-item + purchase model with a time split; saves the best epoch's weights."""
    from behavior_stream.nn.checkpoint import save_checkpoint
    from behavior_stream.training.loop import train_model

    fmt_ = parse_format(fmt)
    cell_ = cast(Cell, _choice(cell, CELLS, "--cell"))
    unit = cast(
        SplitUnit, _choice(split_unit or default_split_unit(fmt_), get_args(SplitUnit), "--split-unit")
    )
    monitor_ = cast(Monitor, _choice(monitor, get_args(Monitor), "--monitor"))
    try:
        config = ModelConfig(cell=cell_, hidden_size=hidden, num_layers=layers, dropout=dropout)
        train_cfg = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            lr_decay=lr_decay,
            seed=seed,
            threads=threads,
            valid_frac=valid_frac,
            test_frac=0.0 if test is not None else test_frac,
            split_unit=unit,
            max_len=max_len,
            patience=patience,
            monitor=monitor_,
            progress=progress,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    loaded = load_events(data, fmt_, purchases=purchases)
    if not loaded.events:
        raise InputError(str(data), f"no valid events to train on ({loaded.report.summary()})")
    test_events = load_events(test, fmt_).events if test is not None else None
    dataset: dict[str, Any] = {"path": str(data), "format": fmt_, "load": loaded.report.summary()}
    if test is not None:
        dataset["test_path"] = str(test)
    start = time.perf_counter()
    try:
        result = train_model(
            loaded.events,
            config,
            train_cfg,
            categories=loaded.categories or None,
            test_events=test_events,
            dataset=dataset,
        )
    except ValueError as exc:  # e.g. too few events for a train and a validation part
        raise InputError(str(data), str(exc)) from exc
    version = save_checkpoint(out, result.model, result.vocab, result.metadata, result.categories)
    typer.echo(
        f"trained {version} in {time.perf_counter() - start:.1f}s "
        f"(best epoch {result.best_epoch} of {len(result.history)}), saved {out}"
    )
    for stats in result.history:
        typer.echo(
            f"  epoch {stats.epoch}: loss {stats.train_loss:.4f}  valid recall@20 {stats.valid_recall:.4f} "
            f"mrr@20 {stats.valid_mrr:.4f}  {stats.seconds:.1f}s"
        )
    if result.test is not None:
        typer.echo(
            f"test: recall@20 {result.test['recall@20']:.4f}  mrr@20 {result.test['mrr@20']:.4f} "
            f"({result.test['predictions']:,} predictions)"
        )
