"""The strategy service's settings and its part in `tradeflow demo`: what an operator configures."""

from __future__ import annotations

import pytest
from tradeflow.service import DemoContext, DemoOptions, service_definition
from tradeflow.settings import ConfigurationError, load_settings
from tradeflow_strategy.domain.instances import validate_definition
from tradeflow_trading.strategy.loader import load_catalog


def test_the_demo_runs_two_sma_cross_instances_on_a_paper_account_of_the_synthetic_market(monkeypatch):
    definition = service_definition("strategy")
    assert (definition.default_port, definition.demo.stage) == (8003, 30)
    values = definition.demo.settings(DemoOptions(symbols=3, rate=50.0))
    monkeypatch.setenv("TRADEFLOW_ACCOUNTS", values["accounts"])
    monkeypatch.setenv("TRADEFLOW_STRATEGY_INSTANCES", values["instances"])
    settings = load_settings(definition.settings_type)
    catalog = load_catalog()
    instances = [validate_definition(body, strategy_type=catalog.get, accounts=settings.accounts)
                 for body in settings.instances]
    assert [(i.id, i.strategy, i.exchange, i.symbols, dict(i.params)) for i in instances] == [
        ("demo-sma-3-8", "sma_cross", "synthetic", ("SYM00/USD", "SYM01/USD", "SYM02/USD"), {"fast": 3, "slow": 8}),
        ("demo-sma-5-20", "sma_cross", "synthetic", ("SYM00/USD", "SYM01/USD", "SYM02/USD"), {"fast": 5, "slow": 20})]
    assert settings.accounts[0].mode == "paper"
    context = DemoContext(base_url="http://127.0.0.1:8003", api_key="k" * 20, exchange="synthetic", symbol="SYM00/USD")
    status, pause = definition.demo.examples(context)
    assert status == "curl http://127.0.0.1:8003/v1/strategies/demo-sma-3-8"
    assert pause.endswith(f"/pause -H 'Authorization: Bearer {'k' * 20}'")


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("TRADEFLOW_STRATEGY_INSTANCES", "[{", "TRADEFLOW_STRATEGY_INSTANCES: must be a JSON list of instance definitions"),
    ("TRADEFLOW_CANDLE_BUILDER_URL", "candle-builder:8002", "TRADEFLOW_CANDLE_BUILDER_URL: String should match pattern"),
    ("TRADEFLOW_STRATEGY_TOPIC_CANDLES", "md candles", "TRADEFLOW_STRATEGY_TOPIC_CANDLES: must be a Kafka topic name"),
    ("TRADEFLOW_STRATEGY_PATHS", "", None),
])
def test_a_bad_setting_stops_the_service_naming_its_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    settings_type = service_definition("strategy").settings_type
    if message is None:
        assert load_settings(settings_type).strategy_paths == []
        return
    with pytest.raises(ConfigurationError, match=message):
        load_settings(settings_type)
