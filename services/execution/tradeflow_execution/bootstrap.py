"""Wiring of execution: settings -> components -> FastAPI app (``tradeflow run execution``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
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
from tradeflow.time import NS_PER_S
from tradeflow.topics import (
    EXEC_ACCOUNTS,
    EXEC_FILLS,
    EXEC_ORDERS,
    MD_TICKS,
    OPS_ALERTS,
    RISK_EVENTS,
    RISK_ORDERS,
    TopicSpec,
)
from tradeflow_db import Database
from tradeflow_db.outbox import Outbox, OutboxRelay

from tradeflow_execution import demo
from tradeflow_execution.adapters.live_broker import LiveBroker
from tradeflow_execution.adapters.order_queries import OrderQueries
from tradeflow_execution.adapters.paper_broker import PaperBroker, PaperMarket
from tradeflow_execution.adapters.postgres_store import PostgresExecutionStore
from tradeflow_execution.adapters.tick_history import TickHistory
from tradeflow_execution.api import create_execution_router
from tradeflow_execution.consumption import ExecutionConsumption
from tradeflow_execution.domain.markets import Markets, MarketSteps
from tradeflow_execution.domain.paper_exchange import PaperExchange
from tradeflow_execution.live_wiring import LiveBrokers, create_live_brokers, live_readiness
from tradeflow_execution.metrics import ExecutionMetrics
from tradeflow_execution.order_traces import OrderTracing
from tradeflow_execution.service import ExecutionService, OutputTopics
from tradeflow_execution.settings import ExecutionSettings
from tradeflow_execution.store import ExecutionStore

SERVICE_NAME = "execution"
DEFAULT_PORT = 8005
DB_POOL_SIZE = 4  # the consumer's transactions, the outbox relay, the API, history reads
SCHEMA_REVISION = "execution_0002"  # the newest migration this service needs
OUTBOX_TABLE = "execution_outbox"
OUTBOX_RELAY_BATCH = 5_000  # a batch of orders is about 4 messages each: fewer, larger relay rounds


def topic_specs(settings: ExecutionSettings) -> dict[str, TopicSpec]:
    """The design's topic specs under the configured names (tests use their own)."""
    return {
        "orders": dataclasses.replace(RISK_ORDERS, name=settings.orders_topic),
        "risk_events": dataclasses.replace(RISK_EVENTS, name=settings.risk_events_topic),
        "ticks": dataclasses.replace(MD_TICKS, name=settings.ticks_topic),
        "order_events": dataclasses.replace(EXEC_ORDERS, name=settings.order_events_topic),
        "fills": dataclasses.replace(EXEC_FILLS, name=settings.fills_topic),
        "alerts": dataclasses.replace(OPS_ALERTS, name=settings.alerts_topic),
        "accounts": dataclasses.replace(EXEC_ACCOUNTS, name=settings.accounts_topic),
    }


@dataclass
class Execution:
    """The wired service: what the app runs and the parts a test drives directly."""

    components: list[Any]
    routers: list[Any]
    readiness_checks: list[ReadinessCheck]
    producer: Any
    consumer: Any
    service: ExecutionService
    paper: PaperMarket
    live: dict[str, LiveBroker]


def create_pipeline(settings: ExecutionSettings, bus: Bus, dead_letters: Any, *, store: ExecutionStore,
                    history: Any, live: Mapping[str, LiveBroker], metrics: ExecutionMetrics,
                    clock: Clock = SYSTEM_CLOCK) -> tuple[ExecutionService, PaperMarket, Any]:
    """Orders and trades in to transitions and fills out: the service with every account's broker
    (paper ones on one paper market and ``history``, then the ``live`` ones) and the consumer
    group on the orders, risk events and ticks topics (``build`` passes the PostgreSQL store and
    md.ticks.v1 history; unit tests in-memory ones)."""
    specs = topic_specs(settings)
    markets = Markets((MarketSteps(m.exchange, m.symbol, m.price_step, m.quantity_step)
                       for m in settings.markets), participation=settings.max_participation)
    service: ExecutionService  # the paper exchange asks it for positions (reduce-only orders)

    def position_of(account_id: str, exchange: str, symbol: str):
        return service.position_quantity(account_id, exchange, symbol)

    def new_exchange() -> PaperExchange:
        return PaperExchange(position_of=position_of, window_trades=settings.trade_window,
                             window_ns=int(settings.trade_window_s * NS_PER_S))

    paper = PaperMarket(new_exchange, history, on_history_read=metrics.history_reads.inc)
    brokers = {account.id: PaperBroker(account, paper, markets, clock=clock.now_ns)
               for account in settings.accounts if account.mode == "paper"}
    brokers.update(live)
    service = ExecutionService(
        accounts=settings.accounts, brokers=brokers, trade_driven=[paper], markets=markets, store=store,
        topics=OutputTopics(order_events=settings.order_events_topic, fills=settings.fills_topic,
                            alerts=settings.alerts_topic, accounts=settings.accounts_topic),
        metrics=metrics, tracing=OrderTracing(bus.telemetry.tracer if settings.otlp_endpoint else None),
        clock=clock.now_ns)
    consumption = ExecutionConsumption(
        service, orders_topic=settings.orders_topic,
        risk_events_topic=settings.risk_events_topic, ticks_topic=settings.ticks_topic)
    consumer = bus.consumer(
        topics=[specs["orders"], specs["risk_events"], specs["ticks"]],
        group_id=settings.consumer_group,
        handler=consumption.handle,
        dead_letters=dead_letters,
        max_batch=settings.consumer_max_batch,
        client_id=f"{settings.kafka_client_id}-{SERVICE_NAME}",
    )
    return service, paper, consumer


def build(settings: ExecutionSettings, bus: Bus, database: Database, clock: Clock = SYSTEM_CLOCK) -> Execution:
    """Wire the service from its settings, a bus, its database and a clock. Pure: nothing starts
    or connects here (a live account's ccxt client is made, not opened). ``create_app`` passes
    the Kafka bus, the real database and the system clock."""
    telemetry = bus.telemetry
    specs = topic_specs(settings)
    client_id = f"{settings.kafka_client_id}-{SERVICE_NAME}"
    metrics = ExecutionMetrics(telemetry)
    outbox = Outbox(OUTBOX_TABLE)
    store = PostgresExecutionStore(database, outbox)
    # The outbox relay hands the producer a whole round's rows: lingering would only hold each fill
    # back on the trading path, as it did risk's orders (docs/adr/0018, Speed).
    producer = bus.producer(client_id=client_id, linger_ms=0)
    relay = OutboxRelay(database, outbox, producer, telemetry, batch=OUTBOX_RELAY_BATCH)
    history = TickHistory(bus, topic=settings.ticks_topic, group_id=settings.consumer_group,
                          client_id=f"{client_id}-history", margin_s=settings.history_margin_s)
    live = create_live_brokers(settings, telemetry, clock)
    service, paper, consumer = create_pipeline(settings, bus, bus.dead_letters(producer), store=store,
                                               history=history, live=live, metrics=metrics, clock=clock)
    return Execution(
        # Stopped in reverse: the consumer commits and leaves, the service finishes its batch, the
        # relay publishes what is committed, then the producer flushes and the pool closes.
        components=[bus.topics_exist(list(specs.values())), database, producer, history, service, relay,
                    LiveBrokers(live, service, settings.live_ready_wait_s), consumer],
        routers=[create_execution_router(service, OrderQueries(database))],
        readiness_checks=[
            broker_check(producer),
            ReadinessCheck("database", database.ping),
            consumer_check(consumer),
            *([live_readiness(live, service)] if live else []),
        ],
        producer=producer, consumer=consumer, service=service, paper=paper, live=live,
    )


def create_app(settings: ExecutionSettings) -> FastAPI:
    telemetry = Telemetry(SERVICE_NAME, settings)
    database = settings.service_database(SERVICE_NAME, required_revision=SCHEMA_REVISION, default_pool_size=DB_POOL_SIZE)
    service = build(settings, KafkaBus(settings, telemetry), database, SYSTEM_CLOCK)
    return create_wired_app(SERVICE_NAME, settings, telemetry, service,
                            description="Approved orders to each account's broker (paper: filled from md.ticks.v1 by the fill rule); "
                    "transitions, fills, positions and balances.")


SERVICE = ServiceDefinition(
    name=SERVICE_NAME, default_port=DEFAULT_PORT, settings_type=ExecutionSettings, create_app=create_app,
    # In the demo after risk (its orders).
    demo=ServiceDemo(stage=50, settings=demo.demo_settings, examples=demo.demo_examples, status=demo.demo_status),
)
