"""Which statements keep N days of ticks in each storage mode (pure; no database).

These pin down the SQL each mode receives; every mode also runs for real in
tests/integration/test_tick_retention.py (the licensed one on PGlite + TimescaleDB, where the
policy's job is run by the test since PGlite has no scheduler: docs/adr/0011).
"""

from __future__ import annotations

import pytest
from tradeflow.settings import ConfigurationError, load_settings
from tradeflow_candle_builder.adapters.tick_retention_plan import DELETE_BATCH_ROWS, plan_tick_retention
from tradeflow_candle_builder.settings import CandleBuilderSettings
from tradeflow_db.capabilities import DatabaseCapabilities

LICENSED = DatabaseCapabilities.for_mode("timescaledb", "2.17.2")
APACHE = DatabaseCapabilities.for_mode("timescaledb-apache", "2.17.2")
PLAIN = DatabaseCapabilities.for_mode("postgres")


def test_the_licensed_build_gets_an_idempotent_retention_policy_replaced_when_the_age_changed():
    plan = plan_tick_retention(LICENSED, 30)
    assert plan.method == "policy"
    remove, add = plan.statements
    assert add == "SELECT add_retention_policy('ticks', drop_after => INTERVAL '30 days', if_not_exists => true)"
    # Only a policy on ticks whose age differs is removed; an equal one is left alone.
    assert remove.startswith("SELECT remove_retention_policy('ticks', if_exists => true) WHERE EXISTS (")
    assert "proc_name = 'policy_retention'" in remove and "hypertable_name = 'ticks'" in remove
    assert "(config->>'drop_after')::interval IS DISTINCT FROM INTERVAL '30 days'" in remove
    assert "drop_chunks" not in " ".join(plan.statements) and "DELETE" not in " ".join(plan.statements)


def test_the_apache_build_drops_whole_chunks_older_than_the_retention():
    plan = plan_tick_retention(APACHE, 7)
    assert plan.method == "drop_chunks"
    assert plan.statements == ("SELECT drop_chunks('ticks', older_than => now() - INTERVAL '7 days')::text",)


def test_plain_postgres_deletes_old_ticks_in_batches():
    plan = plan_tick_retention(PLAIN, 30)
    assert plan.method == "delete"
    (statement,) = plan.statements
    assert statement.startswith("DELETE FROM ticks WHERE ")
    assert "ts < %s" in statement and f"LIMIT {DELETE_BATCH_ROWS}" in statement
    assert plan.batch_rows == DELETE_BATCH_ROWS


def test_only_ticks_are_ever_touched_never_candles():
    for caps in (LICENSED, APACHE, PLAIN):
        text = " ".join(plan_tick_retention(caps, 30).statements)
        assert "candles" not in text


@pytest.mark.parametrize("days", [0, -1, 1.5, True, "30"])
def test_a_retention_below_one_day_or_not_whole_days_is_refused(days):
    with pytest.raises(ValueError, match="whole number of days >= 1"):
        plan_tick_retention(PLAIN, days)


@pytest.mark.parametrize("value", ["0", "-3", "thirty"])
def test_the_candle_builder_refuses_a_bad_tick_retention_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS", value)
    with pytest.raises(ConfigurationError, match="TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS"):
        load_settings(CandleBuilderSettings)


def test_the_candle_builder_keeps_30_days_of_ticks_and_checks_hourly_by_default(monkeypatch):
    settings = load_settings(CandleBuilderSettings)
    assert (settings.tick_retention_days, settings.retention_interval_s) == (30, 3600.0)
    monkeypatch.setenv("TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS", "7")
    assert load_settings(CandleBuilderSettings).tick_retention_days == 7
