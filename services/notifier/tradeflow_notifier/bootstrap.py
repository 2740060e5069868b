"""Wiring of the notifier: settings -> components -> FastAPI app (``tradeflow run notifier``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI
from tradeflow.bus import Bus, KafkaBus
from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.service import (
    DemoContext,
    ReadinessCheck,
    ServiceDefinition,
    ServiceDemo,
    broker_check,
    consumer_check,
    create_wired_app,
)
from tradeflow.telemetry import Telemetry
from tradeflow_db import Database
from tradeflow_db.outbox import Outbox, OutboxRelay

from tradeflow_notifier.adapters.channel_store import ChannelStore
from tradeflow_notifier.adapters.delivery_store import DeliveryStore
from tradeflow_notifier.adapters.event_consumer import consumed_topics, create_event_consumer
from tradeflow_notifier.adapters.secret_box import SecretBox
from tradeflow_notifier.adapters.senders.channel_senders import ChannelSenders
from tradeflow_notifier.adapters.trading_facts import TradingFacts
from tradeflow_notifier.api import create_notifier_router
from tradeflow_notifier.channel_registry import ChannelRegistry
from tradeflow_notifier.channel_test import ChannelTester
from tradeflow_notifier.dispatch import Dispatcher, Sender
from tradeflow_notifier.intake import Intake, Transactions
from tradeflow_notifier.reporting import DailyReports
from tradeflow_notifier.settings import NotifierSettings
from tradeflow_notifier.upkeep import Upkeep

SERVICE_NAME = "notifier"
DEFAULT_PORT = 8006
DB_POOL_SIZE = 6  # intake, dispatcher, relay, API
REQUIRED_REVISION = "notifier_0001"  # the newest of this service's migrations
OUTBOX_TABLE = "notifier_outbox"


@dataclass
class Notifier:
    """The wired service: what the app runs and the parts a test drives directly."""

    components: list[Any]
    routers: list[Any]
    readiness_checks: list[ReadinessCheck]
    producer: Any
    consumer: Any
    intake: Intake
    dispatcher: Dispatcher
    registry: ChannelRegistry
    deliveries: DeliveryStore
    senders: ChannelSenders


def create_pipeline(settings: NotifierSettings, bus: Bus, dead_letters: Any, *, database: Transactions,
                    deliveries: DeliveryStore, facts: TradingFacts, registry: ChannelRegistry, senders: Sender,
                    clock: Clock = SYSTEM_CLOCK) -> tuple[Intake, Dispatcher, Any]:
    """Events in to sends out: the consumer group on the four topics, the intake that stores
    their deliveries, the dispatcher that sends them (``build`` passes the database adapters
    and the channel senders; unit tests in-memory ones)."""
    dispatcher = Dispatcher(
        deliveries, registry.channel, lambda: list(registry.routing.channels), senders, bus.telemetry,
        policy=settings.retry_policy, lease_s=settings.lease_s,
        poll_interval_s=settings.poll_interval_s,
        webhook_concurrency=settings.webhook_concurrency, own_service=SERVICE_NAME, clock=clock)
    intake = Intake(database, deliveries, facts, lambda: registry.routing, bus.telemetry, own_service=SERVICE_NAME,
                    group_window_s=settings.group_window_s, on_deliveries=dispatcher.wake)
    consumer = create_event_consumer(settings, bus, intake, dead_letters, f"{settings.kafka_client_id}-{SERVICE_NAME}")
    return intake, dispatcher, consumer


def build(settings: NotifierSettings, bus: Bus, database: Database, clock: Clock = SYSTEM_CLOCK) -> Notifier:
    """Wire the service from its settings, a bus, its database and a clock. Pure: nothing
    starts or connects here. ``create_app`` passes the Kafka bus, the real database and the
    system clock."""
    telemetry = bus.telemetry
    client_id = f"{settings.kafka_client_id}-{SERVICE_NAME}"
    producer = bus.producer(client_id=client_id)
    dead_letters = bus.dead_letters(producer)
    outbox = Outbox(OUTBOX_TABLE)
    registry = ChannelRegistry(ChannelStore(database, SecretBox(settings.fernet_keys())), settings.channels,
                               settings.routes, settings.config_refresh_s, clock=clock)
    deliveries = DeliveryStore(database, outbox, settings.alerts_topic, SERVICE_NAME)
    facts = TradingFacts(database)
    senders = ChannelSenders(settings.send_timeout_s, clock=clock)
    intake, dispatcher, consumer = create_pipeline(settings, bus, dead_letters, database=database,
                                                   deliveries=deliveries, facts=facts, registry=registry,
                                                   senders=senders, clock=clock)
    components: list[Any] = [
        bus.topics_exist(consumed_topics(settings)), database, producer, registry, senders,
        OutboxRelay(database, outbox, producer, telemetry), dispatcher,
        Upkeep(intake, deliveries, registry.known_ids, telemetry, retention_days=settings.retention_days, clock=clock),
    ]
    if settings.report_at is not None:
        components.append(DailyReports(facts, intake, settings.report_at, ZoneInfo(settings.report_timezone), clock))
    components.append(consumer)  # last: events are taken in only once everything that handles them runs
    return Notifier(
        # Stopped in reverse: the consumer commits and leaves first; the dispatcher finishes the
        # attempts in flight and writes their outcomes; the relay publishes pending alerts.
        components=components,
        routers=[create_notifier_router(registry, deliveries, ChannelTester(senders, clock))],
        readiness_checks=[
            broker_check(producer),
            ReadinessCheck("database", database.ping),
            consumer_check(consumer),
        ],
        producer=producer, consumer=consumer, intake=intake, dispatcher=dispatcher, registry=registry,
        deliveries=deliveries, senders=senders,
    )


def create_app(settings: NotifierSettings) -> FastAPI:
    telemetry = Telemetry(SERVICE_NAME, settings)
    database = settings.service_database(SERVICE_NAME, required_revision=REQUIRED_REVISION, default_pool_size=DB_POOL_SIZE)
    service = build(settings, KafkaBus(settings, telemetry), database, SYSTEM_CLOCK)
    return create_wired_app(SERVICE_NAME, settings, telemetry, service,
                            description="Orders, fills, risk events and alerts to Telegram, Discord, Slack, email and "
                                        "signed webhooks.")


def demo_examples(context: DemoContext) -> list[str]:
    """The notifier runs in the demo without channels (configure some: README, "Notifications")."""
    return [f"curl {context.base_url}/v1/channels", f"curl '{context.base_url}/v1/deliveries'"]


SERVICE = ServiceDefinition(
    name=SERVICE_NAME, default_port=DEFAULT_PORT, settings_type=NotifierSettings, create_app=create_app,
    # Last in the demo: it follows every other service's events.
    demo=ServiceDemo(stage=60, examples=demo_examples),
)
