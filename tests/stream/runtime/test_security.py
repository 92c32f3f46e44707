"""Security settings: loopback API by default, SASL/TLS pass-through, no pickle anywhere in the stream."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import faust
import pytest

from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.runtime.api import read_allowed, write_allowed
from behavior_stream.stream.runtime.app import build_app, faust_credentials
from behavior_stream.stream.runtime.kafka import client_options
from behavior_stream.stream.runtime.settings import Settings

PACKAGE = Path(__file__).resolve().parents[3] / "src" / "behavior_stream"


def test_api_binds_loopback_and_has_no_token_by_default() -> None:
    settings = Settings()
    assert settings.web_host == "127.0.0.1"
    assert settings.api_token is None


def test_reads_are_open_by_default_even_with_a_write_token() -> None:
    assert Settings().api_read_token is None
    assert read_allowed(Settings(), "")
    assert read_allowed(Settings(api_token="w"), "")
    assert not write_allowed(Settings(api_token="w"), "")


def test_read_token_from_the_environment_guards_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEHAVIOR_STREAM_API_READ_TOKEN", "reader")
    monkeypatch.setenv("BEHAVIOR_STREAM_API_TOKEN", "writer")
    settings = Settings()
    assert "reader" not in repr(settings) and "writer" not in repr(settings)
    assert not read_allowed(settings, "")
    assert not read_allowed(settings, "Bearer wrong")
    assert not read_allowed(settings, "reader")  # the scheme is part of the header
    assert read_allowed(settings, "Bearer reader")
    assert read_allowed(settings, "Bearer writer")  # whoever may erase a user may read it
    # The read token grants no writes.
    assert not write_allowed(settings, "Bearer reader")
    assert write_allowed(settings, "Bearer writer")


def test_sasl_ssl_settings_reach_aiokafka_and_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEHAVIOR_STREAM_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("BEHAVIOR_STREAM_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("BEHAVIOR_STREAM_SASL_USERNAME", "svc")
    monkeypatch.setenv("BEHAVIOR_STREAM_SASL_PASSWORD", "pw")
    settings = Settings()
    opts = client_options(settings)
    assert opts["security_protocol"] == "SASL_SSL"
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (opts["sasl_plain_username"], opts["sasl_plain_password"]) == ("svc", "pw")
    assert isinstance(opts["ssl_context"], ssl.SSLContext)
    creds = faust_credentials(settings)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.username == "svc" and creds.password == "pw"
    assert "pw" not in repr(settings)  # the secret is not printed with the settings


def test_plaintext_has_no_credentials() -> None:
    settings = Settings()
    assert faust_credentials(settings) is None
    assert set(client_options(settings)) == {"bootstrap_servers"}


def test_package_never_unpickles() -> None:
    paths = sorted(PACKAGE.rglob("*.py"))
    assert len(paths) > 50, PACKAGE  # the walk really reads the package
    for path in paths:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] in {"pickle", "dill", "cloudpickle"} for n in names), path


def test_topics_and_table_use_raw_bytes(taobao_checkpoint: Path) -> None:
    rt = build_app(Settings(), ModelEngine.from_checkpoint(taobao_checkpoint, ann_threshold=0))
    assert rt.app.conf.key_serializer == "raw" and rt.app.conf.value_serializer == "raw"
    assert rt.table.key_type is bytes and rt.table.value_type is bytes
