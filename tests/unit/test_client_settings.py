"""Operator commands and the demo find every service's API under one rule: TRADEFLOW_<SERVICE>_URL."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from tradeflow.clients.settings import ClientSettings
from tradeflow.settings import ConfigurationError, environment_variable, load_settings
from tradeflow_ops.cli.demo import service_url_variable


def test_every_installed_service_has_its_url_setting_under_the_variable_the_demo_sets():
    variables = {environment_variable(ClientSettings, field) for field in ClientSettings.model_fields}
    for service in (ep.name for ep in entry_points(group="tradeflow.services")):
        assert service_url_variable(service) in variables, service


def test_urls_default_to_the_design_ports_and_the_first_api_key_is_sent(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_API_KEYS", "first-key-0123456789,second-key-0123456789")
    settings = load_settings(ClientSettings)
    assert (settings.candle_builder_url, settings.strategy_url, settings.risk_url, settings.execution_url) == (
        "http://127.0.0.1:8002", "http://127.0.0.1:8003", "http://127.0.0.1:8004", "http://127.0.0.1:8005")
    assert settings.bearer_headers() == {"Authorization": "Bearer first-key-0123456789"}


def test_a_bad_url_names_its_variable(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_RISK_URL", "risk:8004")
    with pytest.raises(ConfigurationError, match="TRADEFLOW_RISK_URL"):
        load_settings(ClientSettings)
