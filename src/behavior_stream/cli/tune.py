"""`behavior-stream tune`: search model and training settings on validation; write the best as a config."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any, cast, get_args

import typer

from behavior_stream.cli.errors import InputError
from behavior_stream.cli.options import SplitUnitOption, ValidFracOption, parse_format
from behavior_stream.cli.train import build_config, check_output, choice, option_name, too_little_data
from behavior_stream.data.loaders import FORMATS, load_events
from behavior_stream.data.splits import SplitUnit, default_split_unit
from behavior_stream.nn.config import CELLS, Cell, ModelConfig
from behavior_stream.schema.events import Event
from behavior_stream.training.config import Monitor, TrainConfig

# Columns every trial has, in this order; the searched params follow (n_negatives only when sampled).
FIRST_COLUMNS = ("number", "state", "value", "seconds", "best_epoch")
# The TrainConfig fields that options set, and the option of each (for error messages).
TRAIN_SUBJECTS = {
    **{name: option_name(name) for name in ("seed", "threads", "valid_frac", "test_frac", "split_unit")},
    "monitor": "--metric",
}


def _load(path: Path, fmt: Any, purchases: Path | None, what: str) -> list[Event]:
    loaded = load_events(path, fmt, purchases=purchases)
    if not loaded.events:
        raise InputError(str(path), f"no valid events to {what} ({loaded.report.summary()})")
    return loaded.events


def write_trials_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """The trials table: the fixed columns, then every param any trial had (blank where it had none)."""
    params = sorted({key for row in rows for key in row} - set(FIRST_COLUMNS))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*FIRST_COLUMNS, *params], restval="")
        writer.writeheader()
        writer.writerows(rows)


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def tune_command(
    data: Annotated[
        Path,
        typer.Argument(help="Events file (split by time as `train` splits it).", exists=True, dir_okay=False),
    ],
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.")] = "jsonl",
    trials: Annotated[int, typer.Option(min=1, help="Number of trials (at most).")] = 20,
    budget_s: Annotated[
        float, typer.Option(min=0.0, help="No trial starts after this many seconds (the running one ends).")
    ] = 600.0,
    metric: Annotated[str, typer.Option(help="Validation metric to maximise: recall|mrr (@20).")] = "recall",
    out: Annotated[Path, typer.Option(help="Directory for best.json and trials.csv.")] = Path("runs/tune"),
    cell: Annotated[str, typer.Option(help="gru|lstm (not searched).")] = "gru",
    max_epochs: Annotated[
        int, typer.Option(min=1, help="Largest epochs value searched.")
    ] = TrainConfig.epochs,
    valid: Annotated[
        Path | None,
        typer.Option(
            help="Separate validation file (later in time); DATA is then all training.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    purchases: Annotated[Path | None, typer.Option(help="DIGINETICA purchases file.")] = None,
    seed: Annotated[
        int, typer.Option(help="Seeds the sampler and every trial's training.")
    ] = TrainConfig.seed,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 1,
    valid_frac: ValidFracOption = TrainConfig.valid_frac,
    test_frac: Annotated[
        float, typer.Option(help="Share of events (by time) held out as test and never used here.")
    ] = TrainConfig.test_frac,
    split_unit: SplitUnitOption = None,
    gru4rec_compat: Annotated[
        bool | None,
        typer.Option(
            help="With --valid: drop validation events whose item is not in DATA (as evaluate "
            "--gru4rec-compat); default: on for gru4rec."
        ),
    ] = None,
) -> None:
    """Search hidden size, item dim, dropout, lr, lr decay, weight decay, batch size, epochs (and the
    negatives' number and proposal when sampled) with TPE and median pruning; writes OUT/best.json
    for `train --config` and OUT/trials.csv."""
    fmt_ = parse_format(fmt)
    cell_ = cast(Cell, choice(cell, CELLS, "--cell"))
    metric_ = cast(Monitor, choice(metric, get_args(Monitor), "--metric"))
    unit = cast(
        SplitUnit, choice(split_unit or default_split_unit(fmt_), get_args(SplitUnit), "--split-unit")
    )
    model = ModelConfig(cell=cell_)
    train_fields = {
        "seed": seed,
        "threads": threads,
        "valid_frac": valid_frac,  # with --valid, unused here but kept for `train --config`
        "test_frac": test_frac,
        "split_unit": unit,
        "monitor": metric_,
        "progress": False,
    }
    train = build_config(TrainConfig, train_fields, TRAIN_SUBJECTS)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}", "is not a directory (tune writes best.json and trials.csv into it)")
    inputs = {"DATA": data, "--valid": valid, "--purchases": purchases}
    for name in ("best.json", "trials.csv"):
        check_output("--out", out / name, inputs)
    events = _load(data, fmt_, purchases, "tune on")
    valid_events = _load(valid, fmt_, None, "validate on") if valid is not None else None

    from behavior_stream.training.configfile import write_settings
    from behavior_stream.training.loop import TooLittleData
    from behavior_stream.training.tune import NoTrialCompleted, run_study, trial_rows

    def show(trial: Any) -> None:
        value = "" if trial.value is None else f" {metric_}@20 {trial.value:.4f}"
        seconds = trial.duration.total_seconds() if trial.duration is not None else 0.0
        typer.echo(f"trial {trial.number}: {trial.state.name.lower()}{value} in {seconds:.1f}s "
                   f"({_params_text(trial.params)})")  # fmt: skip

    try:
        result = run_study(
            events, model, train, n_trials=trials, budget_s=budget_s, max_epochs=max_epochs,
            valid_events=valid_events, on_trial=show,
            drop_unseen=gru4rec_compat if gru4rec_compat is not None else fmt_ == "gru4rec",
        )  # fmt: skip
    except NoTrialCompleted as exc:
        raise InputError("--budget-s", str(exc)) from exc
    except TooLittleData as exc:
        if valid is not None:  # that file is the validation part
            raise InputError(str(valid), f"{exc.detail}; use a longer --valid file") from exc
        raise too_little_data(exc, str(data), TRAIN_SUBJECTS) from exc
    except ValueError as exc:  # too few events, a validation file that overlaps in time, ...
        raise InputError(str(data), str(exc)) from exc
    best = result.study.best_trial
    rows = trial_rows(result.study)
    out.mkdir(parents=True, exist_ok=True)
    tuned = {
        "data": str(data), "format": fmt_, "valid": str(valid) if valid is not None else None,
        "metric": f"{metric_}@20", "value": best.value, "trial": best.number, "trials": len(rows),
        "pruned": sum(row["state"] == "pruned" for row in rows), "seconds": round(result.seconds, 1),
        "best_epoch": best.user_attrs.get("best_epoch"), "valid_figures": {
            key: best.user_attrs.get(key) for key in ("recall@20", "mrr@20")},
    }  # fmt: skip
    write_settings(out / "best.json", result.model, result.train, tuned)
    write_trials_csv(out / "trials.csv", rows)
    typer.echo(
        f"best trial {best.number} of {len(rows)} ({tuned['pruned']} pruned, {result.seconds:.0f}s): "
        f"valid recall@20 {best.user_attrs['recall@20']:.4f} mrr@20 {best.user_attrs['mrr@20']:.4f} "
        f"(epoch {best.user_attrs['best_epoch']}; {_params_text(best.params)})"
    )
    best_file = out / "best.json"
    typer.echo(f"wrote {best_file} and {out / 'trials.csv'}; "
               f"train with: behavior-stream train {data} --format {fmt_} --config {best_file}")  # fmt: skip
