"""The deployment files (Dockerfile, compose, Prometheus, Grafana) agree with `Settings` and the metrics."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import faust
import pytest
import yaml

from behavior_stream.stream.runtime.app import STATE_TABLE
from behavior_stream.stream.runtime.kafka import stream_topics, topic_layout
from behavior_stream.stream.runtime.prometheus import StreamMetrics
from behavior_stream.stream.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "behavior-stream.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
PREFIX = str(Settings.model_config["env_prefix"])
SETTING_ENV_NAMES = {PREFIX + name.upper() for name in Settings.model_fields}
CREATE_LINE = re.compile(r"^\s*create\s+(\S+)\s+(\S+)(.*)$", re.MULTILINE)
# PromQL words that look like metric names: keywords, modifiers, special floats.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
PROMQL_WORDS |= {"offset", "inf", "nan"}


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(ROOT / "docker-compose.yml")


@pytest.fixture(scope="module")
def three_brokers() -> dict[str, Any]:
    return load_yaml(DEPLOY / "kafka-3-brokers.yml")


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Build `Settings` through the real environment path from a service's env mapping (or none)."""

    def build(env: dict[str, Any] | None = None) -> Settings:
        for name in SETTING_ENV_NAMES:
            monkeypatch.delenv(name, raising=False)
        for name, value in (env or {}).items():
            if name.startswith(PREFIX):
                monkeypatch.setenv(name, str(value))
        return Settings()

    return build


def service_env(compose: dict[str, Any], service: str) -> dict[str, Any]:
    env = compose["services"][service].get("environment") or {}
    assert isinstance(env, dict), f"{service}: environment should be a mapping"
    return env


def container_ports(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host port or "", container port) for each short-syntax `ports` entry."""
    out = []
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        out.append((parts[-2] if len(parts) > 1 else "", int(parts[-1].split("/")[0])))
    return out


def test_compose_has_the_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "topics", "worker", "prometheus", "grafana", "replay"} <= set(services)
    assert services["replay"]["profiles"] == ["replay"]
    for always_on in ("kafka", "topics", "worker", "prometheus", "grafana"):
        assert "profiles" not in services[always_on], f"{always_on} must start with a plain `up`"
    assert services["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    # `--scale worker=N` fails when replicas compete for one fixed host port.
    assert all(host == "" for host, _ in container_ports(services["worker"]))


def test_every_compose_setting_is_a_settings_field(compose: dict[str, Any]) -> None:
    for path in (ROOT / "docker-compose.yml", DEPLOY / "kafka-3-brokers.yml"):
        used = set(re.findall(rf"\b{PREFIX}[A-Z0-9_]+", path.read_text()))
        assert used, f"{path.name} sets no {PREFIX}* variable"
        unknown = sorted(used - SETTING_ENV_NAMES)
        assert not unknown, f"{path.name}: not Settings fields: {unknown}"


def test_compose_setting_values_parse(
    compose: dict[str, Any], three_brokers: dict[str, Any], settings_from: Any
) -> None:
    for file in (compose, three_brokers):
        for name in file["services"]:
            settings_from(service_env(file, name))  # raises ValidationError on a bad value
    worker = settings_from(service_env(compose, "worker"))
    assert worker.checkpoint is not None
    mounted = {volume.split(":")[1] for volume in compose["services"]["worker"]["volumes"]}
    assert worker.checkpoint.parent.as_posix() in mounted
    cluster = settings_from(service_env(three_brokers, "worker"))
    assert cluster.bootstrap_servers == "kafka:9092,kafka-2:9092,kafka-3:9092"


def test_topics_service_creates_every_topic(compose: dict[str, Any], settings_from: Any) -> None:
    defaults = settings_from()
    worker = settings_from(service_env(compose, "worker"))
    assert stream_topics(worker) == stream_topics(defaults), "compose must not rename topics"
    topics_env = service_env(compose, "topics")
    assert str(topics_env[f"{PREFIX}PARTITIONS"]) == str(worker.partitions)

    app = faust.App(worker.app_id, autodiscover=False)
    changelog = app.Table(STATE_TABLE, partitions=worker.partitions).changelog_topic.get_topic_name()
    leader = app._leader_assignor._leader_topic_name  # type: ignore[attr-defined]
    created = {m[0]: (m[1], m[2]) for m in CREATE_LINE.findall(compose["services"]["topics"]["command"][0])}
    assert list(created) == [*stream_topics(defaults), changelog, leader]

    for name, (quoted, extra) in created.items():
        parts = quoted.strip('"')
        if name in (worker.control_topic, worker.stats_topic, leader):
            assert parts == "1", f"{name} needs exactly one partition"
        else:
            assert parts == f"$${PREFIX}PARTITIONS", f"{name} must follow the workers' partition count"
        if name in stream_topics(defaults):
            configs = topic_layout(defaults, name, defaults.partitions)[1]
            assert extra.strip() == " ".join(f"--config {k}={v}" for k, v in configs.items())
    assert created[changelog][1].strip() == "--config cleanup.policy=compact"


def test_retrain_service_publishes_where_the_workers_watch(
    compose: dict[str, Any], settings_from: Any
) -> None:
    retrain, worker = compose["services"]["retrain"], compose["services"]["worker"]
    assert retrain["profiles"] == ["retrain"]
    assert retrain["entrypoint"] == ["behavior-stream", "retrain"]
    assert "--from-topic" in retrain["command"] and "--every" in retrain["command"]
    published = settings_from(service_env(compose, "retrain")).checkpoint
    assert published is not None and published == settings_from(service_env(compose, "worker")).checkpoint
    # The same host directory, writable for retrain only.
    mounts = {v.split(":")[1]: v.split(":") for v in retrain["volumes"] if ":" in v}
    worker_mounts = {v.split(":")[1]: v.split(":") for v in worker["volumes"] if ":" in v}  # not anonymous
    where = published.parent.as_posix()
    assert mounts[where][0] == worker_mounts[where][0] and len(mounts[where]) == 2


def test_worker_port_is_scraped(compose: dict[str, Any], settings_from: Any) -> None:
    worker_service = compose["services"]["worker"]
    port = settings_from(service_env(compose, "worker")).web_port
    assert [p for _, p in container_ports(worker_service)] == [port]
    # Loopback (the default) is unreachable from Prometheus and the other workers.
    assert f"export {PREFIX}WEB_HOST" in " ".join(worker_service["entrypoint"])

    prometheus = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    [job] = [j for j in prometheus["scrape_configs"] if j["job_name"] == "behavior-stream"]
    [sd] = job["dns_sd_configs"]
    assert sd["names"] == ["worker"]
    assert sd["port"] == port
    assert job.get("metrics_path", "/metrics") == "/metrics"


def exposed_series() -> dict[str, set[str]]:
    """Series name -> label names, from the text exposition of a worker with every label set touched."""
    metrics = StreamMetrics()
    metrics.set_models({"A": "v1", "B": "v2"})
    metrics.add_ranks([("A", 1), ("B", None)])
    metrics.lag.labels("behavior-events", "0").set(0)
    series: dict[str, set[str]] = {}
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    for line in metrics.exposition().decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            base = name.removesuffix("_total")
            for suffix in suffixes.get(kind, ("",)):
                series.setdefault(base + suffix if suffix else name, set())
        elif line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            series.setdefault(name, set()).update(re.findall(r'(\w+)="', line))
    return series


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, grouping labels) of a PromQL expression."""
    groups = re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
    labels = {label.strip() for group in groups for label in group.split(",")}
    bare = re.sub(r"\[[^\]]*\]|\{[^}]*\}|\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    words = re.findall(r"(?<![\w.])[a-zA-Z_:][\w:]*\b(?!\s*\()", bare)
    return {w for w in words if w.lower() not in PROMQL_WORDS}, labels - {""}


def test_dashboard_queries_only_exposed_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    series = exposed_series()
    titles = {p["title"] for p in dashboard["panels"]}
    for needed in (
        "Throughput by event type",
        "Rejected events",
        "Processing latency",
        "Batch size",
        "Users in state",
        "Online Recall@k",
        "Online MRR@k",
        "Model version",
        "Consumer lag",
    ):
        assert needed in titles
    used: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            names, labels = promql_names(target["expr"])
            assert names, target["expr"]
            unknown = names - set(series)
            assert not unknown, f"{panel['title']!r} queries unexposed metrics {sorted(unknown)}"
            known_labels = set().union(*(series[n] for n in names)) | {"instance", "job"}
            assert labels <= known_labels, f"{panel['title']!r} groups by unknown {labels - known_labels}"
            used |= names
    assert {
        "behavior_stream_processing_latency_seconds_bucket",
        "behavior_stream_model_info",
        "behavior_stream_consumer_lag",
        "behavior_stream_invalid_events_total",
    } <= used


def test_grafana_provisioning_matches_dashboard(compose: dict[str, Any]) -> None:
    [source] = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {source["uid"]}
    [provider] = load_yaml(PROVISIONING / "dashboards" / "behavior-stream.yml")["providers"]
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]


def test_grafana_has_no_default_password(compose: dict[str, Any]) -> None:
    env = service_env(compose, "grafana")
    # `${VAR:?message}`: compose refuses to start when VAR is unset or empty.
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", env["GF_SECURITY_ADMIN_PASSWORD"])
    for path in (ROOT / "docker-compose.yml", *DEPLOY.rglob("*.yml")):
        text = path.read_text()
        assert not re.search(r"GRAFANA_ADMIN_PASSWORD:?-", text), f"{path.name} gives the password a default"
        assert "GF_SECURITY_ADMIN_PASSWORD" not in text or path.name == "docker-compose.yml", path.name


def test_three_broker_override_is_consistent(three_brokers: dict[str, Any]) -> None:
    nodes = {name: service_env(three_brokers, name) for name in ("kafka", "kafka-2", "kafka-3")}
    voters = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in nodes.values()}
    assert len(voters) == 1
    expected = {f"{env['KAFKA_NODE_ID']}@{name}:9093" for name, env in nodes.items()}
    assert set(voters.pop().split(",")) == expected
    topics_env = service_env(three_brokers, "topics")
    assert int(topics_env["REPLICATION_FACTOR"]) == len(nodes)
    assert all(int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == len(nodes) for env in nodes.values())


def test_dockerfile_installs_the_pinned_torch_and_exposes_the_web_port(settings_from: Any) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [torch_pin] = [d for d in deps if d.startswith("torch==")]
    assert f"pip install {torch_pin} --index-url https://download.pytorch.org/whl/cpu" in dockerfile
    assert re.findall(r"^EXPOSE\s+(\d+)\s*$", dockerfile, re.MULTILINE) == [str(settings_from().web_port)]
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert 'ENTRYPOINT ["behavior-stream"]' in dockerfile
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git", "runs", "data"} <= ignored
