"""A worker as a subprocess (`python -m behavior_stream.stream.runtime.worker`): demo, benchmarks, tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.promtext import parse_metrics


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as BEHAVIOR_STREAM_* environment variables (what `worker` reads)."""
    env = {}
    for name, value in settings.model_dump(exclude_none=True).items():
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, tuple | list):
            value = orjson.dumps(list(value)).decode()
        env[f"BEHAVIOR_STREAM_{name.upper()}"] = str(value)
    return env


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a child process, SIGKILL it after `timeout` seconds; no-op if it already exited."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until(check: Callable[[], bool], timeout: float, message: str, interval: float = 0.5) -> None:
    """Poll `check` until it is true; TimeoutError with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s: {message}")


@dataclass
class WorkerProcess:
    """A worker subprocess with the given settings, logging to `log_path`."""

    settings: Settings
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        """Spawn the worker (returns at once; see `wait_ready`)."""
        env = {**os.environ, **settings_env(self.settings)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "behavior_stream.stream.runtime.worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def url(self) -> str:
        """Base URL of the worker's HTTP API."""
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    def get(
        self,
        path: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, bytes]:
        """HTTP request to the worker: (status, body); HTTP errors are returned, not raised.
        `data` is sent as a JSON body."""
        headers = {**(headers or {}), **({"Content-Type": "application/json"} if data is not None else {})}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def json(self, path: str) -> Any:
        """GET a JSON document from the worker."""
        status, body = self.get(path)
        return {"status": status, **orjson.loads(body)} if body else {"status": status}

    def metrics(self) -> dict[str, float]:
        """The worker's /metrics, parsed."""
        status, body = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return parse_metrics(body.decode("utf-8"))

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        """Whether /health answers 200 (raises if the process died)."""
        if not self.alive():
            raise RuntimeError(f"worker exited; see {self.log_path}")
        try:
            return self.get("/health")[0] == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until the worker serves /health."""
        wait_until(self.healthy, timeout, f"worker not healthy; see {self.log_path}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a clean Faust shutdown), SIGKILL after `timeout`."""
        terminate(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, for recovery tests."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()
