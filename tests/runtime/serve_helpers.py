"""A real ``cifar-serve`` process on a free loopback port, for the tests in tests/runtime/serve/."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cli_helpers import cli_argv

START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def start_server(model: Path, log: Path, *args: Any) -> Server:
    """Start ``cifar-serve model --port P args...`` and wait until it is ready (its stderr goes to ``log``)."""
    port = free_port()
    argv = cli_argv("cifar-serve", [model, "--port", port, *args])
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    server = Server(process, port, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"cifar-serve exited {process.returncode}: {server.stderr()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + "/v2/health/ready", timeout=2).status_code == 200:
                return server
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"cifar-serve not ready within {START_TIMEOUT_S} s: {server.stderr()}")


@contextlib.contextmanager
def running(model: Path, log: Path, *args: Any) -> Iterator[Server]:
    server = start_server(model, log, *args)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop(signal.SIGKILL, timeout=10)
