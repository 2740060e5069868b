"""Ingest configuration: defaults, environment variables, and bad values named at start."""

from __future__ import annotations

import pytest
from tradeflow.settings import ConfigurationError, load_settings
from tradeflow_ingest.settings import IngestSettings


def test_synthetic_market_is_off_by_default(monkeypatch):
    for name in ("SYMBOLS", "RATE", "SEED", "EXCHANGE"):
        monkeypatch.delenv(f"TRADEFLOW_INGEST_SYNTHETIC_{name}", raising=False)
    settings = load_settings(IngestSettings)
    assert (settings.synthetic_symbols, settings.synthetic_rate, settings.synthetic_seed,
            settings.synthetic_exchange) == (0, 200.0, 42, "synthetic")


def test_synthetic_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_INGEST_SYNTHETIC_SYMBOLS", "5")
    monkeypatch.setenv("TRADEFLOW_INGEST_SYNTHETIC_RATE", "12.5")
    monkeypatch.setenv("TRADEFLOW_INGEST_SYNTHETIC_SEED", "7")
    monkeypatch.setenv("TRADEFLOW_INGEST_SYNTHETIC_EXCHANGE", "sim")
    settings = load_settings(IngestSettings)
    assert (settings.synthetic_symbols, settings.synthetic_rate, settings.synthetic_seed,
            settings.synthetic_exchange) == (5, 12.5, 7, "sim")


@pytest.mark.parametrize("variable, value", [
    ("TRADEFLOW_INGEST_SYNTHETIC_SYMBOLS", "-1"),
    ("TRADEFLOW_INGEST_SYNTHETIC_SYMBOLS", "many"),
    ("TRADEFLOW_INGEST_SYNTHETIC_RATE", "0"),
    ("TRADEFLOW_INGEST_SYNTHETIC_RATE", "nan"),
    ("TRADEFLOW_INGEST_SYNTHETIC_EXCHANGE", "a:b"),
    ("TRADEFLOW_INGEST_SYNTHETIC_EXCHANGE", ""),
])
def test_a_bad_value_stops_the_service_naming_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(IngestSettings)
