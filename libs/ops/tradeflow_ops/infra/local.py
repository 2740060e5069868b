"""LocalInfra: the local broker and database that `tradeflow infra up|down|status` manage.

What `up` started is recorded in ``<state_dir>/infra.json`` (pid, process start time, port),
so `down` stops exactly those processes and a second `up` recognises them. A component whose
TRADEFLOW_ setting points somewhere else than the local default is "external": it is used
as configured and never started or stopped here.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tradeflow.settings import DEFAULT_DATABASE_URL, DEFAULT_KAFKA_BOOTSTRAP, redact_url

from tradeflow_ops.infra.errors import InfraError
from tradeflow_ops.infra.postgres import PostgresCluster, cluster_root_for, database_reachable_error
from tradeflow_ops.infra.settings import DEFAULT_DB_PORT, DEFAULT_KAFKA_PORT, InfraSettings
from tradeflow_ops.infra.tansu import RunningProcess, TansuBroker, kafka_metadata_error

STATE_FILE = "infra.json"
KAFKA = "kafka"
POSTGRES = "postgres"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    managed: bool  # False: external, configured by the environment; never started or stopped here
    running: bool
    address: str
    pid: int | None = None
    detail: str = ""

    def describe(self) -> str:
        state = "running" if self.running else "not running"
        origin = f"pid {self.pid}" if self.pid else ("external" if not self.managed else "local")
        text = f"{self.name:<9} {state:<12} {redact_url(self.address)}  ({origin})"
        return text + (f"\n          {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class InfraStatus:
    kafka: ComponentStatus
    postgres: ComponentStatus
    started: tuple[str, ...] = ()  # the components this very call started

    @property
    def ready(self) -> bool:
        return self.kafka.running and self.postgres.running

    @property
    def env(self) -> dict[str, str]:
        return {"TRADEFLOW_KAFKA_BOOTSTRAP": self.kafka.address, "TRADEFLOW_DATABASE_URL": self.postgres.address}

    def describe(self) -> str:
        lines = [self.kafka.describe(), self.postgres.describe(), "settings to use:"]
        lines += [f"  export {name}={redact_url(value)}" for name, value in self.env.items()]
        return "\n".join(lines)


class LocalInfra:
    def __init__(
        self,
        state_dir: Path,
        kafka_port: int = DEFAULT_KAFKA_PORT,
        db_port: int = DEFAULT_DB_PORT,
        *,
        external_kafka_bootstrap: str | None = None,
        external_database_url: str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.kafka_port = kafka_port
        self.db_port = db_port
        self.external_kafka_bootstrap = external_kafka_bootstrap
        self.external_database_url = external_database_url
        self._broker = TansuBroker(kafka_port, self.state_dir / "tansu.log")
        self._cluster: PostgresCluster | None = None

    @classmethod
    def from_settings(cls, settings: InfraSettings) -> LocalInfra:
        """The local addresses (the defaults, or the TRADEFLOW_INFRA_*_PORT ones) are managed here;
        a broker or database configured anywhere else is external and used as is."""
        bootstrap = settings.kafka_bootstrap
        database_url = settings.libpq_url
        return cls(
            settings.infra_dir,
            kafka_port=settings.infra_kafka_port,
            db_port=settings.infra_db_port,
            external_kafka_bootstrap=(
                None if bootstrap in (DEFAULT_KAFKA_BOOTSTRAP, settings.local_kafka_bootstrap) else bootstrap
            ),
            external_database_url=(
                None if database_url in (DEFAULT_DATABASE_URL, settings.local_database_url) else database_url
            ),
        )

    # --- addresses -----------------------------------------------------------------------------

    @property
    def kafka_bootstrap(self) -> str:
        return self.external_kafka_bootstrap or self._broker.bootstrap

    @property
    def database_url(self) -> str:
        return self.external_database_url or self.cluster.url()

    @property
    def cluster(self) -> PostgresCluster:
        if self._cluster is None:  # resolving the root may create directories: only when needed
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._cluster = PostgresCluster(cluster_root_for(self.state_dir), self.db_port)
        return self._cluster

    def create_database(self, name: str) -> str:
        """Another database in the local cluster (e.g. the plain-PostgreSQL test database)."""
        if self.external_database_url:
            raise InfraError("the database is external (TRADEFLOW_DATABASE_URL); create databases there yourself")
        return self.cluster.create_database(name)

    # --- commands ------------------------------------------------------------------------------

    def up(self, timeout_s: float = 60.0, *, kafka: bool = True, postgres: bool = True) -> InfraStatus:
        """Start what is not running yet; idempotent. Raises InfraError with the log tail on failure.

        ``kafka``/``postgres`` choose the components (tests start only what they use).
        """
        started: list[str] = []
        try:
            return self._up(started, timeout_s, kafka=kafka, postgres=postgres)
        except InfraError as exc:
            exc.started = tuple(started)
            raise

    def _up(self, started: list[str], timeout_s: float, *, kafka: bool, postgres: bool) -> InfraStatus:
        with self._locked_state() as state:
            if kafka and not self.external_kafka_bootstrap and not self._recorded_running(state, KAFKA):
                running = self._broker.start(timeout_s)
                state[KAFKA] = {"pid": running.pid, "start_ticks": running.start_ticks, "port": self.kafka_port}
                self._save(state)
                started.append(KAFKA)
            if postgres and not self.external_database_url and not self._recorded_running(state, POSTGRES):
                running = self.cluster.start(timeout_s)
                state[POSTGRES] = {
                    "pid": running.pid, "start_ticks": running.start_ticks, "port": self.db_port,
                    "cluster_root": str(self.cluster.root),
                }
                self._save(state)
                started.append(POSTGRES)
        status = self.status()
        if (kafka and not status.kafka.running) or (postgres and not status.postgres.running):
            raise InfraError("infrastructure is not ready:\n" + status.describe())
        return InfraStatus(status.kafka, status.postgres, tuple(started))

    def down(self, *, components: Iterable[str] = (KAFKA, POSTGRES), purge: bool = False) -> list[str]:
        """Stop exactly the processes `up` recorded; returns the names of the stopped components.

        ``components`` limits what is stopped (e.g. only what a demo started itself);
        ``purge`` also deletes the database cluster (all local data).
        """
        stopped = []
        wanted = set(components)
        with self._locked_state() as state:
            for name in (n for n in (KAFKA, POSTGRES) if n in wanted):
                entry = state.get(name)
                if not entry:
                    continue
                running = RunningProcess(entry["pid"], entry.get("start_ticks"))
                if name == KAFKA:
                    if self._broker.is_running(running):
                        self._broker.stop(running)
                        stopped.append(name)
                else:
                    cluster = PostgresCluster(Path(entry["cluster_root"]), entry["port"])
                    if cluster.is_running(running):
                        cluster.stop(running)
                        stopped.append(name)
                del state[name]
                self._save(state)
            if purge and POSTGRES in wanted and not self.external_database_url:
                if self.cluster.running_postmaster() is not None:
                    raise InfraError(f"a PostgreSQL server still runs on {self.cluster.data_dir}; not deleting it")
                self.cluster.purge()
        return stopped

    def status(self) -> InfraStatus:
        state = self._load()
        return InfraStatus(self._kafka_status(state), self._postgres_status(state))

    # --- internals -----------------------------------------------------------------------------

    def _kafka_status(self, state: dict) -> ComponentStatus:
        if self.external_kafka_bootstrap:
            error = kafka_metadata_error(self.external_kafka_bootstrap)
            return ComponentStatus(KAFKA, False, error is None, self.external_kafka_bootstrap, detail=error or "")
        entry = state.get(KAFKA)
        running = bool(entry) and self._recorded_running(state, KAFKA)
        return ComponentStatus(
            KAFKA, True, running, self.kafka_bootstrap, entry["pid"] if running else None,
            f"log: {self._broker.log_path}",
        )

    def _postgres_status(self, state: dict) -> ComponentStatus:
        if self.external_database_url:
            error = database_reachable_error(self.external_database_url)
            return ComponentStatus(POSTGRES, False, error is None, self.external_database_url, detail=error or "")
        entry = state.get(POSTGRES)
        running = bool(entry) and self._recorded_running(state, POSTGRES)
        root = Path(entry["cluster_root"]) if entry else None
        detail = f"data: {root / 'data'}, log: {root / 'postgres.log'}" if root else ""
        return ComponentStatus(
            POSTGRES, True, running, f"postgresql://tradeflow@127.0.0.1:{self.db_port}/tradeflow",
            entry["pid"] if running else None, detail,
        )

    def _recorded_running(self, state: dict, name: str) -> bool:
        """Whether the process `up` recorded for ``name`` still runs (on the port asked for now)."""
        entry = state.get(name)
        if not entry:
            return False
        running = RunningProcess(entry["pid"], entry.get("start_ticks"))
        if name == KAFKA:
            alive, port = self._broker.is_running(running), self.kafka_port
        else:
            alive, port = PostgresCluster(Path(entry["cluster_root"]), entry["port"]).is_running(running), self.db_port
        if alive and entry["port"] != port:
            # Starting another one would leave the recorded process without a record: refuse.
            raise InfraError(f"{name} started by `tradeflow infra up` runs on port {entry['port']} (pid {entry['pid']}), "
                             f"not on {port}; stop it first with `tradeflow infra down`")
        return alive

    @property
    def _state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    def _load(self) -> dict:
        try:
            return json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise InfraError(f"{self._state_path} is corrupt ({exc}); stop the processes listed there and delete it") from None

    def _save(self, state: dict) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self._state_path)

    @contextmanager
    def _locked_state(self) -> Iterator[dict]:
        """The recorded state, under an exclusive lock so two `up`/`down` calls cannot interleave."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "infra.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield self._load()
