"""Wiring of the risk service: settings -> components -> FastAPI app (``tradeflow run risk``)."""

from __future__ import annotations

import dataclasses
import gc
import socket
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from tradeflow.bus import Bus, KafkaBus
from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.service import (
    ReadinessCheck,
    ServiceDefinition,
    ServiceDemo,
    broker_check,
    consumer_check,
    create_wired_app,
)
from tradeflow.telemetry import Telemetry
from tradeflow.topics import (
    EXEC_ACCOUNTS,
    EXEC_FILLS,
    EXEC_ORDERS,
    MD_CANDLES,
    MD_TICKS,
    RISK_EVENTS,
    RISK_ORDERS,
    STRATEGY_SIGNALS,
    TopicSpec,
)
from tradeflow_db import Database
from tradeflow_db.outbox import Outbox, OutboxRelay

from tradeflow_risk import demo
from tradeflow_risk.adapters.exchange_markets import ExchangeMarkets
from tradeflow_risk.adapters.instrument_calendars import InstrumentCalendars
from tradeflow_risk.adapters.store import OUTBOX_TABLE, REQUIRED_REVISION, RiskStore
from tradeflow_risk.adapters.topic_dispatch import MarketDataDispatch, MarketStateSaver, TradingDispatch
from tradeflow_risk.api import create_risk_router
from tradeflow_risk.domain.market import MarketData
from tradeflow_risk.domain.profiles import Profiles
from tradeflow_risk.service import RiskService, Topics
from tradeflow_risk.settings import RiskSettings

SERVICE_NAME = "risk"
DEFAULT_PORT = 8004
DB_POOL_SIZE = 6  # decisions, the outbox relay, the API


class FreezeStartupObjects:
    """A service Component, started last: moves everything allocated so far (modules, the app, the
    loaded books) out of the garbage collector's reach (``gc.freeze``).

    Without it every full collection walked those few hundred thousand long-lived objects: a
    pause of 0.2 s and more in the middle of the decisions (the p99 of signal to order), and
    about 5% of the decisions' time. Objects made later are collected as before.
    """

    name = "gc-freeze"

    async def start(self) -> None:
        gc.collect()  # what start-up left behind goes now, not into the permanent generation
        gc.freeze()

    async def stop(self) -> None:
        gc.unfreeze()


def named(spec: TopicSpec, name: str) -> TopicSpec:
    """The design's topic spec under its configured name (tests use their own topics)."""
    return dataclasses.replace(spec, name=name)


@dataclass
class Risk:
    """The wired service: what the app runs and the parts a test drives directly."""

    components: list[Any]
    routers: list[Any]
    readiness_checks: list[ReadinessCheck]
    producer: Any
    trading_consumer: Any
    market_consumer: Any
    service: RiskService


def build(settings: RiskSettings, bus: Bus, database: Database, clock: Clock = SYSTEM_CLOCK) -> Risk:
    """Wire the service from its settings, a bus, its database and a clock. Pure: nothing
    starts or connects here. ``create_app`` passes the Kafka bus, the real database and the
    system clock (the service's wall time is ``clock.now_ns``)."""
    telemetry = bus.telemetry
    signals, exec_orders, exec_fills = (named(STRATEGY_SIGNALS, settings.signals_topic),
                                        named(EXEC_ORDERS, settings.exec_orders_topic),
                                        named(EXEC_FILLS, settings.exec_fills_topic))
    exec_accounts = named(EXEC_ACCOUNTS, settings.exec_accounts_topic)
    candles, ticks = named(MD_CANDLES, settings.candles_topic), named(MD_TICKS, settings.ticks_topic)
    orders, events = named(RISK_ORDERS, settings.orders_topic), named(RISK_EVENTS, settings.events_topic)
    client_id = f"{settings.kafka_client_id}-{SERVICE_NAME}"

    outbox = Outbox(OUTBOX_TABLE)
    # The relay hands the producer whole batches (a round's rows, one record batch per partition):
    # lingering would only hold each decision's order back (docs/adr/0018, Speed).
    producer = bus.producer(client_id=client_id, linger_ms=0)
    # A commit wakes the relay at once; the NOTIFY (a hop through the database) wakes it only for
    # another replica's commits.
    relay = OutboxRelay(database, outbox, producer, telemetry, woken_by_local_commits=True)
    store = RiskStore(database, outbox, on_commit=relay.wake)
    dead_letters = bus.dead_letters(producer)
    markets = ExchangeMarkets(settings.exchanges, {account.exchange for account in settings.accounts})
    calendars = InstrumentCalendars(settings.instruments_url, settings.instruments_refresh_s)
    market = MarketData(settings.market_timeframe, settings.volatility_period, settings.correlation_window)
    service = RiskService(accounts=settings.accounts,
                          profiles=Profiles(settings.account_profiles, settings.strategy_profiles),
                          store=store, market=market, markets=markets, calendars=calendars,
                          topics=Topics(orders=orders.name, events=events.name), telemetry=telemetry,
                          wall_clock_ns=clock.now_ns)
    trading = TradingDispatch(service, signals_topic=signals.name, orders_topic=exec_orders.name,
                              fills_topic=exec_fills.name, accounts_topic=exec_accounts.name)
    market_data = MarketDataDispatch(service, telemetry, candles_topic=candles.name, ticks_topic=ticks.name)
    saver = MarketStateSaver(service, market_data, settings.market_state_flush_s)
    trading_consumer = bus.consumer(
        topics=[signals, exec_orders, exec_fills, exec_accounts], group_id=settings.consumer_group,
        handler=trading.handle, dead_letters=dead_letters, max_batch=settings.consumer_max_batch,
        committable_offsets=trading.committable_offsets, on_revoked=trading.on_revoked, client_id=client_id)
    # Every replica reads all market data (marks and stops of any account it may decide for);
    # a new group starts at the newest records: the marks of before are in the database.
    market_consumer = bus.consumer(
        topics=[candles, ticks],
        group_id=settings.market_data_group_of(settings.instance_id or socket.gethostname()),
        handler=market_data.handle, dead_letters=dead_letters, max_batch=settings.consumer_max_batch,
        committable_offsets=market_data.committable_offsets, on_revoked=market_data.on_revoked,
        auto_offset_reset="latest", client_id=f"{client_id}-md",
        fetch_max_wait_ms=settings.market_data_fetch_max_wait_ms)
    return Risk(
        # Started in order, stopped in reverse: the consumers leave first, the saver stores the
        # market state, the relay publishes what is committed, then the producer and the pool close.
        components=[bus.topics_exist([signals, exec_orders, exec_fills, exec_accounts, candles, ticks, orders, events]),
                    database, calendars, markets, service, producer, relay, saver, trading_consumer, market_consumer,
                    FreezeStartupObjects()],
        routers=[create_risk_router(service)],
        readiness_checks=[
            broker_check(producer),
            ReadinessCheck("database", database.ping),
            ReadinessCheck("state", service.ready),
            ReadinessCheck("markets", markets.ready),
            ReadinessCheck("instruments", calendars.ready),
            consumer_check(trading_consumer),
            consumer_check(market_consumer),
        ],
        producer=producer, trading_consumer=trading_consumer, market_consumer=market_consumer, service=service,
    )


def create_app(settings: RiskSettings) -> FastAPI:
    telemetry = Telemetry(SERVICE_NAME, settings)
    database = settings.service_database(SERVICE_NAME, required_revision=REQUIRED_REVISION, default_pool_size=DB_POOL_SIZE)
    service = build(settings, KafkaBus(settings, telemetry), database, SYSTEM_CLOCK)
    return create_wired_app(SERVICE_NAME, settings, telemetry, service,
                            description="Every order passes one gate: sizing, limits, states, protective exits and the kill switch.")


SERVICE = ServiceDefinition(
    name=SERVICE_NAME, default_port=DEFAULT_PORT, settings_type=RiskSettings, create_app=create_app,
    # In the demo after the strategy service (its signals), before execution.
    demo=ServiceDemo(stage=40, settings=demo.demo_settings, examples=demo.demo_examples),
)
