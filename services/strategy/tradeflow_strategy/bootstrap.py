"""Wiring of the strategy service: settings -> components -> FastAPI app (``tradeflow run strategy``)."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from tradeflow.bus import Bus, KafkaBus
from tradeflow.clients.candles import CandleClient
from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.service import (
    DemoContext,
    DemoOptions,
    ReadinessCheck,
    ServiceDefinition,
    ServiceDemo,
    broker_check,
    consumer_check,
    create_wired_app,
)
from tradeflow.telemetry import Telemetry
from tradeflow.topics import EXEC_FILLS, MD_CANDLES, OPS_ALERTS, STRATEGY_SIGNALS, TopicSpec
from tradeflow_db import Database
from tradeflow_trading.accounts import DEMO_ACCOUNT_ID, demo_accounts
from tradeflow_trading.strategy.loader import load_catalog

from tradeflow_strategy.adapters.backtest_store import BacktestStore
from tradeflow_strategy.adapters.candle_history import CandleBuilderHistory
from tradeflow_strategy.adapters.fill_store import FillStore
from tradeflow_strategy.adapters.instance_store import InstanceStore
from tradeflow_strategy.api import create_strategies_router
from tradeflow_strategy.backtests_api import create_backtests_router
from tradeflow_strategy.bus_dispatch import FillPort, ProducerOutbound, record_handler, revoked_handler
from tradeflow_strategy.code_reload import CodeReloader
from tradeflow_strategy.engine import CandleHistory, FailureLog, StrategyEngine
from tradeflow_strategy.instance_sync import InstanceSync
from tradeflow_strategy.instances import InstanceService
from tradeflow_strategy.seed_instances import SeedInstances
from tradeflow_strategy.settings import StrategySettings
from tradeflow_strategy.status_writer import StatusWriter

SERVICE_NAME = "strategy"
DEFAULT_PORT = 8003
DB_POOL_SIZE = 4  # the API, the instance sync, the status writer
SCHEMA_REVISION = "strategy_0001"  # the newest revision of migrations/versions


def topic_specs(settings: StrategySettings) -> tuple[TopicSpec, TopicSpec, TopicSpec]:
    """The design's topic specs under the configured names (tests use their own topics)."""
    return (dataclasses.replace(MD_CANDLES, name=settings.topic_candles),
            dataclasses.replace(EXEC_FILLS, name=settings.topic_fills),
            dataclasses.replace(STRATEGY_SIGNALS, name=settings.topic_signals))


class CandleClientComponent:
    """Closes the candle-builder client's connections at stop."""

    name = "candle-client"

    def __init__(self, client: CandleClient) -> None:
        self.client = client

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.client.aclose()


@dataclass
class Strategy:
    """The wired service: what the app runs and the parts a test drives directly."""

    components: list[Any]
    routers: list[Any]
    readiness_checks: list[ReadinessCheck]
    producer: Any
    consumer: Any
    engine: StrategyEngine
    sync: InstanceSync


def create_engine(settings: StrategySettings, bus: Bus, producer: Any, dead_letters: Any, *,
                  strategy_type: Callable[[str], Any], history: CandleHistory, fills: FillPort, failures: FailureLog,
                  on_fills: Callable[[], None], replica: str, clock: Clock = SYSTEM_CLOCK) -> tuple[StrategyEngine, Any]:
    """The engine over its ports and the consumer group that feeds it the candles and fills
    topics (``build`` passes the database and candle-builder adapters; unit tests in-memory ones)."""
    candles_spec, fills_spec, signals_spec = topic_specs(settings)
    engine = StrategyEngine(
        strategy_type=strategy_type, history=history, fills=fills,
        outbound=ProducerOutbound(producer, signals_spec.name, SERVICE_NAME), failures=failures,
        telemetry=bus.telemetry, replica=replica, signals_topic=signals_spec.name, last_signals=settings.last_signals,
        warm_up_concurrency=settings.warm_up_concurrency, clock=clock)
    consumer = bus.consumer(
        topics=[candles_spec, fills_spec],
        group_id=settings.consumer_group,
        handler=record_handler(engine, fills, on_fills, candles_topic=candles_spec.name, fills_topic=fills_spec.name),
        dead_letters=dead_letters,
        max_batch=settings.batch_max_records,
        commit_interval_s=settings.commit_interval_s,
        on_revoked=revoked_handler(engine, candles_spec.name),
        client_id=f"{settings.kafka_client_id}-{SERVICE_NAME}",
    )
    return engine, consumer


def build(settings: StrategySettings, bus: Bus, database: Database, clock: Clock = SYSTEM_CLOCK) -> Strategy:
    """Wire the service from its settings, a bus, its database and a clock. Pure: nothing
    starts or connects here (the strategy files are read). ``create_app`` passes the Kafka bus,
    the real database and the system clock."""
    candles_spec, fills_spec, signals_spec = topic_specs(settings)
    replica = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
    producer = bus.producer(client_id=f"{settings.kafka_client_id}-{SERVICE_NAME}")
    catalog = load_catalog(settings.strategy_paths)
    candle_client = CandleClient(settings.candle_builder_url, timeout_s=settings.candle_builder_timeout_s)
    instances = InstanceStore(database)
    fills = FillStore(database)
    sync: InstanceSync | None = None

    def on_fills() -> None:  # the fills just stored move the positions on every replica
        if sync is not None:
            sync.wake_for_fills()

    engine, consumer = create_engine(settings, bus, producer, bus.dead_letters(producer), strategy_type=catalog.get,
                                     history=CandleBuilderHistory(candle_client), fills=fills, failures=instances,
                                     on_fills=on_fills, replica=replica, clock=clock)
    sync = InstanceSync(engine, instances, fills, interval_s=settings.instance_refresh_s, clock=clock)
    service = InstanceService(instances, catalog, settings.accounts, engine, sync)
    return Strategy(
        # Stopped in reverse: the consumer finishes its batch and commits, the last status is
        # written, then the producer flushes and the database pool closes.
        components=[bus.topics_exist([candles_spec, fills_spec, signals_spec, OPS_ALERTS]), database, producer,
                    CandleClientComponent(candle_client), SeedInstances(settings, service), sync,
                    CodeReloader(catalog, engine, interval_s=settings.reload_interval_s, clock=clock),
                    StatusWriter(engine, instances, interval_s=settings.status_interval_s, clock=clock), consumer],
        routers=[create_strategies_router(service), create_backtests_router(BacktestStore(database))],
        readiness_checks=[broker_check(producer), ReadinessCheck("database", database.ping), consumer_check(consumer)],
        producer=producer, consumer=consumer, engine=engine, sync=sync,
    )


def create_app(settings: StrategySettings) -> FastAPI:
    telemetry = Telemetry(SERVICE_NAME, settings)
    database = settings.service_database(SERVICE_NAME, required_revision=SCHEMA_REVISION, default_pool_size=DB_POOL_SIZE)
    service = build(settings, KafkaBus(settings, telemetry), database, SYSTEM_CLOCK)
    return create_wired_app(SERVICE_NAME, settings, telemetry, service,
                            description="Strategy instances run live on md.candles.v1; their signals go to strategy.signals.v1.")


DEMO_MARKETS = 5


def demo_settings(options: DemoOptions) -> dict[str, object]:
    """In `tradeflow demo`: the demo's paper account on the synthetic market and two sma_cross
    instances on its first symbols (ingest names them SYM00/USD, SYM01/USD, ...; README, "The demo")."""
    width = max(2, len(str(options.symbols - 1)))
    symbols = [f"SYM{i:0{width}d}/USD" for i in range(min(options.symbols, DEMO_MARKETS))]
    instances = [{"id": f"demo-sma-{fast}-{slow}", "strategy": "sma_cross", "account_id": DEMO_ACCOUNT_ID,
                  "exchange": options.exchange, "symbols": symbols, "timeframe": "1m",
                  "params": {"fast": fast, "slow": slow}}
                 for fast, slow in ((3, 8), (5, 20))]
    return {"accounts": demo_accounts(options.exchange), "instances": json.dumps(instances)}


def demo_examples(context: DemoContext) -> list[str]:
    auth = f"-H 'Authorization: Bearer {context.api_key}'"
    return [f"curl {context.base_url}/v1/strategies/demo-sma-3-8",
            f"curl -X POST {context.base_url}/v1/strategies/demo-sma-3-8/pause {auth}"]


SERVICE = ServiceDefinition(
    name=SERVICE_NAME, default_port=DEFAULT_PORT, settings_type=StrategySettings, create_app=create_app,
    # Downstream of the candle-builder: started after it, stopped after it (it takes the last candles).
    demo=ServiceDemo(stage=30, settings=demo_settings, examples=demo_examples),
)
