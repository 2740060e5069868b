"""Risk wired by ``build`` on the in-memory bus and a test clock: no broker, and the database
pool is built but never opened (the service's decisions need the database: they are tested
against PostgreSQL in tests/integration and on in-memory books in the other unit tests)."""

from __future__ import annotations

import pytest
from tradeflow.testing import MemoryBus, TestClock
from tradeflow_risk.bootstrap import build
from tradeflow_risk.settings import RiskSettings

UNOPENED_DATABASE = "postgresql://nobody@127.0.0.1:9/never-opened"


def test_build_wires_the_service_on_the_given_bus_without_starting_anything():
    clock = TestClock()
    bus = MemoryBus(clock=clock)
    config = RiskSettings(database_url=UNOPENED_DATABASE, instance_id="replica-a")
    database = config.service_database("risk", required_revision="risk_0003", default_pool_size=6)
    service = build(config, bus, database, clock)

    # In start order (stopped in reverse): the consumers start after everything they feed, and the
    # garbage collector's freeze comes last.
    assert [type(c).__name__ for c in service.components] == [
        "_TopicsExist", "Database", "InstrumentCalendars", "ExchangeMarkets", "RiskService", "MemoryProducer",
        "OutboxRelay", "MarketStateSaver", "MemoryConsumer", "MemoryConsumer", "FreezeStartupObjects"]
    components = service.components
    assert components[1] is database and components[4] is service.service and components[5] is service.producer
    assert components[8:10] == [service.trading_consumer, service.market_consumer] == bus.consumers
    assert [c.name for c in service.readiness_checks] == [
        "broker", "database", "state", "markets", "instruments", "consumer:risk", "consumer:risk-md-replica-a"]

    trading, market = bus.consumers
    assert trading.subscribed_topics == [config.signals_topic, config.exec_orders_topic, config.exec_fills_topic,
                                         config.exec_accounts_topic]
    assert market.subscribed_topics == [config.candles_topic, config.ticks_topic]
    assert (trading.group_id, market.group_id) == ("risk", "risk-md-replica-a")
    # The trading topics poll at the service's fetch wait (TRADEFLOW_CONSUMER_FETCH_MAX_WAIT_MS); the
    # market data, off the signal-to-order path, at its own longer one (ADR 0019).
    assert (trading.fetch_max_wait_ms, market.fetch_max_wait_ms) == (None, 100)

    # Nothing started: risk's own output topics are made only by the topics component at start,
    # nothing is written, the producer and both consumers are idle.
    for topic in (config.orders_topic, config.events_topic):
        with pytest.raises(LookupError):
            bus.broker.partitions(topic)
    assert all(bus.broker.records(topic) == [] for c in bus.consumers for topic in c.subscribed_topics)
    assert not service.producer.is_connected()
    assert not trading.is_ready() and not market.is_ready()


def test_the_market_data_consumer_takes_its_fetch_wait_from_its_own_setting(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_RISK_MARKET_DATA_FETCH_MAX_WAIT_MS", "250")
    config = RiskSettings(database_url=UNOPENED_DATABASE, instance_id="replica-a")
    bus = MemoryBus(clock=TestClock())
    build(config, bus, config.service_database("risk", required_revision="risk_0003", default_pool_size=6))
    assert [c.fetch_max_wait_ms for c in bus.consumers] == [None, 250]

    monkeypatch.setenv("TRADEFLOW_RISK_MARKET_DATA_FETCH_MAX_WAIT_MS", "0")
    with pytest.raises(ValueError, match="market_data_fetch_max_wait_ms"):
        RiskSettings(database_url=UNOPENED_DATABASE)
