"""Worker settings: the only module that reads the environment (`BEHAVIOR_STREAM_*`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from behavior_stream.stream.core.outputs import ExcludePolicy

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LogLevel = Literal["debug", "info", "warning", "error"]

# One broker address: what both Faust (yarl URLs) and aiokafka (`collect_hosts`) read the same way.
# The port defaults to 9092 in both; IPv6 literals need brackets (aiokafka's rule).
BROKER_ADDRESS = re.compile(
    r"(?:kafka://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_][A-Za-z0-9._-]*)(?::([0-9]{1,5}))?"
)
BROKER_SEPARATORS = re.compile(r"[;,]")  # Faust takes either between addresses
BROKER_FORM = "kafka://HOST:PORT or HOST:PORT (PORT 1-65535; several joined by ';' or ',')"


class Settings(BaseSettings):
    """Everything a worker, replay or demo needs to know; each field is `BEHAVIOR_STREAM_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="BEHAVIOR_STREAM_", frozen=True, extra="ignore")

    # Kafka
    broker: str = Field("kafka://127.0.0.1:9092", description="Faust broker URL(s), kafka://host:port")
    app_id: str = Field("behavior-stream", description="Consumer group and changelog prefix")
    partitions: int = Field(4, ge=1, description="Partitions of the input and state topics")
    input_topic: str = "behavior-events"
    repartition_topic: str = "behavior-events-by-user"
    representations_topic: str = "user-representations"
    recommendations_topic: str = "recommendations"
    dlq_topic: str = "behavior-events-dlq"
    control_topic: str = "behavior-stream-control"
    stats_topic: str = Field(
        "", description="Compacted topic of each worker's A/B statistics (default: <control_topic>-stats)"
    )
    stats_interval_s: float = Field(2.0, gt=0, description="How often a worker publishes its A/B statistics")
    session_timeout_s: float = Field(
        10.0, description="Consumer session timeout (Tansu JoinGroup waits half)"
    )
    commit_interval_s: float = Field(1.0, description="How often consumed offsets are committed")
    standby_replicas: int = Field(0, ge=0, description="Faust table standby replicas")
    replication_factor: int = Field(1, ge=1, description="Replication factor of topics the worker creates")
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    # Model and processing
    checkpoint: Path | None = Field(None, description="Model checkpoint; watched for hot reload")
    ab_checkpoint: Path | None = Field(None, description="Treatment model (variant B) of an online A/B test")
    ab_split: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of users (stable hash) served by variant B"
    )
    reload_poll_s: float = Field(2.0, gt=0, description="How often the checkpoint file is checked")
    torch_threads: int = Field(
        1, ge=1, description="Torch/faiss threads in the worker (1 is fastest on 2 cores)"
    )
    max_batch: int = Field(1000, ge=1, description="Most records per micro-batch (a larger fetch is split)")
    batch_ms: int = Field(
        50, ge=1, description="Micro-batch wait of take_events (the Faust baselines; the worker never waits)"
    )
    flush_depth: int = Field(
        8, ge=1, description="Batches whose writes may be in flight at once (1: no overlap)"
    )
    fetch_buffer: int = Field(4000, ge=1, description="Input records fetched ahead of processing at most")
    fetch_wait_ms: int = Field(
        10, ge=1, description="Longest wait of an empty fetch (Tansu holds every fetch this long)"
    )
    # A fault for crash tests (tests/system/test_partial_flush.py): exit at once, as SIGKILL
    # would, when a flush reaches this point for the (n+1)-th time.
    crash_at: Literal["outputs_acked", "state_queued", "state_acked"] | None = Field(
        None, description="Testing only: exit abruptly at this point of a batch's flush"
    )
    crash_after_batches: int = Field(0, ge=0, description="Testing only: flushes to let pass first")
    top_k: int = Field(20, ge=1, le=200, description="Recommendations per message")
    exclude: tuple[ExcludePolicy, ...] = Field(("purchased",), description="Items left out of feeds")
    ann_threshold: int = Field(
        50_000, ge=0, description="Catalog size above which scoring uses HNSW; 0: never"
    )
    late_grace_ms: int = Field(60_000, ge=0, description="Events older than last ts minus this are dropped")
    recent_ids: int = Field(8, ge=1, le=64, description="Recent event ids kept per user for dedup")
    trending_window_s: int = Field(3600, gt=0, description="Event-time window of the trending table")
    fresh_slots: int = Field(
        2, ge=0, le=200, description="Feed places for items newer than the model (fresh_items.py); 0: off"
    )
    fresh_half_life_s: int = Field(
        3600, gt=0, description="Event-time half-life of the fresh items' co-visit counts"
    )
    trending_persist_s: float = Field(
        5.0, gt=0, description="How often changed trending windows are written to the state table"
    )
    scenario_records: tuple[Literal["search", "cart"], ...] = Field(
        ("search", "cart"), description="Scenario feeds emitted beside the plain feed (scenarios.py)"
    )
    explain_records: bool = Field(
        False, description="Explanations (`because`) on every item of the stream's feeds"
    )
    cart_blend: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of the bought-together table in cart feeds"
    )
    online_eval_model: bool = Field(
        False, description="Also rank every event's item from the state just before it (offline protocol)"
    )
    online_window: int = Field(10_000, ge=1, description="Predictions in the sliding online metrics")
    state_ttl_s: float | None = Field(None, gt=0, description="Evict users inactive this long (event time)")

    # Web
    web_host: str = Field("127.0.0.1", description="HTTP bind address (loopback by default)")
    web_port: int = Field(6066, ge=0, lt=65536)
    web_advertised_host: str | None = Field(
        None, description="Address other workers use to reach this one (default: web_host)"
    )
    api_token: SecretStr | None = Field(
        None, description="Bearer token required for DELETE and promotion when set (also accepted for reads)"
    )
    api_read_token: SecretStr | None = Field(
        None, description="Bearer token required for /users/..., /experiments and /trending when set"
    )
    log_level: LogLevel = Field(
        "info", description="Our loggers' level; Faust, mode and aiokafka stay at warning unless debug"
    )
    data_dir: Path = Field(Path("runs/worker"), description="Faust's local data directory")
    store: Literal["memory", "rocksdb"] = Field(
        "memory",
        description="User-state store: memory (a restart re-reads the whole changelog) or rocksdb "
        "(persisted under data_dir; a restart reads the changelog from the local offset)",
    )

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        # Checked here, not at connect time: a bad address would otherwise surface as an
        # int() or socket error from inside aiokafka, naming neither the setting nor the form.
        parts = BROKER_SEPARATORS.split(value)
        for part in parts:
            match = BROKER_ADDRESS.fullmatch(part.strip())
            if match is None or (match[2] is not None and not 1 <= int(match[2]) <= 65535):
                where = f" in {value!r}" if len(parts) > 1 else ""
                raise ValueError(f"expected {BROKER_FORM}, got {part!r}{where}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _derive_stats_topic(cls, data: Any) -> Any:
        # Derived from the control topic, so renaming that one (e.g. per test) renames both.
        if isinstance(data, dict) and not data.get("stats_topic"):
            control = data.get("control_topic") or cls.model_fields["control_topic"].default
            data = {**data, "stats_topic": f"{control}-stats"}
        return data

    @property
    def bootstrap_servers(self) -> str:
        """`host:port[,host:port]` for plain aiokafka clients."""
        return ",".join(
            part.strip().removeprefix("kafka://") for part in BROKER_SEPARATORS.split(self.broker)
        )


class SettingsError(ValueError):
    """A bad setting value: which `setting`, whether it came `from_env`, and the `problem`."""

    def __init__(self, setting: str, from_env: bool, problem: str) -> None:
        source = f"BEHAVIOR_STREAM_{setting.upper()}" if from_env else setting
        super().__init__(f"{source}: {problem}")
        self.setting = setting
        self.from_env = from_env
        self.problem = problem


def _is_secret(setting: str) -> bool:
    field = Settings.model_fields.get(setting)
    return field is not None and (field.annotation is SecretStr or SecretStr in get_args(field.annotation))


def _settings_error(exc: ValidationError, overrides: dict[str, object]) -> SettingsError:
    """The first error of `exc` on one line (pydantic's own text spans lines and links its docs)."""
    error = exc.errors(include_url=False)[0]
    setting = str(error["loc"][0]) if error["loc"] else "settings"
    problem = error["msg"].removeprefix("Value error, ")  # our validators' messages say what they got
    if error["type"] != "value_error" and not _is_secret(setting):
        problem += f", got {error['input']!r}"
    return SettingsError(setting, setting in Settings.model_fields and setting not in overrides, problem)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (e.g. CLI flags) taking precedence.

    A bad value raises `SettingsError` naming the setting (or its variable, when it came from the
    environment) and what is wrong, on one line.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise _settings_error(exc, given) from None
