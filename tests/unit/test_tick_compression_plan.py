"""Which statements compress old ticks in each storage mode (pure; no database).

These pin down the SQL each mode receives. Every mode also runs for real in
tests/integration/test_tick_compression.py: the Apache and plain-PostgreSQL paths must do
nothing, the licensed one runs on PGlite + TimescaleDB (docs/adr/0011).
"""

from __future__ import annotations

import pytest
from tradeflow.settings import ConfigurationError, load_settings
from tradeflow_candle_builder.adapters.tick_compression_plan import plan_tick_compression
from tradeflow_candle_builder.settings import CandleBuilderSettings
from tradeflow_db.capabilities import DatabaseCapabilities

LICENSED = DatabaseCapabilities.for_mode("timescaledb", "2.17.2")
APACHE = DatabaseCapabilities.for_mode("timescaledb-apache", "2.17.2")
PLAIN = DatabaseCapabilities.for_mode("postgres")


def test_the_licensed_build_enables_compression_once_and_keeps_a_policy_of_the_configured_age():
    plan = plan_tick_compression(LICENSED, 7)
    assert plan.method == "policy" and plan.days == 7
    enable, remove, add = plan.statements
    # Enabled only when not enabled yet (altering a hypertable with compressed chunks fails).
    assert enable.startswith("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables ")
    assert "hypertable_name = 'ticks' AND compression_enabled) THEN ALTER TABLE ticks SET (timescaledb.compress, " in enable
    assert "timescaledb.compress_segmentby = 'exchange, symbol'" in enable
    # trade_id completes the unique key (exchange, symbol, ts, trade_id), which compression requires.
    assert "timescaledb.compress_orderby = 'ts, trade_id'" in enable
    # Only a policy of another age is removed, so a changed setting applies.
    assert remove.startswith("SELECT remove_compression_policy('ticks', if_exists => true) WHERE EXISTS (")
    assert "proc_name = 'policy_compression'" in remove
    assert "(config->>'compress_after')::interval IS DISTINCT FROM INTERVAL '7 days'" in remove
    assert add == "SELECT add_compression_policy('ticks', compress_after => INTERVAL '7 days', if_not_exists => true)"
    assert "candles" not in " ".join(plan.statements)


def test_zero_days_turns_compression_off_by_removing_the_policy():
    plan = plan_tick_compression(LICENSED, 0)
    assert plan.method == "disabled"
    (remove,) = plan.statements
    assert remove.startswith("SELECT remove_compression_policy('ticks', if_exists => true) WHERE EXISTS (")


@pytest.mark.parametrize(("caps", "mode"), [(APACHE, "timescaledb-apache"), (PLAIN, "postgres")])
@pytest.mark.parametrize("days", [0, 7])
def test_without_the_license_there_is_nothing_to_run_and_the_reason_says_why(caps, mode, days):
    plan = plan_tick_compression(caps, days)
    assert plan.method == "unavailable" and plan.statements == ()
    assert f"unavailable in storage mode {mode!r}" in plan.reason and "Timescale license" in plan.reason


@pytest.mark.parametrize("days", [-1, 1.5, True, "7"])
def test_a_negative_or_fractional_age_is_refused(days):
    with pytest.raises(ValueError, match="whole number of days >= 0"):
        plan_tick_compression(LICENSED, days)


def test_the_candle_builder_compresses_ticks_after_7_days_by_default(monkeypatch):
    assert load_settings(CandleBuilderSettings).tick_compress_after_days == 7
    # A shorter retention alone keeps working: the default follows it (0: off).
    monkeypatch.setenv("TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS", "7")
    assert load_settings(CandleBuilderSettings).tick_compress_after_days == 6
    monkeypatch.setenv("TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS", "1")
    assert load_settings(CandleBuilderSettings).tick_compress_after_days == 0
    monkeypatch.setenv("TRADEFLOW_CANDLE_BUILDER_TICK_COMPRESS_AFTER_DAYS", "0")
    monkeypatch.setenv("TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS", "1")  # off: any retention goes
    assert load_settings(CandleBuilderSettings).tick_compress_after_days == 0


@pytest.mark.parametrize(("compress", "retention"), [("30", "30"), ("40", "30"), ("7", "3")])
def test_compressing_at_or_after_the_retention_is_refused_naming_both_variables(monkeypatch, compress, retention):
    monkeypatch.setenv("TRADEFLOW_CANDLE_BUILDER_TICK_COMPRESS_AFTER_DAYS", compress)
    monkeypatch.setenv("TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS", retention)
    with pytest.raises(ConfigurationError, match="TRADEFLOW_CANDLE_BUILDER_TICK_COMPRESS_AFTER_DAYS") as raised:
        load_settings(CandleBuilderSettings)
    assert "TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS" in str(raised.value)


@pytest.mark.parametrize("value", ["-1", "seven"])
def test_a_bad_compression_age_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("TRADEFLOW_CANDLE_BUILDER_TICK_COMPRESS_AFTER_DAYS", value)
    with pytest.raises(ConfigurationError, match="TRADEFLOW_CANDLE_BUILDER_TICK_COMPRESS_AFTER_DAYS"):
        load_settings(CandleBuilderSettings)
