"""Wiring of the ingest service: settings -> components -> FastAPI app (``tradeflow run ingest``)."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from tradeflow.admin import TopicsExist
from tradeflow.bus import DeadLetters, Producer
from tradeflow.service import (
    DemoContext,
    DemoOptions,
    ReadinessCheck,
    ServiceDefinition,
    ServiceDemo,
    broker_check,
    create_service_app,
)
from tradeflow.telemetry import Telemetry
from tradeflow.topics import INGEST_SUBSCRIPTIONS, MD_TICKS, OPS_ALERTS
from tradeflow.trades.receive_clock import ReceiveClock

from tradeflow_ingest.adapters.ccxt_feed import CcxtTradeFeed
from tradeflow_ingest.adapters.published_tail import PublishedTail
from tradeflow_ingest.adapters.subscription_log import SubscriptionLog
from tradeflow_ingest.adapters.subscription_ownership import SubscriptionOwnership
from tradeflow_ingest.adapters.synthetic_source import SyntheticSource
from tradeflow_ingest.adapters.tick_publisher import TickPublisher
from tradeflow_ingest.api import feeds_router, sources_router, subscriptions_router
from tradeflow_ingest.domain.price_guard import PriceGuard
from tradeflow_ingest.domain.sources import TickSource
from tradeflow_ingest.domain.synthetic_market import SyntheticMarket
from tradeflow_ingest.settings import IngestSettings
from tradeflow_ingest.subscriptions import Subscriptions

SERVICE_NAME = "ingest"
TOPICS_WAIT_S = 60.0  # a broker that is still starting gets this long to answer
# Created at start, before any source runs (with their DLQs).
INGEST_TOPICS = (MD_TICKS, OPS_ALERTS, INGEST_SUBSCRIPTIONS)

log = logging.getLogger(__name__)


def create_app(settings: IngestSettings) -> FastAPI:
    telemetry = Telemetry(SERVICE_NAME, settings)
    producer = Producer(settings, telemetry, client_id=f"{settings.kafka_client_id}-{SERVICE_NAME}")
    publisher = TickPublisher(producer, DeadLetters(producer, telemetry), telemetry,
                              price_guard=PriceGuard(settings.max_price_deviation), service_name=SERVICE_NAME)
    clock = ReceiveClock()  # one per process: ts_recv strictly increases across all sources
    sources: list[TickSource] = []
    if settings.synthetic_symbols > 0:
        sources.append(SyntheticSource(
            SyntheticMarket(settings.synthetic_seed, settings.synthetic_symbols),
            exchange=settings.synthetic_exchange,
            rate=settings.synthetic_rate,
            speed=settings.synthetic_speed,
            history_s=settings.synthetic_history_s,
            publisher=publisher,
            clock=clock,
        ))
    # Feeds start without symbols: which replica serves a symbol is the subscriptions' call.
    feeds = {
        feed.exchange_name: CcxtTradeFeed(feed.model_copy(update={"symbols": ()}), publisher=publisher,
                                          clock=clock, telemetry=telemetry)
        for feed in settings.exchanges
    }
    sources.extend(feeds.values())
    client_id = f"{settings.kafka_client_id}-{SERVICE_NAME}"
    subscription_log = SubscriptionLog(settings, producer, telemetry, client_id=f"{client_id}-subscriptions")
    tail = PublishedTail(settings, client_id=f"{client_id}-tail", lookback_s=settings.takeover_lookback_s)
    subscriptions = Subscriptions(subscription_log, feeds, {f.exchange_name: f.symbols for f in settings.exchanges}, tail)
    subscription_log.on_change(subscriptions.reconcile)
    components: list = [TopicsExist(settings, INGEST_TOPICS, wait_s=TOPICS_WAIT_S), producer, subscription_log,
                        *sources, subscriptions]
    readiness_checks = [broker_check(producer), ReadinessCheck("subscription-log", subscription_log.readiness)]
    if feeds:  # only replicas with exchange feeds share the subscriptions
        ownership = SubscriptionOwnership(
            settings, group_id=settings.subscriptions_group, client_id=f"{client_id}-ownership",
            on_assigned=subscriptions.partitions_assigned, on_revoked=subscriptions.partitions_revoked)
        components.append(ownership)
        readiness_checks.append(ReadinessCheck("subscription-ownership", ownership.readiness))
    return create_service_app(
        SERVICE_NAME,
        settings,
        telemetry,
        components=components,
        routers=[sources_router(sources), feeds_router(list(feeds.values())), subscriptions_router(subscriptions)],
        readiness_checks=readiness_checks,
    )


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
