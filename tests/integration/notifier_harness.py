"""What the notifier's integration and end-to-end tests share: clean tables, settings, publishing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import psycopg
from tradeflow.bus import Producer
from tradeflow.messages import Message
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry

NOTIFIER_TABLES = ("notifier_channels", "notifier_routes", "notifier_events", "notifier_deliveries",
                   "notifier_alert_groups", "notifier_fills", "notifier_order_events", "notifier_outbox")


def clean_notifier_tables(database_url: str) -> None:
    """The notifier's tables empty (tests share one database; its channels and routes are global)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(NOTIFIER_TABLES)}")


def topics(unique_name: str) -> dict[str, str]:
    return {"orders": f"orders-{unique_name}", "fills": f"fills-{unique_name}", "risk": f"risk-{unique_name}",
            "alerts": f"alerts-{unique_name}"}


async def publish(bootstrap: str, items: Iterable[tuple[str, str | None, Message]]) -> None:
    """Send (topic, key, message) in order and wait for every ack."""
    settings = CommonSettings(kafka_bootstrap=bootstrap)
    producer = Producer(settings, Telemetry("test-publisher", settings), client_id="test-publisher")
    await producer.start()
    try:
        await asyncio.gather(*(producer.send(topic, key, message) for topic, key, message in items))
    finally:
        await producer.stop()


def delivery_rows(database_url: str, where: str = "true") -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(f"SELECT id::text, event_id, channel_id, status, attempts, last_error "
                            f"FROM notifier_deliveries WHERE {where} ORDER BY seq").fetchall()


async def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
