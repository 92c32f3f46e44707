"""`behavior-stream retrain`: train on the recent log and publish the checkpoint the workers watch.

The events come from a file (`--log FILE --format F`) or from the input topic's retained events
(`--from-topic`): a plain aiokafka consumer, no consumer group, reads every partition from its
beginning (or from `--max-events` before its end) up to the end offsets it saw at the start.
The checkpoint goes to the `checkpoint` setting (or `--checkpoint`) through `save_checkpoint`,
so each worker's file watch hot-reloads it. `--every SECONDS` repeats it (the compose `retrain`
service); a failed or skipped round is logged and the loop goes on: one line for bad input
(a bad file, too little data), a traceback only for an unexpected error. With `--runs N` the
command's exit code is that of its last round: when the last round fails, it is reported as a
single round's failure would be (exit 2 for bad input), whatever the earlier rounds did, since
the checkpoint then served is not the one that round was to publish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from behavior_stream.cli.errors import EXIT_BAD_INPUT, InputError, describe
from behavior_stream.cli.options import ValidFracOption, load_flag_settings, parse_format, positive
from behavior_stream.cli.train import build_config, check_output, option_name, too_little_data
from behavior_stream.schema.events import Event, Invalid, parse_event

log = logging.getLogger(__name__)

# The TrainConfig and ModelConfig fields that options set, and the option of each.
SUBJECTS = {
    **{name: option_name(name) for name in ("epochs", "batch_size", "valid_frac", "seed", "threads")},
    "hidden_size": "--hidden",
}

READ_IDLE_MS = 1000  # a fetch this long without records past the end offsets ends the read
DRAIN_S = 5.0  # at most this long reading past the end offsets on a busy topic


async def read_retained(settings: Any, topic: str, max_events: int) -> tuple[list[Event], int]:
    """The topic's retained valid events (deduplicated by event id) and the number of invalid records.

    Tansu reports a partition's end offset as the base offset of its last record batch + 1, so
    after reaching the end offsets the read goes on until a fetch comes back empty (at most
    `DRAIN_S`): otherwise the last batch of each partition would be missed.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from behavior_stream.stream.runtime.kafka import client_options

    consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_options(settings))
    events: list[Event] = []
    seen: set[str] = set()
    invalid = 0
    try:
        await consumer.start()  # inside: a broker that is down still gets the client closed
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            raise InputError(f"topic {topic}", "does not exist or has no partitions")
        consumer.assign(tps)
        begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        for tp in tps:  # each partition's newest `max_events` at most: bounded memory and time
            consumer.seek(tp, max(begin[tp], end[tp] - max_events))
        drain_until: float | None = None
        while drain_until is None or time.monotonic() < drain_until:
            batch = await consumer.getmany(timeout_ms=READ_IDLE_MS, max_records=10_000)
            for msgs in batch.values():
                for msg in msgs:
                    parsed = parse_event(msg.value) if msg.value is not None else None
                    if parsed is None or isinstance(parsed, Invalid):
                        invalid += 1
                    elif parsed.event_id not in seen:  # a producer re-send is one event
                        seen.add(parsed.event_id)
                        events.append(parsed)
            if drain_until is None:
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                    drain_until = time.monotonic() + DRAIN_S
            elif not batch:
                break
    finally:
        await consumer.stop()
    log.info("read %d events (%d invalid records) from %s", len(events), invalid, topic)
    return events, invalid


def _load(settings: Any, log_file: Path | None, fmt: str, topic: str | None, max_events: int) -> list[Event]:
    if log_file is not None:
        from behavior_stream.data.loaders import load_events

        return load_events(log_file, parse_format(fmt)).events
    assert topic is not None
    events, _ = asyncio.run(read_retained(settings, topic, max_events))
    return events


def _check_schedule(every: float | None, runs: int | None, max_events: int, since: float | None) -> None:
    """The options that shape the rounds, before any round: a bad one would fail only after a
    round had trained and published (a negative --every at the first pause)."""
    positive(every, "--every")
    if runs is not None and runs < 1:
        raise typer.BadParameter(f"must be >= 1, got {runs}", param_hint="--runs")
    if max_events < 1:
        raise typer.BadParameter(f"must be >= 1, got {max_events}", param_hint="--max-events")
    positive(since, "--since")


def _round_failed(done: int, out: Path, exc: Exception) -> None:
    """Log a failed round of a schedule: bad input in one line, anything else with its traceback."""
    line, code = describe(exc)
    if code == EXIT_BAD_INPUT:
        log.error("retrain round %d failed: %s; %s is unchanged", done, line, out)
    else:
        log.exception("retrain round %d failed; %s is unchanged", done, out)


def retrain_command(
    log_file: Annotated[
        Path | None, typer.Option("--log", help="Event log file to train on.", exists=True, dir_okay=False)
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Format of --log.")] = "jsonl",
    from_topic: Annotated[
        bool, typer.Option("--from-topic", help="Train on the input topic's retained events.")
    ] = False,
    topic: Annotated[str | None, typer.Option(help="Topic for --from-topic (default: input topic).")] = None,
    max_events: Annotated[int, typer.Option(help="Train on at most the newest N events.")] = 1_000_000,
    since: Annotated[
        float | None, typer.Option(help="Only events within SECONDS (event time) of the newest one.")
    ] = None,
    min_events: Annotated[int, typer.Option(help="Skip a round with fewer events than this.")] = 100,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint to replace (default: the checkpoint setting).")
    ] = None,
    broker: Annotated[str | None, typer.Option(help="Broker URL, e.g. kafka://127.0.0.1:9092.")] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping on validation).")] = 3,
    batch_size: Annotated[int, typer.Option(help="Sequence windows per batch.")] = 32,
    hidden: Annotated[int | None, typer.Option(help="Hidden size (default: the current model's).")] = None,
    valid_frac: ValidFracOption = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 1,
    every: Annotated[
        float | None, typer.Option(help="Retrain every SECONDS (until stopped or --runs rounds).")
    ] = None,
    runs: Annotated[
        int | None,
        typer.Option(
            help="Rounds to run (default: 1, or unbounded with --every); exit code: the last round's."
        ),
    ] = None,
) -> None:
    """Retrain on the recent log (file or topic) and publish the checkpoint the workers hot-reload."""
    from behavior_stream.nn.config import ModelConfig
    from behavior_stream.training.config import TrainConfig
    from behavior_stream.training.loop import TooLittleData
    from behavior_stream.training.retrain import current_model, model_config, recent_events, retrain

    if (log_file is None) == (not from_topic):
        raise typer.BadParameter("give exactly one of --log FILE and --from-topic")
    _check_schedule(every, runs, max_events, since)
    settings = load_flag_settings(broker=broker, checkpoint=checkpoint)
    out = settings.checkpoint
    if out is None:
        raise typer.BadParameter("no checkpoint path: --checkpoint or BEHAVIOR_STREAM_CHECKPOINT")
    check_output("--checkpoint" if checkpoint is not None else "checkpoint setting", out,
                 {"--log": log_file}, sidecar=True)  # fmt: skip
    train_fields = {"epochs": epochs, "batch_size": batch_size, "valid_frac": valid_frac, "test_frac": 0.0,
                    "seed": seed, "threads": threads, "progress": False}  # fmt: skip
    train_cfg = build_config(TrainConfig, train_fields, SUBJECTS)
    if hidden is not None:  # checked now, not in the first round: the rest comes from the checkpoint
        build_config(ModelConfig, {"hidden_size": hidden}, SUBJECTS)
    source = str(log_file) if log_file is not None else (topic or settings.input_topic)
    from_name = None if log_file is not None else source
    rounds = runs if runs is not None else (1 if every is None else None)
    done, last_data = 0, None
    while rounds is None or done < rounds:
        if done:
            assert every is not None  # several rounds need a pause between them
            time.sleep(every)
        done += 1
        try:
            loaded = _load(settings, log_file, fmt, from_name, max_events)
            events = recent_events(loaded, max_events, since)
            data = (len(events), events[-1].event_id if events else None)
            if len(events) < min_events or data == last_data:
                reason = "no new events" if data == last_data else f"{len(events)} < --min-events"
                typer.echo(f"round {done}: skipped ({reason}); {out} unchanged")
                continue
            current = current_model(out)
            config = model_config(current, hidden_size=hidden)
            try:
                outcome = retrain(
                    events, out, config, train_cfg, current, {"source": source, "events": len(events)}
                )
            except TooLittleData as exc:
                raise too_little_data(exc, source, SUBJECTS) from exc
            last_data = data
        except Exception as exc:
            if every is None or done == rounds:
                raise  # one round, or the last: the CLI's error handling reports it (cli/errors.py)
            # A scheduled service outlives a bad round (broker down, too little data for a split).
            _round_failed(done, out, exc)
            continue
        recall = outcome.valid.get("recall@20", float("nan"))
        typer.echo(
            f"round {done}: published {outcome.version} at {out} (was {outcome.previous_version}; "
            f"{outcome.events:,} events, {outcome.catalog_items:,} items, {outcome.new_items:,} new, "
            f"valid recall@20 {recall:.4f}, {outcome.seconds:.1f}s, trained from scratch)"
        )
