"""The broker setting is checked where settings are built, and a bad value is one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from behavior_stream.stream.runtime.settings import BROKER_FORM, SettingsError, load_settings


@pytest.fixture(autouse=True)
def no_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BEHAVIOR_STREAM_* variable of the machine running the tests leaks in."""
    for name in [n for n in os.environ if n.startswith("BEHAVIOR_STREAM_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("broker", "bootstrap"),
    [
        ("kafka://127.0.0.1:9092", "127.0.0.1:9092"),
        ("127.0.0.1:9092", "127.0.0.1:9092"),
        ("localhost", "localhost"),  # the port defaults to 9092 in Faust and aiokafka alike
        ("kafka://kafka:9092;kafka://kafka-2:9092", "kafka:9092,kafka-2:9092"),  # deploy/ uses this
        ("a:1,b:2", "a:1,b:2"),
        ("kafka://a:1, kafka://b_2.example:65535", "a:1,b_2.example:65535"),
        ("kafka://[::1]:9092", "[::1]:9092"),
    ],
)
def test_accepted_broker_addresses(broker: str, bootstrap: str) -> None:
    settings = load_settings(broker=broker)
    assert settings.broker == broker  # Faust gets the value as given
    assert settings.bootstrap_servers == bootstrap


@pytest.mark.parametrize(
    ("broker", "got"),
    [
        ("kafka://127.0.0.1:99999", "'kafka://127.0.0.1:99999'"),  # was: OverflowError at connect
        ("http://x:y:z", "'http://x:y:z'"),  # was: invalid literal for int() ... 'z'
        ("http://broker:9092", "'http://broker:9092'"),
        ("kafka://host:0", "'kafka://host:0'"),
        ("kafka://:9092", "'kafka://:9092'"),
        ("host:9092/", "'host:9092/'"),
        ("", "''"),
        ("a:1;kafka://b:x", "'kafka://b:x' in 'a:1;kafka://b:x'"),
        ("a:1;", "'' in 'a:1;'"),
    ],
)
def test_refused_broker_addresses(broker: str, got: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(broker=broker)
    assert str(caught.value) == f"broker: expected {BROKER_FORM}, got {got}"
    assert (caught.value.setting, caught.value.from_env) == ("broker", False)
    assert "\n" not in str(caught.value)


def test_a_bad_broker_from_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEHAVIOR_STREAM_BROKER", "http://x:y:z")
    with pytest.raises(SettingsError, match=r"^BEHAVIOR_STREAM_BROKER: expected kafka://HOST:PORT") as caught:
        load_settings(partitions=2)
    assert caught.value.from_env


def test_other_bad_settings_are_one_line_with_the_value() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(partitions=0)
    assert str(caught.value) == "partitions: Input should be greater than or equal to 1, got 0"


def test_a_bad_secret_is_not_echoed() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(sasl_password=12345)
    assert caught.value.setting == "sasl_password"
    assert "12345" not in str(caught.value)


def test_the_worker_module_reports_a_bad_environment_setting_in_one_line() -> None:
    # `python -m ...worker` reads settings from the environment only; it must fail as the CLI does.
    env = {**os.environ, "BEHAVIOR_STREAM_PARTITIONS": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "behavior_stream.stream.runtime.worker"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "worker: error: BEHAVIOR_STREAM_PARTITIONS: Input should be greater than or equal to 1, got '0'"
    ]
