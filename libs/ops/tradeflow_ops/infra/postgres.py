"""A private PostgreSQL 15 cluster (initdb + pg_ctl from Debian's postgresql-15) for local use.

PostgreSQL refuses to run as root, so when we are root every server command runs as the
``postgres`` OS user (``runuser``) on a directory that user owns. TimescaleDB is preloaded only
when its extension is installed for this PostgreSQL; otherwise the cluster is plain PostgreSQL
and the migrations take the plain path.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from tradeflow.settings import redact_url

from tradeflow_ops.infra.errors import InfraError
from tradeflow_ops.infra.processes import (
    is_same_process,
    log_tail,
    port_accepts_connections,
    process_start_ticks,
    terminate,
    wait_until_gone,
)
from tradeflow_ops.infra.tansu import RunningProcess

HOST = "127.0.0.1"
PG_BINDIR = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "tradeflow"
DATABASE = "tradeflow"
SERVER_OS_USER = "postgres"
CONFIG_FILE = "tradeflow.conf"
# Where the cluster lives when we are root and the postgres user cannot reach the state dir
# (e.g. under /root, which is mode 700): the postgres user's own home on Debian.
ROOT_FALLBACK_PARENT = Path("/var/lib/postgresql/tradeflow")


def pg_tool(name: str) -> str:
    tool = PG_BINDIR / name
    if not os.access(tool, os.X_OK):
        raise InfraError(f"PostgreSQL 15 server binaries not found ({tool}); run `make setup` to install postgresql-15")
    return str(tool)


def timescaledb_installed() -> bool:
    """True when the TimescaleDB extension is installed for the PostgreSQL in PG_BINDIR."""
    sharedir = subprocess.run([pg_tool("pg_config"), "--sharedir"], capture_output=True, text=True, check=True)
    return (Path(sharedir.stdout.strip()) / "extension" / "timescaledb.control").exists()


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _server_owner() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        raise InfraError(f"running as root needs the {SERVER_OS_USER!r} OS user (installed with postgresql-15)") from None


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_OS_USER, "--", *command] if _running_as_root() else command


def cluster_root_for(state_dir: Path) -> Path:
    """The directory holding the data dir, the socket and the server log for ``state_dir``."""
    preferred = state_dir / "postgres"
    if not _running_as_root():
        return preferred
    owner = _server_owner()
    preferred.mkdir(parents=True, exist_ok=True)
    os.chown(preferred, owner.pw_uid, owner.pw_gid)
    reachable = subprocess.run(_as_server_user(["test", "-w", str(preferred)]), capture_output=True)
    if reachable.returncode == 0:
        return preferred
    preferred.rmdir()
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return ROOT_FALLBACK_PARENT / digest


class PostgresCluster:
    """One cluster: ``root``/data (PGDATA), the unix socket in ``root``, the log in ``root``/postgres.log."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.data_dir = root / "data"
        self.log_path = root / "postgres.log"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}"

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> RunningProcess:
        """initdb when new, (re)write our settings, start with pg_ctl -w, create the database."""
        if port_accepts_connections(HOST, self.port):
            raise InfraError(
                f"{HOST}:{self.port} is already in use by another process; free the port or point "
                "TRADEFLOW_DATABASE_URL at that database"
            )
        self._ensure_initialized()
        self._write_config()
        command = _as_server_user([
            pg_tool("pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_path),
            "-w", "-t", str(int(timeout_s)),
        ])
        # Own session: a Ctrl-C aimed at the caller's terminal would otherwise reach the postmaster.
        result = subprocess.run(command, capture_output=True, text=True, start_new_session=True)
        if result.returncode != 0:
            raise InfraError(
                f"PostgreSQL did not start on port {self.port}: {result.stderr.strip() or result.stdout.strip()}; "
                f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            )
        running = self.running_postmaster()
        if running is None:
            raise InfraError(f"pg_ctl reported a start but no postmaster runs; see {self.log_path}")
        try:
            self._wait_connectable(timeout_s)
            self._create_database(DATABASE)
        except InfraError:
            self.stop(running)
            raise
        return running

    def stop(self, running: RunningProcess) -> None:
        """Fast shutdown of exactly the recorded postmaster (open sessions are disconnected)."""
        if not is_same_process(running.pid, running.start_ticks):
            return
        if self.running_postmaster() == running:
            subprocess.run(
                _as_server_user([pg_tool("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30"]),
                capture_output=True, text=True,
            )
        if not wait_until_gone(running.pid, running.start_ticks, 5.0):
            terminate(running.pid, running.start_ticks, grace_s=10.0)

    def running_postmaster(self) -> RunningProcess | None:
        """The postmaster that owns the data dir right now, if any."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError, PermissionError):
            return None
        ticks = process_start_ticks(pid)
        return RunningProcess(pid, ticks) if ticks is not None else None

    def is_running(self, running: RunningProcess) -> bool:
        return is_same_process(running.pid, running.start_ticks)

    def purge(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # --- steps ---------------------------------------------------------------------------------

    def _ensure_initialized(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if _running_as_root():
            owner = _server_owner()
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        result = subprocess.run(
            _as_server_user([
                pg_tool("initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--no-locale", "--no-sync",
            ]),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise InfraError(f"initdb failed for {self.data_dir}: {result.stderr.strip() or result.stdout.strip()}")
        conf = self.data_dir / "postgresql.conf"
        with open(conf, "a") as f:
            f.write(f"\n# Tradeflow's local settings (rewritten at every `tradeflow infra up`)\ninclude '{CONFIG_FILE}'\n")

    def _write_config(self) -> None:
        lines = [
            "# Written by tradeflow_ops.infra at every start; edit the code, not this file.",
            f"port = {self.port}",
            f"listen_addresses = '{HOST}'",
            f"unix_socket_directories = '{self.root}'",
            "max_connections = 200",
            # A disposable local cluster: a crash may lose recent writes, which is fine here and
            # makes tests and the demo much faster on a small machine. Production never uses this.
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
        ]
        if timescaledb_installed():
            lines += ["shared_preload_libraries = 'timescaledb'", "timescaledb.telemetry_level = off"]
        path = self.data_dir / CONFIG_FILE
        path.write_text("\n".join(lines) + "\n")
        if _running_as_root():
            owner = _server_owner()
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def _wait_connectable(self, timeout_s: float) -> None:
        import psycopg  # lazily: keeps `tradeflow --help` fast

        deadline = time.monotonic() + timeout_s
        last_error = "no answer"
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=3):
                    return
            except psycopg.Error as exc:
                last_error = str(exc).strip()
            time.sleep(0.2)
        raise InfraError(
            f"PostgreSQL on port {self.port} accepted no connection within {timeout_s:.0f}s ({last_error}); "
            f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def _create_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def create_database(self, name: str) -> str:
        """Create another database in this cluster (idempotent); returns its URL."""
        self._create_database(name)
        return self.url(name)


def database_reachable_error(url: str, timeout_s: int = 3) -> str | None:
    """None when a connection to ``url`` succeeds, else why not."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=timeout_s):
            return None
    except psycopg.Error as exc:
        return redact_url(str(exc).strip().splitlines()[0]) if str(exc).strip() else type(exc).__name__
