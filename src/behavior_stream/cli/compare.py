"""`behavior-stream compare`: two checkpoints side by side, with paired bootstrap CIs of every difference."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from behavior_stream.cli.evaluate import parse_ks, split_inputs
from behavior_stream.cli.heldout import TrainedSplit, history_and_test, require_predictions, split_settings
from behavior_stream.cli.options import parse_format
from behavior_stream.data.loaders import FORMATS
from behavior_stream.data.splits import eval_sequences
from behavior_stream.evaluation import formatting

log = logging.getLogger(__name__)


def compare_table(result: dict[str, Any]) -> str:
    """Markdown table of every row: A, B, B - A with its 95% CI, and which is significantly better."""
    lines = [
        f"A = {result['a']['name']}, B = {result['b']['name']}; difference = B - A",
        "",
        "| group | metric | A | B | B - A | 95% CI | significant |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in result["rows"]:
        ci = "-" if r["ci95"] is None else formatting.interval(r["ci95"])
        sig = "-" if r["significant"] is None else ("yes" if r["significant"] else "no")
        if r["winner"]:
            sig += f" ({r['winner']} better)"
        values = " | ".join(formatting.fmt(r[key]) for key in ("a", "b", "diff"))
        lines.append(f"| {r['group']} | {r['metric']} | {values} | {ci} | {sig} |")
    return "\n".join(lines)


def compare_command(
    checkpoint_a: Annotated[Path, typer.Argument(metavar="A", help="First checkpoint (.pt).", exists=True)],
    checkpoint_b: Annotated[Path, typer.Argument(metavar="B", help="Second checkpoint (.pt).", exists=True)],
    inputs: Annotated[list[str], typer.Argument(metavar="DATA", help="Events file (the training data).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.")] = "jsonl",
    test: Annotated[Path | None, typer.Option(help="Separate test file; DATA is then all history.")] = None,
    purchases: Annotated[Path | None, typer.Option(help="DIGINETICA purchases file.")] = None,
    k: Annotated[list[str] | None, typer.Option("--k", help="Cut-offs, e.g. --k 5 10 20.")] = None,
    out: Annotated[Path, typer.Option(help="Output directory for compare.json.")] = Path("compare"),
    valid_frac: Annotated[float | None, typer.Option(help="Default: checkpoint A's, else 0.1.")] = None,
    test_frac: Annotated[float | None, typer.Option(help="Default: checkpoint A's, else 0.1.")] = None,
    split_unit: Annotated[
        str | None, typer.Option(help="event|sequence; default: checkpoint A's, format's.")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Bootstrap and probe-split seed.")] = 0,
    n_bootstrap: Annotated[int, typer.Option(min=1, help="Bootstrap resamples.")] = 1000,
    knn_k: Annotated[int, typer.Option(min=1, help="Neighbours for the k-NN agreement.")] = 10,
    gru4rec_compat: Annotated[
        bool | None, typer.Option(help="Drop unseen-item events before evaluating; default: on for gru4rec.")
    ] = None,
) -> None:
    """Compare two checkpoints on next-item, purchase, probe, geometry and stability metrics."""
    from behavior_stream.evaluation.compare import CompareConfig, compare_checkpoints, write_compare
    from behavior_stream.evaluation.probes import ProbeConfig
    from behavior_stream.nn.checkpoint import load_checkpoint

    data, loose = split_inputs(inputs)
    ks = parse_ks(k or [], loose)
    fmt_ = parse_format(fmt)
    a, b = load_checkpoint(checkpoint_a), load_checkpoint(checkpoint_b)
    split = split_settings(a.metadata.get("train_config", {}), valid_frac, test_frac, split_unit, fmt_)
    # The test part must be unseen by both: each checkpoint's recorded split is checked against it.
    trained = [TrainedSplit.of(str(path), m.metadata) for path, m in ((checkpoint_a, a), (checkpoint_b, b))]
    history, test_events, categories, dataset = history_and_test(
        data, fmt_, test, purchases, split, trained, frac_given=test_frac is not None
    )
    dataset |= {"checkpoint_a": str(checkpoint_a), "checkpoint_b": str(checkpoint_b)}
    # Labels may need items outside either catalog: the data's categories win over the checkpoints'.
    categories = {**(a.item_categories or {}), **(b.item_categories or {}), **categories}
    drop_unseen = gru4rec_compat if gru4rec_compat is not None else fmt == "gru4rec"
    # Each checkpoint ranks the targets its own catalog knows: with none, its side would be all n/a.
    sequences = eval_sequences(history, test_events)
    for name, model in ((checkpoint_a, a), (checkpoint_b, b)):
        gap = model.config.session_gap_ms
        require_predictions(data, sequences, model.vocab, gap, drop_unseen, str(name))
    config = CompareConfig(
        ks=ks,
        n_bootstrap=n_bootstrap,
        seed=seed,
        drop_unseen=drop_unseen,
        knn_k=knn_k,
        probe=ProbeConfig(seed=seed, n_bootstrap=n_bootstrap),
    )
    result = compare_checkpoints(a, b, history, test_events, categories, config, dataset)
    path = write_compare(result, out)
    counts = result["counts"]
    typer.echo(f"{counts['sequences']:,} test sequences, {counts['probe_users']:,} probe users\n")
    typer.echo(compare_table(result))
    typer.echo(f"\nwrote {path}")
