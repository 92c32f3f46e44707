"""`behavior-stream evaluate`: model and baselines on the held-out split -> metrics.json, report.md, plots."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from behavior_stream.cli.heldout import TrainedSplit, history_and_test, require_predictions, split_settings
from behavior_stream.cli.options import parse_format
from behavior_stream.data.loaders import FORMATS
from behavior_stream.data.splits import EvalSequence, eval_sequences
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


def _scenario_section(
    loaded: LoadedModel,
    history: list[Event],
    sequences: list[EvalSequence],
    seed: int,
    n_bootstrap: int,
    horizon: str,
) -> dict[str, Any]:
    """The scenarios beside their baselines, with the checkpoint's purchase calibration (if any)."""
    from behavior_stream.evaluation.scenario_eval import CartHorizon, ScenarioConfig, evaluate_scenarios
    from behavior_stream.training.calibration import Platt

    platt = Platt.from_metadata(loaded.metadata)
    cfg = ScenarioConfig(
        seed=seed,
        n_bootstrap=n_bootstrap,
        calibrate=platt.apply if platt is not None else None,
        threshold=platt.threshold if platt is not None else 0.5,
        cart_horizon=cast("CartHorizon", horizon),
    )
    return evaluate_scenarios(loaded, history, sequences, cfg)


def _baseline_names(text: str) -> list[str]:
    """The baselines of `--baselines`; empty for `none` (or an empty value): the model alone."""
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
    seed: Annotated[int, typer.Option(min=0, help="Bootstrap seed.")] = 0,
    n_bootstrap: Annotated[int, typer.Option(min=1, help="Bootstrap resamples.")] = 1000,
    gru4rec_compat: Annotated[
        bool | None, typer.Option(help="Drop unseen-item events before evaluating; default: on for gru4rec.")
    ] = None,
    probes: Annotated[
        bool, typer.Option(help="Add linear probes, geometry and stability of the model's representations.")
    ] = False,
    scenarios: Annotated[
        bool, typer.Option(help="Add the shopping scenarios (search, cart, related, purchase intent).")
    ] = False,
    cart_horizon: Annotated[
        str, typer.Option(help="Cart targets: later basket items of the session | test (the rest of it).")
    ] = "session",
) -> None:
    """Evaluate next-item ranking (model + baselines) and purchase prediction on the held-out split."""
    from behavior_stream.evaluation.baselines import BASELINE_NAMES, item_counts
    from behavior_stream.evaluation.plots import NO_PLOTS_NOTE, plotting_available
    from behavior_stream.evaluation.probe_report import probe_verdicts
    from behavior_stream.evaluation.protocol import EvalConfig, evaluate, write_metrics
    from behavior_stream.evaluation.report import (
        next_item_table,
        purchase_table,
        versus_table,
        write_report,
    )

    data, loose = split_inputs(inputs)
    ks = parse_ks(k or [], loose)
    fmt_ = parse_format(fmt)
    if probes and checkpoint is None:
        raise typer.BadParameter("--probes needs --checkpoint (it judges the model)")
    if scenarios and checkpoint is None:
        raise typer.BadParameter("--scenarios needs --checkpoint (it judges the model)")
    if cart_horizon not in ("session", "test"):
        raise typer.BadParameter(f"{cart_horizon!r} is not one of session, test", param_hint="--cart-horizon")
    names = _baseline_names(baselines)
    if not names and checkpoint is None:
        raise typer.BadParameter(
            f"nothing to evaluate: pass --checkpoint or a baseline ({', '.join(BASELINE_NAMES)})",
            param_hint="--baselines",
        )
    loaded = None
    if checkpoint is not None:
        from behavior_stream.nn.checkpoint import load_checkpoint

        loaded = load_checkpoint(checkpoint)
    train_config = loaded.metadata.get("train_config", {}) if loaded else {}
    split = split_settings(train_config, valid_frac, test_frac, split_unit, fmt_)
    trained = [TrainedSplit.of(str(checkpoint), loaded.metadata)] if loaded else []
    history, test_events, categories, dataset = history_and_test(
        data, fmt_, test, purchases, split, trained, frac_given=test_frac is not None
    )
    if loaded is not None:
        dataset |= {"checkpoint": str(checkpoint), "model_version": loaded.model_version}
    # The catalog is the one the model ranks; without a model, every item seen before the test period.
    vocab = loaded.vocab if loaded else ItemVocab.build(e.item_id for e in history)
    drop_unseen = gru4rec_compat if gru4rec_compat is not None else fmt == "gru4rec"
    # The breakdown splits sessions where the model does; baselines alone use the default gap.
    gap_ms = loaded.config.session_gap_ms if loaded else EvalConfig.session_gap_ms
    sequences = eval_sequences(history, test_events)
    # Before any scorer is fitted or run: with nothing to predict, the tables would be all n/a.
    require_predictions(data, sequences, vocab, gap_ms, drop_unseen)
    scorers, purchase_scorers = _scorers(loaded, names, history, vocab)
    config = EvalConfig(
        ks=ks, n_bootstrap=n_bootstrap, seed=seed, drop_unseen=drop_unseen, session_gap_ms=gap_ms
    )
    # The model is the first scorer: the baselines' paired differences are taken from it.
    reference = scorers[0].name if loaded is not None else None
    popularity = item_counts(history, vocab)
    metrics = evaluate(
        sequences, vocab, popularity, scorers, purchase_scorers, config, dataset, reference=reference
    )
    if probes and loaded is not None:
        from behavior_stream.evaluation.probes import ProbeConfig
        from behavior_stream.evaluation.representations import probe_section

        # The data's categories cover items outside the catalog too; they win over the checkpoint's.
        categories = {**(loaded.item_categories or {}), **categories}
        metrics["probes"] = probe_section(
            loaded, history, test_events, categories, ProbeConfig(seed=seed, n_bootstrap=n_bootstrap)
        )
    if scenarios and loaded is not None:
        metrics["scenarios"] = _scenario_section(loaded, history, sequences, seed, n_bootstrap, cart_horizon)
    write_metrics(metrics, out)
    report = write_report(metrics, out, loaded.metadata.get("history") if loaded else None)
    counts = metrics["counts"]
    typer.echo(
        f"{counts['predictions']:,} predictions in {counts['sequences']:,} test sequences "
        f"({counts['skipped_unseen_targets']:,} unseen targets skipped)\n"
    )
    typer.echo(next_item_table(metrics))
    if metrics.get("versus"):
        typer.echo("\nModel vs baselines (paired 95% CI):\n" + versus_table(metrics))
    if metrics["purchase"]:
        typer.echo("\n" + purchase_table(metrics))
    if metrics.get("scenarios"):
        from behavior_stream.evaluation.scenario_report import scenario_table

        typer.echo("\n" + scenario_table(metrics["scenarios"]))
    if "purchase" in metrics.get("probes", {}):
        # Said on the terminal too: a probe at chance is the finding, not a footnote of report.md.
        typer.echo("\n" + "\n".join(probe_verdicts(metrics["probes"]) or ["Every probe beats its baseline."]))
    typer.echo(f"\nwrote {out / 'metrics.json'} and {report}")
    if not plotting_available():
        typer.echo(NO_PLOTS_NOTE, err=True)
