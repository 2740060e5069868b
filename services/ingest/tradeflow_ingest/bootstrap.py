"""Wiring of the ingest service: settings -> components -> FastAPI app (``tradeflow run ingest``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from tradeflow.bus import Bus, KafkaBus
from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.service import (
    DemoContext,
    DemoOptions,
    ReadinessCheck,
    ServiceDefinition,
    ServiceDemo,
    broker_check,
    create_wired_app,
)
from tradeflow.telemetry import Telemetry
from tradeflow.topics import INGEST_SUBSCRIPTIONS, MD_TICKS, OPS_ALERTS
from tradeflow.trades.receive_clock import ReceiveClock
from tradeflow_exchanges.ccxt_client import ExchangeFeedSettings

from tradeflow_ingest.adapters.ccxt_feed import CcxtTradeFeed
from tradeflow_ingest.adapters.published_tail import PublishedTail
from tradeflow_ingest.adapters.subscription_log import SubscriptionLog
from tradeflow_ingest.adapters.subscription_ownership import SubscriptionOwnership
from tradeflow_ingest.adapters.synthetic_source import SyntheticSource
from tradeflow_ingest.adapters.tick_publisher import TickPublisher
from tradeflow_ingest.api import feeds_router, sources_router, subscriptions_router
from tradeflow_ingest.domain.price_guard import PriceGuard
from tradeflow_ingest.domain.sources import SubscribableFeed, TickSource
from tradeflow_ingest.domain.synthetic_market import SyntheticMarket
from tradeflow_ingest.settings import IngestSettings
from tradeflow_ingest.subscriptions import Subscriptions

SERVICE_NAME = "ingest"
TOPICS_WAIT_S = 60.0  # a broker that is still starting gets this long to answer
# Created at start, before any source runs (with their DLQs).
INGEST_TOPICS = (MD_TICKS, OPS_ALERTS, INGEST_SUBSCRIPTIONS)

log = logging.getLogger(__name__)


@dataclass
class Ingest:
    """The wired service: what the app runs (components in start order, routers, readiness
    checks) and the parts a test drives directly."""

    components: list[Any]
    routers: list[Any]
    readiness_checks: list[ReadinessCheck]
    producer: Any
    publisher: TickPublisher
    subscription_log: SubscriptionLog
    subscriptions: Subscriptions
    feeds: dict[str, SubscribableFeed]
    sources: list[TickSource] = field(default_factory=list)
    ownership: SubscriptionOwnership | None = None


FeedFactory = Callable[[ExchangeFeedSettings, TickPublisher, ReceiveClock], SubscribableFeed]


def ccxt_feed_factory(telemetry: Telemetry) -> FeedFactory:
    def create(feed: ExchangeFeedSettings, publisher: TickPublisher, receive_clock: ReceiveClock) -> SubscribableFeed:
        # Feeds start without symbols: which replica serves a symbol is the subscriptions' call.
        return CcxtTradeFeed(feed.model_copy(update={"symbols": ()}), publisher=publisher, clock=receive_clock,
                             telemetry=telemetry)
    return create


def build(settings: IngestSettings, bus: Bus, clock: Clock = SYSTEM_CLOCK, *,
          feed_factory: FeedFactory | None = None) -> Ingest:
    """Wire the service from its settings, a bus and a clock (ingest has no database). Pure:
    nothing starts or connects here. ``create_app`` passes the Kafka bus and the system clock;
    unit tests an in-memory bus, a test clock and, for the exchanges, their own feeds."""
    telemetry = bus.telemetry
    client_id = f"{settings.kafka_client_id}-{SERVICE_NAME}"
    producer = bus.producer(client_id=client_id)
    publisher = TickPublisher(producer, bus.dead_letters(producer), telemetry,
                              price_guard=PriceGuard(settings.max_price_deviation), service_name=SERVICE_NAME)
    receive_clock = ReceiveClock(clock.now_ns)  # one per process: ts_recv strictly increases across all sources
    sources: list[TickSource] = []
    if settings.synthetic_symbols > 0:
        sources.append(SyntheticSource(
            SyntheticMarket(settings.synthetic_seed, settings.synthetic_symbols),
            exchange=settings.synthetic_exchange,
            rate=settings.synthetic_rate,
            speed=settings.synthetic_speed,
            history_s=settings.synthetic_history_s,
            publisher=publisher,
            clock=receive_clock,
            wall_clock_ns=clock.now_ns,
        ))
    create_feed = feed_factory or ccxt_feed_factory(telemetry)
    feeds = {feed.exchange_name: create_feed(feed, publisher, receive_clock) for feed in settings.exchanges}
    sources.extend(feeds.values())
    subscription_log = SubscriptionLog(bus, producer, client_id=f"{client_id}-subscriptions", clock=clock)
    tail = PublishedTail(bus, client_id=f"{client_id}-tail", lookback_s=settings.takeover_lookback_s, clock=clock)
    subscriptions = Subscriptions(subscription_log, feeds, {f.exchange_name: f.symbols for f in settings.exchanges},
                                  tail, wall_clock_ns=clock.now_ns)
    subscription_log.on_change(subscriptions.reconcile)
    components: list = [bus.topics_exist(INGEST_TOPICS, wait_s=TOPICS_WAIT_S), producer, subscription_log,
                        *sources, subscriptions]
    readiness_checks = [broker_check(producer), ReadinessCheck("subscription-log", subscription_log.readiness)]
    ownership = None
    if feeds:  # only replicas with exchange feeds share the subscriptions
        ownership = SubscriptionOwnership(
            bus, group_id=settings.subscriptions_group, client_id=f"{client_id}-ownership",
            on_assigned=subscriptions.partitions_assigned, on_revoked=subscriptions.partitions_revoked)
        components.append(ownership)
        readiness_checks.append(ReadinessCheck("subscription-ownership", ownership.readiness))
    routers = [sources_router(sources), feeds_router(list(feeds.values())), subscriptions_router(subscriptions)]
    return Ingest(components=components, routers=routers, readiness_checks=readiness_checks, producer=producer,
                  publisher=publisher, subscription_log=subscription_log, subscriptions=subscriptions, feeds=feeds,
                  sources=sources, ownership=ownership)


def create_app(settings: IngestSettings) -> FastAPI:
    telemetry = Telemetry(SERVICE_NAME, settings)
    ingest = build(settings, KafkaBus(settings, telemetry), SYSTEM_CLOCK)
    return create_wired_app(SERVICE_NAME, settings, telemetry, ingest)


DEMO_FAST_FORWARD_S = 600.0


def demo_settings(options: DemoOptions) -> dict[str, object]:
    """In `tradeflow demo`, ingest publishes a synthetic market of the demo's size, rate and
    exchange name; with a speed above 1 it starts in the past and runs at that speed for its
    first DEMO_FAST_FORWARD_S, until it reaches the present, then live."""
    fast_forward = options.speed > 1
    return {"synthetic_symbols": options.symbols, "synthetic_rate": options.rate,
            "synthetic_exchange": options.exchange, "synthetic_speed": options.speed,
            # The history the demo's first DEMO_FAST_FORWARD_S go through at that speed.
            "synthetic_history_s": (options.speed - 1) * DEMO_FAST_FORWARD_S if fast_forward else 0}


def demo_examples(context: DemoContext) -> list[str]:
    return [f"curl {context.base_url}/v1/sources"]


SERVICE = ServiceDefinition(
    name=SERVICE_NAME, default_port=8001, settings_type=IngestSettings, create_app=create_app,
    # The source of the pipeline: started first, stopped first.
    demo=ServiceDemo(stage=10, settings=demo_settings, examples=demo_examples),
)
