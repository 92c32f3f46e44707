"""`behavior-stream evaluate`: model and baselines on the held-out split -> metrics.json, report.md, plots."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast, get_args

import typer

from behavior_stream.cli.errors import InputError
from behavior_stream.cli.options import parse_format
from behavior_stream.data.loaders import FORMATS, Format, load_events
from behavior_stream.data.splits import (
    EvalSequence,
    SplitUnit,
    default_split_unit,
    eval_sequences,
    time_split,
)
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


@dataclass(frozen=True)
class TrainedSplit:
    """What a checkpoint's metadata records about the split it was trained on (`training.loop`)."""

    name: str  # the checkpoint's path, for messages
    valid_frac: float | None
    test_frac: float | None
    unit: str | None
    events: int | None  # train + valid + test events it split, when recorded
    test_path: str | None  # the separate test file it was trained with (`train --test`)

    @classmethod
    def of(cls, name: str, metadata: dict[str, Any]) -> TrainedSplit:
        """Read from checkpoint metadata; anything not recorded (an older or hand-made checkpoint) is None."""
        config = metadata.get("train_config") or {}
        counts = metadata.get("split") or {}
        test_path = (metadata.get("dataset") or {}).get("test_path")
        # With a separate test file, DATA was split into train and valid only (test fraction 0).
        parts = [counts.get(key) for key in ("train", "valid", *(() if test_path else ("test",)))]
        sizes = [n for n in parts if isinstance(n, int)]
        return cls(
            name=name,
            valid_frac=config.get("valid_frac"),
            test_frac=config.get("test_frac"),
            unit=config.get("split_unit"),
            events=sum(sizes) if len(sizes) == len(parts) else None,
            test_path=test_path,
        )

    @property
    def recorded(self) -> bool:
        """Whether the metadata holds the whole split rule (fractions and unit)."""
        return None not in (self.valid_frac, self.test_frac, self.unit)


def split_settings(
    train_config: dict[str, Any],
    valid_frac: float | None,
    test_frac: float | None,
    unit: str | None,
    fmt: Format,
) -> tuple[float, float, SplitUnit]:
    """CLI values, else the checkpoint's training split, else the defaults. Whether the chosen split
    overlaps the checkpoint's training data is checked on the data (`check_test_split`)."""
    trained = (train_config.get("valid_frac"), train_config.get("test_frac"), train_config.get("split_unit"))
    chosen = (
        float(_first(valid_frac, trained[0], 0.1)),
        float(_first(test_frac, trained[1], 0.1)),
        str(_first(unit, trained[2], default_split_unit(fmt))),
    )
    if chosen[2] not in get_args(SplitUnit):
        raise typer.BadParameter(f"unknown split unit {chosen[2]!r}", param_hint="--split-unit")
    return chosen[0], chosen[1], cast(SplitUnit, chosen[2])


def _fix_for_trained(trained: TrainedSplit, unit: str) -> str:
    """The option that gives a test split disjoint from what `trained` was fitted on (`unit`: the
    split unit chosen now; the same fraction by another unit holds other events)."""
    if trained.test_path:
        return f"pass --test {trained.test_path} (the test file it was trained with)"
    if trained.test_frac:
        same_unit = "" if unit == trained.unit else f" with --split-unit {trained.unit}"
        return (
            f"pass --test-frac {trained.test_frac:g} (its held-out share) or less{same_unit}, or --test FILE"
        )
    return "pass --test-frac with the share of DATA after the data it trained on, or --test FILE"


def check_test_split(
    data: Path,
    events: Sequence[Event],
    split: tuple[float, float, SplitUnit],
    test_events: Sequence[Event],
    trained: Sequence[TrainedSplit],
    frac_given: bool,
) -> list[str]:
    """Raise `InputError` when the time split of DATA leaves no test events or puts events a
    checkpoint was trained or validated on into the test part; returns one note per checkpoint
    saying whether that was verified (it can be only when the checkpoint split these very events)."""
    test_frac, unit = split[1:]
    if not test_events:
        source = [t for t in trained if not frac_given and t.test_frac == test_frac]
        if source:
            cause = f"checkpoint {source[0].name} was trained with test fraction {test_frac:g} (reused here)"
            raise InputError(
                str(data), f"the test split is empty: {cause}; {_fix_for_trained(source[0], unit)}"
            )
        if test_frac == 0:
            raise InputError(
                str(data), "the test split is empty (--test-frac 0); pass --test-frac > 0 or --test FILE"
            )
        raise InputError(
            str(data),
            f"the test split is empty: a test fraction of {test_frac:g} of {len(events):,} events "
            f"({unit} split) holds none; raise --test-frac or pass --test FILE",
        )
    notes = []
    held_out = {id(e) for e in test_events}
    for t in trained:
        if not t.recorded or t.events != len(events):
            notes.append(
                f"{t.name}: not checked for overlap (it recorded a split of "
                f"{'unknown' if t.events is None else f'{t.events:,}'} events, DATA has {len(events):,})"
            )
            if (t.valid_frac, t.test_frac, t.unit) != split:
                log.warning("test split may overlap the training data of %s", notes[-1])
            continue
        # The checkpoint split these very events: its split, recomputed, is exactly what it saw.
        rule = (cast(float, t.valid_frac), cast(float, t.test_frac), cast(SplitUnit, t.unit))
        parts = time_split(events, *rule)
        seen = sum(id(e) in held_out for e in (*parts.train, *parts.valid))
        if seen:
            # Fitted on all of DATA: no fraction of it is new to the model, only a later file is.
            fix = (
                "it trained on all of DATA: pass --test FILE with events after it, or evaluate a checkpoint "
                "trained with --test-frac > 0"
                if not rule[1] and not t.test_path
                else _fix_for_trained(t, unit)
            )
            raise InputError(
                str(data),
                f"the test split overlaps checkpoint {t.name}'s training data: {seen:,} of "
                f"{len(test_events):,} test events were in its training or validation part (it split DATA "
                f"with valid {rule[0]:g}, test {rule[1]:g}, unit {rule[2]}); {fix}",
            )
        notes.append(f"{t.name}: checked, no test event was in its training or validation part")
    return notes


def history_and_test(
    data: Path,
    fmt: Format,
    test: Path | None,
    purchases: Path | None,
    split: tuple[float, float, SplitUnit],
    trained: Sequence[TrainedSplit] = (),
    frac_given: bool = True,
) -> tuple[list[Event], list[Event], dict[str, str], dict[str, Any]]:
    """(history, test events, item -> category, dataset description): the training split's parts, or
    DATA + the test file. Raises `InputError` for an empty test part or one that overlaps the data a
    checkpoint in `trained` was fitted on (`frac_given`: whether --test-frac was on the command line)."""
    loaded = load_events(data, fmt, purchases=purchases)
    if not loaded.events:
        raise InputError(str(data), f"no valid events ({loaded.report.summary()})")
    categories = dict(loaded.categories)
    dataset: dict[str, Any] = {"path": str(data), "format": fmt, "load": loaded.report.summary()}
    if test is not None:
        test_loaded = load_events(test, fmt)
        if not test_loaded.events:
            raise InputError(str(test), f"no valid test events ({test_loaded.report.summary()})")
        history, test_events = loaded.events, test_loaded.events
        categories |= test_loaded.categories
        dataset["test_path"] = str(test)
    else:
        parts = time_split(loaded.events, *split)
        history, test_events = [*parts.train, *parts.valid], parts.test
        notes = check_test_split(data, loaded.events, split, test_events, trained, frac_given)
        dataset["split"] = {
            "valid_frac": split[0],
            "test_frac": split[1],
            "unit": split[2],
            "test_start_ms": parts.test_start_ms,
            **({"training_overlap": notes} if notes else {}),
        }
    dataset |= {"history_events": len(history), "test_events": len(test_events)}
    return history, test_events, categories, dataset


def require_predictions(
    data: Path,
    sequences: Sequence[EvalSequence],
    vocab: ItemVocab,
    session_gap_ms: int,
    drop_unseen: bool,
    model: str | None = None,
) -> None:
    """Raise `InputError` when the test sequences give no next-item prediction at all (a table of n/a
    would follow); `model` names the checkpoint whose catalog was used, when there are two. The targets
    are counted as `evaluation.protocol.evaluate` counts them."""
    from behavior_stream.evaluation.ranking import drop_unseen_items, next_item_targets

    dropped = 0
    if drop_unseen:
        sequences, dropped = drop_unseen_items(sequences, vocab)
    targets = next_item_targets(sequences, vocab, session_gap_ms)
    if len(targets.items):
        return
    n_events = sum(len(s.events) for s in sequences)
    for_model = f" for {model}" if model else ""
    unseen = f"{targets.skipped_unseen:,} targets outside the model's catalog skipped"
    if dropped:
        unseen += f", {dropped:,} unseen-item events dropped (--gru4rec-compat)"
    raise InputError(
        str(data),
        f"0 next-item predictions{for_model} in {len(sequences):,} test sequences ({n_events:,} events; "
        f"a target is a user's 2nd or later test event with a catalog item; {unseen}); pass a larger "
        "--test-frac, or --test FILE with longer test sequences of catalog items",
    )


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
    scenarios: Annotated[
        bool, typer.Option(help="Add the shopping scenarios (search, cart, related, purchase intent).")
    ] = False,
    cart_horizon: Annotated[
        str, typer.Option(help="Cart targets: later basket items of the session | test (the rest of it).")
    ] = "session",
) -> None:
    """Evaluate next-item ranking (model + baselines) and purchase prediction on the held-out split."""
    from behavior_stream.evaluation.baselines import item_counts
    from behavior_stream.evaluation.plots import NO_PLOTS_NOTE, plotting_available
    from behavior_stream.evaluation.protocol import EvalConfig, evaluate, write_metrics
    from behavior_stream.evaluation.report import (
        next_item_table,
        probe_verdicts,
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
