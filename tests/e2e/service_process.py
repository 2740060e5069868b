"""A Tradeflow service as a child process (``tradeflow run SERVICE``) for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """``tradeflow run SERVICE`` with its own environment, port and log file; stopped by its pid."""

    def __init__(self, service: str, env: dict[str, str], port: int, log: Path) -> None:
        self.service, self.env, self.port, self.log = service, env, port, log
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("a") as out:
            self.proc = subprocess.Popen([str(BIN / "tradeflow"), "run", self.service], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)

    def log_tail(self) -> str:
        return self.log.read_text()[-4000:]

    async def wait_ready(self, client: httpx.AsyncClient, timeout_s: float) -> None:
        """Until /readyz says 200."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc is not None and self.proc.poll() is None, \
                f"{self.service} exited with {self.proc.returncode}:\n{self.log_tail()}"
            try:
                if (await client.get(f"{self.base}/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{self.service} not ready after {timeout_s}s:\n{self.log_tail()}"
            await asyncio.sleep(0.3)

    def wait_ready_blocking(self, timeout_s: float) -> None:
        """:meth:`wait_ready` for tests without an event loop."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc is not None and self.proc.poll() is None, \
                f"{self.service} exited with {self.proc.returncode}:\n{self.log_tail()}"
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{self.service} not ready after {timeout_s}s:\n{self.log_tail()}"
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as a crashed node."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM (graceful), SIGKILL if it hangs; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def candle_builder_env(service_env: dict[str, str], consumer_group: str) -> dict[str, str]:
    """The environment of a ``tradeflow run candle-builder`` (on a free port) in its own consumer group.

    The scenarios' trades are months old, so tick retention is set far out (it must not drop
    them mid-test).
    """
    return {**os.environ, **service_env,
            "TRADEFLOW_HTTP_PORT": str(free_port()),
            "TRADEFLOW_CANDLE_BUILDER_CONSUMER_GROUP": consumer_group,
            "TRADEFLOW_LOG_FORMAT": "text",
            "TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS": "36500"}


@contextmanager
def running_candle_builder(env: dict[str, str], log: Path) -> Iterator[tuple[str, Path]]:
    """The candle-builder running with ``env`` until the block ends: (base URL, log file).

    Asserts a clean stop: uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is a
    clean stop too.
    """
    service = ServiceProcess("candle-builder", env, int(env["TRADEFLOW_HTTP_PORT"]), log)
    service.start()
    try:
        service.wait_ready_blocking(60)
        yield service.base, service.log
    finally:
        code = service.stop()
    assert code in (0, -signal.SIGTERM), f"candle-builder did not stop cleanly:\n{service.log_tail()}"
