"""The Kubernetes backup CronJob's script (deploy/k8s/base/timescaledb/backup.yaml) against a real
database, and the restore procedure of deploy/k8s/README.md: the dump restores into a fresh
database with the same rows, and the script keeps the newest 14 dumps."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.kustomize import build

REPO = Path(__file__).resolve().parents[2]
PG_BIN = "/usr/lib/postgresql/15/bin"  # the server's major version, as the job's image pairs them


def backup_script() -> str:
    (cronjob,) = [o for o in build(REPO / "deploy" / "k8s" / "base")
                  if o["kind"] == "CronJob" and o["metadata"]["name"] == "timescaledb-backup"]
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    return container["args"][0]


def libpq_env(url: str, database: str | None = None) -> dict[str, str]:
    parts = urlsplit(url)
    env = {"PGHOST": parts.hostname or "127.0.0.1", "PGPORT": str(parts.port or 5432), "PGUSER": parts.username or "",
           "PGDATABASE": database or parts.path.lstrip("/"), "PATH": f"{PG_BIN}:/usr/bin:/bin"}
    if parts.password:
        env["PGPASSWORD"] = parts.password
    return env


def rows(url: str, database: str, query: str) -> list[tuple]:
    """The rows ``query`` returns in ``database`` (none for a statement without a result)."""
    parts = urlsplit(url)
    with psycopg.connect(parts._replace(path=f"/{database}").geturl(), autocommit=True) as conn:
        cursor = conn.execute(query)
        return cursor.fetchall() if cursor.description is not None else []


@pytest.mark.integration
def test_the_backup_job_dumps_a_database_that_restores_and_keeps_14_dumps(database_url: str, tmp_path: Path) -> None:
    if not Path(PG_BIN, "pg_dump").exists():
        pytest.fail(f"PostgreSQL 15 client tools missing in {PG_BIN} (make setup installs postgresql-15)")
    source = urlsplit(database_url).path.lstrip("/")
    table = f"backup_check_{uuid.uuid4().hex[:8]}"
    rows(database_url, source, f"CREATE TABLE {table} (id int PRIMARY KEY, price numeric(20, 8))")
    rows(database_url, source, f"INSERT INTO {table} SELECT i, i * 1.25 FROM generate_series(1, 500) AS i")
    exchange = f"bk-{table[-8:]}"  # trades in the ticks hypertable (its chunks must come back too)
    rows(database_url, source, "INSERT INTO ticks (exchange, symbol, ts, trade_id, price, amount, side, ts_recv) "
         f"SELECT '{exchange}', 'BTC/USDT', now() - i * interval '1 minute', i::text, 100 + i, 1, 'buy', now() "
         "FROM generate_series(1, 300) AS i")
    # 15 dumps of earlier nights: after tonight's, the newest 14 (tonight's + 13) are kept.
    for day in range(15):
        old = tmp_path / f"tradeflow-202601{day + 1:02d}T023000Z.dump"
        old.write_bytes(b"old")
        os.utime(old, (time.time() - 86400 * (20 - day),) * 2)

    result = subprocess.run(["/bin/sh", "-c", backup_script().replace("/backups", str(tmp_path))],
                            env=libpq_env(database_url), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    dumps = sorted(tmp_path.glob("tradeflow-*.dump"))
    assert len(dumps) == 14 and not list(tmp_path.glob("*.partial"))
    (tonight,) = [d for d in dumps if d.read_bytes() != b"old"]
    assert f"backup written: {tonight}" in result.stdout
    assert [d.name for d in dumps if d != tonight] == [f"tradeflow-202601{day:02d}T023000Z.dump" for day in range(3, 16)]

    # The README's restore: a fresh database, TimescaleDB's restore mode around pg_restore.
    restored = f"restored_{uuid.uuid4().hex[:8]}"
    rows(database_url, source, f"CREATE DATABASE {restored}")
    try:
        timescaledb = bool(rows(database_url, source, "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"))
        env = libpq_env(database_url, restored)
        if timescaledb:
            subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-c", "CREATE EXTENSION IF NOT EXISTS timescaledb",
                            "-c", "SELECT timescaledb_pre_restore()"], env=env, check=True, capture_output=True)
        restore = subprocess.run(["pg_restore", f"--dbname={restored}", "--no-owner", "--exit-on-error", str(tonight)],
                                 env=env, capture_output=True, text=True, timeout=300)
        assert restore.returncode == 0, restore.stderr
        if timescaledb:
            subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-c", "SELECT timescaledb_post_restore()"], env=env,
                           check=True, capture_output=True)
        query = f"SELECT id, price FROM {table} ORDER BY id"
        assert rows(database_url, restored, query) == rows(database_url, source, query)
        history = "SELECT * FROM tradeflow_schema_history ORDER BY 1"
        assert rows(database_url, restored, history) == rows(database_url, source, history)
        ticks = f"SELECT trade_id, ts, price FROM ticks WHERE exchange = '{exchange}' ORDER BY ts"
        assert len(rows(database_url, restored, ticks)) == 300
        assert rows(database_url, restored, ticks) == rows(database_url, source, ticks)
        if timescaledb:  # still a hypertable after the restore
            assert rows(database_url, restored, "SELECT 1 FROM timescaledb_information.hypertables "
                                                "WHERE hypertable_name = 'ticks'")
    finally:
        rows(database_url, source, f"DROP DATABASE IF EXISTS {restored} WITH (FORCE)")
        rows(database_url, source, f"DROP TABLE {table}")
        rows(database_url, source, f"DELETE FROM ticks WHERE exchange = '{exchange}'")
