"""End to end: the notifier process is killed (SIGKILL) in the middle of a burst of fills and
started again. The webhook receiver must end up with every delivery, and nothing the notifier had
recorded as delivered may come again; the only repeats are the deliveries in flight at the kill,
with the same delivery id (the receiver dedupes them). The log, at DEBUG, holds no secret."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import httpx
import pytest
from tradeflow.messages import Fill
from tradeflow_notifier.domain.planning import delivery_id

from tests.e2e.service_process import ServiceProcess, free_port
from tests.fakes.fake_notification_receivers import TELEGRAM_TOKEN, WEBHOOK_SECRET, FakeReceivers
from tests.integration.notifier_harness import (
    clean_notifier_tables,
    delivery_rows,
    publish,
    topics,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
FILLS = 300
HELD_AFTER = 100


def fill(n: int) -> Fill:
    from decimal import Decimal

    return Fill(fill_id=f"f-{n}", client_order_id=f"o-{n}", account_id=f"acct-{n % 7}", exchange="binance",
                symbol="ETH/USDT", side="buy", quantity=Decimal("0.5"), price=Decimal("3120.25"), fee=Decimal("0.0015"),
                fee_currency="USDT", ts_event=1_772_445_600_000_000_000 + n)


async def test_a_sigkill_mid_burst_loses_nothing_and_repeats_nothing_recorded_as_delivered(
        service_env, api_key, database_url, kafka_bootstrap, unique_name, tmp_path):
    clean_notifier_tables(database_url)
    receivers = await FakeReceivers().start()
    names = topics(unique_name)
    channels = receivers.channels()
    port = free_port()
    env = {**os.environ, **service_env, "TRADEFLOW_HTTP_PORT": str(port), "TRADEFLOW_LOG_LEVEL": "DEBUG",
           "TRADEFLOW_NOTIFIER_CONSUMER_GROUP": f"notifier-{unique_name}",
           "TRADEFLOW_NOTIFIER_ORDERS_TOPIC": names["orders"], "TRADEFLOW_NOTIFIER_FILLS_TOPIC": names["fills"],
           "TRADEFLOW_NOTIFIER_RISK_TOPIC": names["risk"], "TRADEFLOW_NOTIFIER_ALERTS_TOPIC": names["alerts"],
           "TRADEFLOW_NOTIFIER_CHANNELS": json.dumps([channels["webhook"], channels["telegram"]]),
           "TRADEFLOW_NOTIFIER_ROUTES": json.dumps([{"channel": "webhook", "events": ["fill"]}]),
           "TRADEFLOW_NOTIFIER_LEASE_S": "2", "TRADEFLOW_NOTIFIER_POLL_INTERVAL_S": "0.1",
           "TRADEFLOW_NOTIFIER_RETRY_INITIAL_S": "0.2", "TRADEFLOW_NOTIFIER_RETRY_MAX_S": "1",
           "TRADEFLOW_NOTIFIER_WEBHOOK_CONCURRENCY": "8", "TRADEFLOW_NOTIFIER_REPORT_TIME": ""}
    service = ServiceProcess("notifier", env, port, tmp_path / "notifier.log")
    receivers.hold_after = HELD_AFTER
    try:
        async with httpx.AsyncClient() as client:
            service.start()
            await service.wait_ready(client, 60)
            tested = await client.post(f"{service.base}/v1/channels/telegram/test",  # a URL holding the token
                                       headers={"Authorization": f"Bearer {api_key}"})
            assert tested.json()["delivered"] is True

            async def burst() -> None:
                for start in range(0, FILLS, 10):
                    await publish(kafka_bootstrap, [(names["fills"], f.account_id, f)
                                                    for f in map(fill, range(start, start + 10))])
                    await asyncio.sleep(0.05)

            producing = asyncio.create_task(burst())
            await receivers.wait_for(lambda r: not r.hold.is_set(), 30)  # 100 acknowledged, the rest held
            await wait_until(lambda: len(delivery_rows(database_url, "status = 'delivered'"))
                             == len(receivers.by_service("webhook")), 10, "the acknowledged deliveries recorded")
            service.kill()
            recorded = {row[0] for row in delivery_rows(database_url, "status = 'delivered'")}
            acknowledged_before = len(receivers.by_service("webhook"))
            receivers.hold.set()  # the held requests find their sender gone: not acknowledged
            await producing

            service.start()
            await service.wait_ready(client, 60)
            await receivers.wait_for(lambda r: len(r.delivery_counts()) == FILLS, 60)
            await asyncio.sleep(1.0)  # a late repeat would come now
    finally:
        code = service.stop()
        await receivers.stop()
    assert code in (0, -signal.SIGTERM), service.log_tail()

    expected = {delivery_id(f"fill:f-{n}", "webhook") for n in range(FILLS)}
    counts = receivers.delivery_counts()
    assert set(counts) == expected  # nothing lost
    assert len(recorded) >= HELD_AFTER and recorded <= expected
    assert all(counts[d] == 1 for d in recorded)  # nothing recorded as delivered came again
    repeated = {d for d, n in counts.items() if n > 1}
    assert repeated <= expected - recorded and sum(counts.values()) - FILLS == sum(counts[d] - 1 for d in repeated)
    assert acknowledged_before == len(recorded)
    assert receivers.bad_signatures == []
    assert {row[3] for row in delivery_rows(database_url)} == {"delivered"}
    log = service.log.read_text()
    assert '"level": "DEBUG"' in log and TELEGRAM_TOKEN not in log and WEBHOOK_SECRET not in log
