"""Service processes that `tradeflow demo` runs as children, stopped by pid (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tradeflow_ops.cli.errors import CliError
from tradeflow_ops.infra.processes import log_tail


class ChildService:
    """``python -m tradeflow_ops.cli run NAME`` with its own environment, logging to ``log_path``."""

    def __init__(self, name: str, port: int, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.port = port
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # Own session: the demo alone decides when and how its children stop (Ctrl-C reaches only it).
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tradeflow_ops.cli", "run", self.name],
                env={**os.environ, **self.env, "TRADEFLOW_HTTP_PORT": str(self.port)},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    async def readiness(self, client: httpx.AsyncClient) -> tuple[bool, str]:
        """(ready, why not) from GET /readyz."""
        try:
            response = await client.get(f"{self.base_url}/readyz", timeout=2)
        except httpx.HTTPError as exc:
            return False, type(exc).__name__
        return response.status_code == 200, response.text[:300]

    def stop(self, grace_s: float) -> bool:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL. True when it shut down by itself in time."""
        if self.process is None or self.process.poll() is not None:
            return self.process is None or self.process.returncode == 0
        self.process.terminate()
        try:
            # After its graceful shutdown uvicorn re-raises the signal it got, so a clean stop
            # ends with status 0 or "terminated by SIGTERM".
            return self.process.wait(grace_s) in (0, -signal.SIGTERM)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return False

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)


async def wait_until_ready(children: list[ChildService], timeout_s: float, stop: asyncio.Event) -> None:
    """Return when every child's /readyz says 200 (or ``stop`` is set); CliError naming a failed one."""
    deadline = time.monotonic() + timeout_s
    pending = list(children)
    reason = ""
    async with httpx.AsyncClient() as client:
        while pending and not stop.is_set():
            for child in list(pending):
                if child.exited() is not None:
                    raise CliError(f"{child.name} exited with status {child.exited()}; "
                                       f"last lines of {child.log_path}:\n{child.log_tail()}")
                ready, reason = await child.readiness(client)
                if ready:
                    pending.remove(child)
            if pending and time.monotonic() > deadline:
                raise CliError(f"{pending[0].name} not ready after {timeout_s:.0f}s ({reason}); "
                                   f"last lines of {pending[0].log_path}:\n{pending[0].log_tail()}")
            await asyncio.sleep(0.5)
