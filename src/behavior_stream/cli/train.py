"""`behavior-stream train`: fit the GRU/LSTM sequence model on an event log and save the best checkpoint."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any, cast, get_args

import typer

from behavior_stream.cli.errors import InputError
from behavior_stream.cli.options import SplitUnitOption, ValidFracOption, parse_format
from behavior_stream.data.loaders import FORMATS, load_events
from behavior_stream.data.splits import SplitUnit, default_split_unit
from behavior_stream.nn.config import CELLS, Cell, ModelConfig
from behavior_stream.training.config import Monitor, TrainConfig
from behavior_stream.training.configfile import read_settings

log = logging.getLogger(__name__)

# Options that set a ModelConfig / TrainConfig field of the same meaning (option name -> field).
MODEL_OPTIONS = {"cell": "cell", "hidden": "hidden_size", "layers": "num_layers", "dropout": "dropout"}
TRAIN_OPTIONS = {
    name: name
    for name in ("epochs", "batch_size", "lr", "lr_decay", "seed", "threads", "valid_frac", "test_frac",
                 "split_unit", "max_len", "patience", "monitor", "progress")
}  # fmt: skip


def _choice(value: str, choices: tuple[str, ...], hint: str) -> str:
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=hint)
    return value


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` was set by the user (command line or environment), not left at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def merge_settings(ctx: typer.Context, path: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ModelConfig fields, TrainConfig fields): the options' values, except that those left at
    their defaults take the settings file's value where it has one; the file may also set fields
    that have no option (item_dim, n_negatives, ...)."""
    params = ctx.params
    model = {field: params[name] for name, field in MODEL_OPTIONS.items()}
    train = {field: params[name] for name, field in TRAIN_OPTIONS.items()}
    if path is None:
        return model, train
    settings = read_settings(path)
    for fields_, options, given in (
        (model, MODEL_OPTIONS, settings.model),
        (train, TRAIN_OPTIONS, settings.train),
    ):
        by_field = {field: name for name, field in options.items()}
        for field, value in given.items():
            if field not in by_field or not _given(ctx, by_field[field]):
                fields_[field] = value
    return model, train


def train_command(
    ctx: typer.Context,
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
    valid_frac: ValidFracOption = TrainConfig.valid_frac,
    test_frac: Annotated[
        float, typer.Option(help="Share of events (by time) for test; ignored with --test.")
    ] = TrainConfig.test_frac,
    split_unit: SplitUnitOption = None,
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
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Settings file (JSON, as `tune` writes); options given explicitly override it.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Train a GRU/LSTM next-item + purchase model with a time split; saves the best epoch's weights."""
    from behavior_stream.nn.checkpoint import save_checkpoint
    from behavior_stream.training.loop import train_model

    fmt_ = parse_format(fmt)
    model_fields, train_fields = merge_settings(ctx, config_file)
    model_fields["cell"] = cast(Cell, _choice(model_fields["cell"], CELLS, "--cell"))
    unit = train_fields["split_unit"] or default_split_unit(fmt_)
    train_fields["split_unit"] = cast(SplitUnit, _choice(unit, get_args(SplitUnit), "--split-unit"))
    train_fields["monitor"] = cast(Monitor, _choice(train_fields["monitor"], get_args(Monitor), "--monitor"))
    if test is not None:
        train_fields["test_frac"] = 0.0
    try:
        config = ModelConfig(**model_fields)
        train_cfg = TrainConfig(**train_fields)
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
