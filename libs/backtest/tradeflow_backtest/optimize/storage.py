"""Where a study lives: PostgreSQL (shared by workers on several machines) or a local journal file.

- ``postgresql://...``: Optuna's RDB storage, its tables in their own schema ``optuna`` (made
  when missing), so the study can share the Tradeflow database without touching its tables or
  its Alembic version (Optuna keeps an ``alembic_version`` table of its own). Workers beat a
  heartbeat every 10 s; a trial whose worker stopped beating for 30 s (killed, machine lost)
  is failed by the next worker and run again with the same parameters.
- anything else is a file path: Optuna's journal file, for the processes of one machine.

On this machine, a trial left running by a worker process that no longer exists (an
interrupted run) is failed and queued again with its parameters when the study is opened
(:func:`requeue_orphans`), with either storage: so "run, kill, run again" redoes it at once.
"""

from __future__ import annotations

import os
import re
import socket
import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

OPTUNA_SCHEMA = "optuna"
DEFAULT_JOURNAL = Path(".tradeflow") / "optuna.journal"
HEARTBEAT_S = 10
GRACE_S = 30
WORKER_ATTR = "worker"
INIT_LOCK_KEY = 0x7466_6F70  # pg_advisory_lock key of the storage set-up ("tfop")
_POSTGRES = re.compile(r"^postgresql(\+psycopg)?://")


class StorageLocationError(ValueError):
    """A ``--storage`` that is neither a PostgreSQL URL nor a file path."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def open_storage(location: str | None) -> BaseStorage:
    """The storage at ``location`` (None: the default journal file under the current directory)."""
    if location and _POSTGRES.match(location):
        return _postgres(_POSTGRES.sub("postgresql+psycopg://", location))
    if location and "://" in location:
        raise StorageLocationError(f"expected postgresql://... or a file path, got {location.split('://')[0]}://...")
    path = Path(location) if location else DEFAULT_JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def _postgres(url: str) -> RDBStorage:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as lock:
            # Workers starting together would race to create Optuna's tables (CREATE TABLE is not
            # safe to run twice at once): one at a time, under a lock of the whole database.
            lock.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": INIT_LOCK_KEY})
            try:
                with engine.begin() as connection:
                    connection.execute(sqlalchemy.text(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}"))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable enough
                    return RDBStorage(url, engine_kwargs={"connect_args": {"options": f"-c search_path={OPTUNA_SCHEMA}"},
                                                          "pool_pre_ping": True},
                                      heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
            finally:
                lock.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": INIT_LOCK_KEY})
    finally:
        engine.dispose()


def close_storage(storage: BaseStorage) -> None:
    """Drop pooled connections (before forking workers: a child must not share the parent's sockets)."""
    backend = getattr(storage, "_backend", storage)
    if isinstance(backend, RDBStorage):
        backend.remove_session()
        backend.engine.dispose()


def requeue_orphans(study: optuna.Study) -> int:
    """Fail and queue again the running trials of dead worker processes of this host; how many."""
    host = socket.gethostname()
    requeued = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get(WORKER_ATTR, ""))
        owner_host, _, pid = owner.rpartition(":")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # finished or failed meanwhile by someone else
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
        requeued += 1
    return requeued


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
