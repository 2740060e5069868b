"""A service started as a new user would (`tradeflow run candle-builder`) on a database nobody
migrated stops at once with a message naming the revision it needs and `tradeflow db upgrade`,
not with an UndefinedTable traceback from its first query."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
