"""`behavior-stream train`: fit the GRU/LSTM sequence model on an event log and save the best checkpoint."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast, get_args

import typer

from behavior_stream.cli.errors import InputError
from behavior_stream.cli.options import SplitUnitOption, ValidFracOption, parse_format
from behavior_stream.data.loaders import FORMATS, catalog_sidecar, load_events
from behavior_stream.data.splits import SplitUnit, default_split_unit
from behavior_stream.nn.config import CELLS, Cell, ModelConfig, SettingError
from behavior_stream.training.config import Monitor, TrainConfig
from behavior_stream.training.configfile import read_settings

if TYPE_CHECKING:  # the loop imports torch: only when training runs
    from behavior_stream.training.loop import TooLittleData

log = logging.getLogger(__name__)

# Options that set a ModelConfig / TrainConfig field of the same meaning (option name -> field).
MODEL_OPTIONS = {"cell": "cell", "hidden": "hidden_size", "layers": "num_layers", "dropout": "dropout"}
TRAIN_OPTIONS = {
    name: name
    for name in ("epochs", "batch_size", "lr", "lr_decay", "seed", "threads", "valid_frac", "test_frac",
                 "split_unit", "max_len", "patience", "monitor", "progress")
}  # fmt: skip
Config = TypeVar("Config")


def option_name(name: str) -> str:
    """The command-line spelling of a parameter: `valid_frac` -> `--valid-frac`."""
    return "--" + name.replace("_", "-")


def choice(value: str, choices: tuple[str, ...], hint: str) -> str:
    """`value` if it is one of `choices`, else a usage error naming `hint` (the option or key)."""
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=hint)
    return value


def build_config(cls: Callable[..., Config], fields: dict[str, Any], subjects: Mapping[str, str]) -> Config:
    """`cls(**fields)` (ModelConfig, TrainConfig); a value out of range is an `InputError` naming
    where it came from: `subjects` maps a field to its option or settings-file key."""
    try:
        return cls(**fields)
    except SettingError as exc:
        raise InputError(" and ".join(subjects.get(f, f) for f in exc.fields), exc.problem) from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): the same only if they are the same path
        return a.resolve() == b.resolve()


def _check_writable(option: str, path: Path) -> None:
    """Refuse a `path` whose directory can never be made or written (its nearest existing ancestor
    is a file, or a directory this user may not write), so training is not spent before the save
    fails. Saving creates the missing directories, so only the nearest existing one is asked."""
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{option} {path}", f"{ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}", f"directory {ancestor} is not writable")


def check_output(
    option: str, path: Path, inputs: Mapping[str, Path | None], *, sidecar: bool = False
) -> None:
    """Refuse, before any work, an output path (with `sidecar`, also its `.sha256`) that cannot be
    written, is a directory or is the same file as one of `inputs` (what names it -> path; None:
    not given), which writing it would destroy."""
    from behavior_stream.nn.checkpoint import sidecar_path  # torch: only once a command runs

    _check_writable(option, path)
    targets = [path, sidecar_path(path)] if sidecar else [path]
    for target in targets:
        what = "" if target == path else f"its checksum file {target} "
        if target.is_dir():
            raise InputError(f"{option} {path}", f"{what}is a directory")
        for name, source in inputs.items():
            if source is not None and _same_file(target, source):
                raise InputError(f"{option} {path}", f"{what}is the same file as {name} {source}: "
                                 "writing it would overwrite that input")  # fmt: skip


def too_little_data(exc: TooLittleData, subject: str, subjects: Mapping[str, str]) -> InputError:
    """A data set too small for its split as an `InputError` on `subject`, naming the option (or
    settings-file key, from `subjects`) that sizes the part short of data."""
    if exc.setting is None:
        return InputError(subject, str(exc))
    fix = f"use more events or a larger {subjects.get(exc.setting, exc.setting)}"
    if exc.setting == "test_frac":
        fix += " (0: no test part)"
    return InputError(subject, f"{exc.detail}; {fix}")


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` was set by the user (command line or environment), not left at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


@dataclass(frozen=True)
class Merged:
    """ModelConfig and TrainConfig fields, and where each came from (for error messages): the
    option (`--hidden`) or the settings-file key (`model.hidden_size in FILE`)."""

    model: dict[str, Any]
    train: dict[str, Any]
    model_subjects: dict[str, str]
    train_subjects: dict[str, str]


def merge_settings(ctx: typer.Context, path: Path | None) -> Merged:
    """The options' values, except that those left at their defaults take the settings file's
    value where it has one; the file may also set fields that have no option (item_dim,
    n_negatives, ...)."""
    params = ctx.params
    merged = Merged(
        {field: params[name] for name, field in MODEL_OPTIONS.items()},
        {field: params[name] for name, field in TRAIN_OPTIONS.items()},
        {field: option_name(name) for name, field in MODEL_OPTIONS.items()},
        {field: option_name(name) for name, field in TRAIN_OPTIONS.items()},
    )
    if path is None:
        return merged
    settings = read_settings(path)
    for section, fields_, subjects, options, given in (
        ("model", merged.model, merged.model_subjects, MODEL_OPTIONS, settings.model),
        ("train", merged.train, merged.train_subjects, TRAIN_OPTIONS, settings.train),
    ):
        by_field = {field: name for name, field in options.items()}
        for field, value in given.items():
            if field not in by_field or not _given(ctx, by_field[field]):
                fields_[field] = value
                subjects[field] = f"{section}.{field} in {path}"
    return merged


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
    fmt_ = parse_format(fmt)
    merged = merge_settings(ctx, config_file)
    model_fields, train_fields, train_subjects = merged.model, merged.train, merged.train_subjects
    model_fields["cell"] = cast(Cell, choice(model_fields["cell"], CELLS, merged.model_subjects["cell"]))
    unit = train_fields["split_unit"] or default_split_unit(fmt_)
    train_fields["split_unit"] = cast(
        SplitUnit, choice(unit, get_args(SplitUnit), train_subjects["split_unit"])
    )
    train_fields["monitor"] = cast(
        Monitor, choice(train_fields["monitor"], get_args(Monitor), train_subjects["monitor"])
    )
    if test is not None:
        train_fields["test_frac"] = 0.0
    config = build_config(ModelConfig, model_fields, merged.model_subjects)
    train_cfg = build_config(TrainConfig, train_fields, train_subjects)
    inputs = {"DATA": data, "--test": test, "--purchases": purchases, "--config": config_file,
              "the catalog of DATA": catalog_sidecar(data) if fmt_ == "jsonl" else None}  # fmt: skip
    check_output("--out", out, inputs, sidecar=True)

    from behavior_stream.nn.checkpoint import save_checkpoint
    from behavior_stream.training.loop import NonFiniteLoss, TooLittleData, train_model

    loaded = load_events(data, fmt_, purchases=purchases)
    if not loaded.events:
        raise InputError(str(data), f"no valid events to train on ({loaded.report.summary()})")
    test_events = None
    if test is not None:
        loaded_test = load_events(test, fmt_)
        if not loaded_test.events:
            raise InputError(str(test), f"no valid events to test on ({loaded_test.report.summary()})")
        test_events = loaded_test.events
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
    except NonFiniteLoss as exc:  # the settings' fault (most often the learning rate), not the data's
        raise InputError(train_subjects["lr"], f"{exc}; no checkpoint written") from exc
    except TooLittleData as exc:
        subject = str(test) if exc.setting is None and test is not None else str(data)
        raise too_little_data(exc, subject, train_subjects) from exc
    except ValueError as exc:  # the data itself, e.g. a test file that overlaps training in time
        raise InputError(str(data) if test is None else f"{data} with --test {test}", str(exc)) from exc
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
