"""A service started as a new user would (`tradeflow run candle-builder`) on a database nobody
migrated stops at once with a message naming the revision it needs and `tradeflow db upgrade`,
not with an UndefinedTable traceback from its first query."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from tradeflow_candle_builder.adapters.candle_store import REQUIRED_REVISION
from tradeflow_db.migrate import upgrade

pytestmark = pytest.mark.timeout(120)

TRADEFLOW = Path(sys.executable).with_name("tradeflow")


def run_candle_builder(service_env: dict[str, str], database_url: str, name: str) -> tuple[int, str]:
    """`tradeflow run candle-builder` on ``database_url`` (its topics do not exist either: the
    database is checked first); (exit status, everything it printed)."""
    env = {**os.environ, **service_env, "TRADEFLOW_DATABASE_URL": database_url, "TRADEFLOW_LOG_FORMAT": "text",
           "TRADEFLOW_HTTP_PORT": "0", "TRADEFLOW_CANDLE_BUILDER_TICKS_TOPIC": f"{name}.ticks",
           "TRADEFLOW_CANDLE_BUILDER_CANDLES_TOPIC": f"{name}.candles"}
    done = subprocess.run([str(TRADEFLOW), "run", "candle-builder"], env=env, capture_output=True, text=True,
                          timeout=90)
    return done.returncode, done.stdout + done.stderr


def test_candle_builder_on_an_unmigrated_database_names_the_revision_and_the_command(
        service_env, fresh_database_url, unique_name):
    status, output = run_candle_builder(service_env, fresh_database_url, unique_name)

    assert status != 0, output
    assert f"has no Tradeflow schema (this service needs revision {REQUIRED_REVISION})" in output, output
    assert "run `tradeflow db upgrade`" in output, output
    assert "UndefinedTable" not in output and "Traceback" not in output, output


def test_candle_builder_on_a_database_behind_its_revision_says_which_one_it_needs(
        service_env, fresh_database_url, unique_name):
    upgrade(fresh_database_url, revision="0003")  # one revision short of what the service needs

    status, output = run_candle_builder(service_env, fresh_database_url, unique_name)

    assert status != 0, output
    assert f"is not migrated to revision {REQUIRED_REVISION}, which this service needs" in output, output
    assert "run `tradeflow db upgrade`" in output and "Traceback" not in output, output


def test_where_the_operator_turns_it_on_the_service_migrates_the_empty_database_and_starts(
        service_env, fresh_database_url, unique_name):
    with socket.socket() as probe:  # a free loopback port for its API
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **service_env, "TRADEFLOW_DATABASE_URL": fresh_database_url, "TRADEFLOW_LOG_FORMAT": "text",
           "TRADEFLOW_HTTP_PORT": str(port), "TRADEFLOW_DB_MIGRATE_ON_START": "true",
           "TRADEFLOW_CANDLE_BUILDER_CONSUMER_GROUP": unique_name,
           "TRADEFLOW_CANDLE_BUILDER_TICKS_TOPIC": f"{unique_name}.ticks",
           "TRADEFLOW_CANDLE_BUILDER_CANDLES_TOPIC": f"{unique_name}.candles"}
    service = subprocess.Popen([str(TRADEFLOW), "run", "candle-builder"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and service.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code
            except httpx.HTTPError:
                status = None
            if status == 200:
                break
            time.sleep(0.3)
        assert status == 200, service.poll()
    finally:
        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=60)
    # Stopped cleanly (uvicorn re-raises the SIGTERM it handled once the app has stopped).
    assert service.returncode in (0, -signal.SIGTERM) and "candle-builder stopped" in output, output
    assert "migrating" in output and "migrate_on_start" in output, output
    with psycopg.connect(fresh_database_url) as conn:
        revisions = {r[0] for r in conn.execute("SELECT revision FROM tradeflow_schema_history")}
    assert REQUIRED_REVISION in revisions
