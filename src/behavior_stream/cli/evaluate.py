"""`behavior-stream evaluate`: model and baselines on the held-out split -> metrics.json, report.md, plots."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast, get_args

import typer

from behavior_stream.cli.errors import InputError
from behavior_stream.cli.options import parse_format
from behavior_stream.data.loaders import FORMATS, Format, load_events
from behavior_stream.data.splits import SplitUnit, default_split_unit, eval_sequences, time_split
from behavior_stream.schema.events import Event
from behavior_stream.schema.vocab import ItemVocab

# The evaluation modules pull in torch, scipy and matplotlib: imported inside the functions that
# use them, so that importing the CLI (every command, `--help` too) stays light.
if TYPE_CHECKING:
    from behavior_stream.evaluation.protocol import PurchaseScorer
    from behavior_stream.evaluation.scoring import NextItemScorer
    from behavior_stream.nn.checkpoint import LoadedModel

log = logging.getLogger(__name__)


def parse_ks(values: list[str], loose: list[str]) -> tuple[int, ...]:
    """K values from `--k` (repeatable, comma-separated allowed) plus loose integers after it."""
    ks: set[int] = set()
    for text in [*values, *loose]:
        for part in text.split(","):
            if not part.strip().isdigit() or int(part) < 1:
                raise typer.BadParameter(f"K must be a positive integer, got {part!r}", param_hint="--k")
            ks.add(int(part))
    return tuple(sorted(ks)) or (5, 10, 20)


def split_inputs(inputs: list[str]) -> tuple[Path, list[str]]:
    """DATA is the one argument that is not a bare integer naming no file; integers are extra K values
    (so `--k 5 10 20` works, although click options take one value each)."""
    loose = [x for x in inputs if x.isdigit() and not Path(x).exists()]
    paths = [x for x in inputs if x not in loose]
    if len(paths) != 1:
        raise typer.BadParameter(f"expected exactly one DATA file, got {paths or 'none'}", param_hint="DATA")
    return Path(paths[0]), loose


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def split_settings(
    train_config: dict[str, Any],
    valid_frac: float | None,
    test_frac: float | None,
    unit: str | None,
    fmt: Format,
) -> tuple[float, float, SplitUnit]:
    """CLI values, else the checkpoint's training split, else the defaults; warns when they disagree."""
    trained = (train_config.get("valid_frac"), train_config.get("test_frac"), train_config.get("split_unit"))
    chosen = (
        float(_first(valid_frac, trained[0], 0.1)),
        float(_first(test_frac, trained[1], 0.1)),
        str(_first(unit, trained[2], default_split_unit(fmt))),
    )
    if train_config and chosen != trained:
        log.warning(
            "split %s differs from the checkpoint's training split %s: test may overlap training",
            chosen,
            trained,
        )
    if chosen[2] not in get_args(SplitUnit):
        raise typer.BadParameter(f"unknown split unit {chosen[2]!r}", param_hint="--split-unit")
    return chosen[0], chosen[1], cast(SplitUnit, chosen[2])


def history_and_test(
    data: Path, fmt: Format, test: Path | None, purchases: Path | None, split: tuple[float, float, SplitUnit]
) -> tuple[list[Event], list[Event], dict[str, str], dict[str, Any]]:
    """(history, test events, item -> category, dataset description): the training split's parts, or
    DATA + the test file."""
    loaded = load_events(data, fmt, purchases=purchases)
    if not loaded.events:
        raise InputError(str(data), f"no valid events ({loaded.report.summary()})")
    categories = dict(loaded.categories)
    dataset: dict[str, Any] = {"path": str(data), "format": fmt, "load": loaded.report.summary()}
    if test is not None:
        test_loaded = load_events(test, fmt)
        history, test_events = loaded.events, test_loaded.events
        categories |= test_loaded.categories
        dataset["test_path"] = str(test)
    else:
        parts = time_split(loaded.events, *split)
        history, test_events = [*parts.train, *parts.valid], parts.test
        dataset["split"] = {
            "valid_frac": split[0],
            "test_frac": split[1],
            "unit": split[2],
            "test_start_ms": parts.test_start_ms,
        }
    dataset |= {"history_events": len(history), "test_events": len(test_events)}
    return history, test_events, categories, dataset


def _scorers(
    loaded: LoadedModel | None, names: list[str], history: list[Event], vocab: ItemVocab
) -> tuple[list[NextItemScorer], list[PurchaseScorer]]:
    """The model (when loaded) first, then the baselines fitted on the history, and purchase predictors."""
    from behavior_stream.evaluation.baselines import PurchaseBaseRate, make_baseline

    scorers: list[NextItemScorer] = []
    purchase: list[PurchaseScorer] = []
    if loaded is not None:
        from behavior_stream.evaluation.model_scorer import (
            ModelScorer,  # torch model code only when a model is evaluated
        )

        model_scorer = ModelScorer(loaded)
        scorers.append(model_scorer)
        purchase.append(model_scorer)
    start = time.perf_counter()
    scorers += [make_baseline(name).fit(history, vocab) for name in names]
    purchase.append(PurchaseBaseRate().fit(history, vocab))
    log.info("fitted baselines %s in %.1fs", names, time.perf_counter() - start)
    return scorers, purchase


def _baseline_names(text: str) -> list[str]:
    from behavior_stream.evaluation.baselines import BASELINE_NAMES

    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]
    unknown = sorted(set(names) - set(BASELINE_NAMES))
    if unknown:
        raise typer.BadParameter(
            f"unknown baselines {unknown}; choose from {BASELINE_NAMES}", param_hint="--baselines"
        )
    return names


def evaluate_command(
    inputs: Annotated[list[str], typer.Argument(metavar="DATA", help="Events file (the training data).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.")] = "jsonl",
    checkpoint: Annotated[
        Path | None, typer.Option(help="Trained model (.pt); omit for baselines only.")
    ] = None,
    test: Annotated[Path | None, typer.Option(help="Separate test file; DATA is then all history.")] = None,
    purchases: Annotated[Path | None, typer.Option(help="DIGINETICA purchases file.")] = None,
    k: Annotated[list[str] | None, typer.Option("--k", help="Cut-offs, e.g. --k 5 10 20.")] = None,
    baselines: Annotated[str, typer.Option(help="Comma-separated subset of pop,markov,sknn, or none.")] = (
        "pop,markov,sknn"
    ),
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("eval"),
    valid_frac: Annotated[float | None, typer.Option(help="Default: the checkpoint's, else 0.1.")] = None,
    test_frac: Annotated[float | None, typer.Option(help="Default: the checkpoint's, else 0.1.")] = None,
    split_unit: Annotated[
        str | None, typer.Option(help="event|sequence; default: checkpoint's, format's.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    n_bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
    gru4rec_compat: Annotated[
        bool | None, typer.Option(help="Drop unseen-item events before evaluating; default: on for gru4rec.")
    ] = None,
    probes: Annotated[
        bool, typer.Option(help="Add linear probes, geometry and stability of the model's representations.")
    ] = False,
) -> None:
    """Evaluate next-item ranking (model + baselines) and purchase prediction on the held-out split."""
    from behavior_stream.evaluation.baselines import item_counts
    from behavior_stream.evaluation.protocol import EvalConfig, evaluate, write_metrics
    from behavior_stream.evaluation.report import (
        NO_PLOTS_NOTE,
        next_item_table,
        plotting_available,
        purchase_table,
        write_report,
    )

    data, loose = split_inputs(inputs)
    ks = parse_ks(k or [], loose)
    fmt_ = parse_format(fmt)
    if probes and checkpoint is None:
        raise typer.BadParameter("--probes needs --checkpoint (it judges the model)")
    names = _baseline_names(baselines)
    loaded = None
    if checkpoint is not None:
        from behavior_stream.nn.checkpoint import load_checkpoint

        loaded = load_checkpoint(checkpoint)
    train_config = loaded.metadata.get("train_config", {}) if loaded else {}
    split = split_settings(train_config, valid_frac, test_frac, split_unit, fmt_)
    history, test_events, categories, dataset = history_and_test(data, fmt_, test, purchases, split)
    if loaded is not None:
        dataset |= {"checkpoint": str(checkpoint), "model_version": loaded.model_version}
    # The catalog is the one the model ranks; without a model, every item seen before the test period.
    vocab = loaded.vocab if loaded else ItemVocab.build(e.item_id for e in history)
    scorers, purchase_scorers = _scorers(loaded, names, history, vocab)
    drop_unseen = gru4rec_compat if gru4rec_compat is not None else fmt == "gru4rec"
    # The breakdown splits sessions where the model does; baselines alone use the default gap.
    gap_ms = loaded.config.session_gap_ms if loaded else EvalConfig.session_gap_ms
    config = EvalConfig(
        ks=ks, n_bootstrap=n_bootstrap, seed=seed, drop_unseen=drop_unseen, session_gap_ms=gap_ms
    )
    sequences = eval_sequences(history, test_events)
    metrics = evaluate(
        sequences, vocab, item_counts(history, vocab), scorers, purchase_scorers, config, dataset
    )
    if probes and loaded is not None:
        from behavior_stream.evaluation.probes import ProbeConfig
        from behavior_stream.evaluation.representations import probe_section

        # The data's categories cover items outside the catalog too; they win over the checkpoint's.
        categories = {**(loaded.item_categories or {}), **categories}
        metrics["probes"] = probe_section(loaded, history, test_events, categories, ProbeConfig(seed=seed))
    write_metrics(metrics, out)
    report = write_report(metrics, out, loaded.metadata.get("history") if loaded else None)
    counts = metrics["counts"]
    typer.echo(
        f"{counts['predictions']:,} predictions in {counts['sequences']:,} test sequences "
        f"({counts['skipped_unseen_targets']:,} unseen targets skipped)\n"
    )
    typer.echo(next_item_table(metrics))
    if metrics["purchase"]:
        typer.echo("\n" + purchase_table(metrics))
    typer.echo(f"\nwrote {out / 'metrics.json'} and {report}")
    if not plotting_available():
        typer.echo(NO_PLOTS_NOTE, err=True)
