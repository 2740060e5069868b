"""The notifier against the real broker and database, delivering to loopback fakes of every
channel: each event kind reaches its routes with the right text, a receiver that was down gets
everything once, rate-limit answers are honoured, 4xx fails at once and raises an alert, a storm
of identical alerts becomes two messages, the channels API, and the daily report."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.fernet import Fernet
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tradeflow.codec import HEADER_ERROR_REASON, header_value
from tradeflow.messages import Alert, Fill, OrderEvent, RiskEvent
from tradeflow_notifier.bootstrap import SERVICE
from tradeflow_notifier.settings import NotifierSettings

from tests.fakes.fake_notification_receivers import FakeReceivers
from tests.fakes.fake_smtp_server import FakeSmtpServer
from tests.integration.notifier_harness import (
    clean_notifier_tables,
    delivery_rows,
    publish,
    topics,
    wait_until,
)

pytestmark = pytest.mark.integration
NOW = time.time_ns()
D = Decimal


@pytest.fixture
async def receivers():
    fake = await FakeReceivers().start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def names(unique_name):
    return topics(unique_name)


API_KEY = "notifier-test-api-key-0123456789"


def notifier_settings(kafka_bootstrap, database_url, unique_name, names, channels, routes, **overrides):
    clean_notifier_tables(database_url)
    values = dict(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, environment="test", api_keys=API_KEY,
        consumer_session_timeout_ms=6000, consumer_group=f"notifier-{unique_name}",
        orders_topic=names["orders"], fills_topic=names["fills"], risk_topic=names["risk"],
        alerts_topic=names["alerts"], channels=channels, routes=routes,
        secret_key=Fernet.generate_key().decode(), poll_interval_s=0.1,
        retry_initial_s=0.2, retry_max_s=1.0, max_attempts=30, lease_s=5,
        group_window_s=2.0, report_time="", config_refresh_s=1.0)
    values.update(overrides)
    return NotifierSettings(**values)


class RunningNotifier:
    def __init__(self, settings: NotifierSettings) -> None:
        self.settings = settings
        self.app = SERVICE.create_app(settings)
        self.spans = InMemorySpanExporter()
        self.app.state.telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))

    async def __aenter__(self) -> httpx.AsyncClient:
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://notifier",
                                         headers={"Authorization": f"Bearer {API_KEY}"})
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        deadline = time.monotonic() + 30
        while (await self._client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, (await self._client.get("/readyz")).text
            await asyncio.sleep(0.2)
        return self._client

    async def __aexit__(self, *exc) -> None:
        await self._lifespan.__aexit__(*exc)
        await self._client.aclose()


def fill(n: int, account: str = "alice", **overrides) -> Fill:
    values = dict(fill_id=f"f-{n}", client_order_id=f"order-{n}", account_id=account, exchange="binance",
                  symbol="BTC/USDT", side="buy", quantity=D("0.0015"), price=D("64000.10"), fee=D("0.09600015"),
                  fee_currency="USDT", liquidity="taker", ts_event=NOW)
    values.update(overrides)
    return Fill(**values)


async def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 15) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        records, deadline = [], time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            await consumer.topics()
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if partitions and not consumer.assignment():
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def test_each_event_kind_reaches_its_routes_with_the_right_text(
        kafka_bootstrap, database_url, unique_name, names, receivers, tmp_path):
    smtp = FakeSmtpServer(tmp_path).start()
    channels = receivers.channels()
    channels["telegram"]["timezone"] = "Europe/Berlin"
    routes = [{"channel": "telegram", "events": ["order", "fill"], "accounts": ["alice"], "mute": ["accepted"]},
              {"channel": "discord", "events": ["risk"]},
              {"channel": "slack", "events": ["alert"], "min_severity": "warning"},
              {"channel": "webhook", "events": ["*"]}]
    settings = notifier_settings(kafka_bootstrap, database_url, unique_name, names, list(channels.values()), routes)
    runner = RunningNotifier(settings)
    tracer = TracerProvider().get_tracer("test")
    try:
        async with runner as client:
            created = await client.post("/v1/channels", json=smtp.channel("mail"))
            assert created.status_code == 201, created.text
            assert created.json()["password"] == "********" and created.json()["source"] == "api"
            assert (await client.put("/v1/routes", json=[{"channel": "mail", "events": ["alert"],
                                                           "min_severity": "critical"}])).status_code == 200
            with tracer.start_as_current_span("upstream") as upstream:
                await publish(kafka_bootstrap, [
                    (names["orders"], "alice", OrderEvent(
                        client_order_id="order-1", account_id="alice", exchange="binance", symbol="BTC/USDT", side="buy",
                        status="accepted", seq=1, quantity=D("0.0015"), ts_event=NOW)),
                    (names["orders"], "alice", OrderEvent(
                        client_order_id="order-1", account_id="alice", exchange="binance", symbol="BTC/USDT", side="buy",
                        status="filled", seq=2, quantity=D("0.0015"), filled_quantity=D("0.0015"),
                        average_price=D("64000.10"), ts_event=NOW)),
                    (names["fills"], "alice", fill(1, ts_event=1_772_445_600_000_000_000)),  # 2026-03-02 10:00 UTC
                    (names["fills"], "alice", fill(2, price=D("NaN"))),  # cannot be rendered: the DLQ
                    (names["risk"], "alice", RiskEvent(
                        event_id="r-1", account_id="alice", kind="kill_switch", reason="kill_switch",
                        message="kill switch engaged by ops", severity="critical", state="halted",
                        details={"engaged": "true"}, ts_event=NOW)),
                    (names["alerts"], "ingest", Alert(service="ingest", severity="critical", kind="feed_breaker_open",
                                                      message="binance: breaker open", ts_event=NOW)),
                    (names["alerts"], "ingest", Alert(service="ingest", severity="info", kind="feed_websocket_recovered",
                                                      message="binance: websocket back", ts_event=NOW)),
                ])
            await receivers.wait_for(lambda r: len(r.by_service("webhook")) == 6 and len(r.by_service("telegram")) == 2
                                     and len(r.by_service("discord")) == 1 and len(r.by_service("slack")) == 1)
            await wait_until(lambda: len(smtp.messages) == 1, 15, "the email")
            await asyncio.sleep(0.5)  # nothing more may come
            metrics = (await client.get("/metrics")).text
            delivered = await client.get("/v1/deliveries", params={"status": "delivered"})
    finally:
        smtp.stop()

    # Order across topics is not kept (they are separate partitions); the texts are exact.
    telegram = sorted(r.text for r in receivers.by_service("telegram"))
    assert telegram == [
        "<b>Fill: BUY 0.0015 BTC/USDT @ 64000.1</b>\nAccount: alice\nExchange: binance\nOrder: order-1\n"
        "Notional: 96.00015 USDT\nFee: 0.09600015 USDT\nLiquidity: taker\nTime: 2026-03-02 11:00:00 CET",
        "<b>Order filled: BUY 0.0015 BTC/USDT</b>\nAccount: alice\nExchange: binance\nOrder: order-1\n"
        "Filled: 0.0015 of 0.0015\nAverage price: 64000.1\nTime: " + telegram[1].rsplit("Time: ", 1)[1]]
    assert telegram[1].rsplit("Time: ", 1)[1].endswith(("CET", "CEST"))  # the channel's zone
    assert receivers.by_service("discord")[0].text.startswith(
        "**[CRITICAL] Risk kill switch: kill\\_switch**\nAccount: alice\nkill switch engaged by ops\nState: halted")
    assert receivers.by_service("slack")[0].text.startswith("*[CRITICAL] ingest: feed_breaker_open*\nbinance: breaker open")
    assert {r.json["kind"] for r in receivers.by_service("webhook")} == {"order", "fill", "risk", "alert"}
    assert receivers.bad_signatures == []
    (mail,) = smtp.messages
    assert mail["Subject"] == "[CRITICAL] ingest: feed_breaker_open" and smtp.tls_used == [True]

    (dead,) = await read_topic(kafka_bootstrap, names["fills"] + ".dlq", 1)
    assert header_value(dead.headers, HEADER_ERROR_REASON).startswith("unrenderable: fill f-2: price is NaN")
    assert len(delivered.json()) == 11 and {d["status"] for d in delivered.json()} == {"delivered"}
    assert 'tradeflow_notifier_deliveries_total{channel="webhook",outcome="delivered"} 6.0' in metrics
    # Each delivery's span continues the trace the events were published in.
    delivered_spans = [s for s in runner.spans.get_finished_spans() if s.name.startswith("notifier deliver")]
    assert len(delivered_spans) == 11
    assert {s.context.trace_id for s in delivered_spans if s.attributes["tradeflow.event.kind"] != "alert"} == \
        {upstream.get_span_context().trace_id}
    # The password given through the API is stored encrypted only.
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT settings::text, secrets FROM notifier_channels WHERE id = 'mail'").fetchone()
    assert smtp.password not in stored[0] and smtp.password.encode() not in bytes(stored[1])


async def test_a_receiver_down_for_a_while_gets_every_message_once_it_is_back(
        kafka_bootstrap, database_url, unique_name, names, receivers):
    channels = receivers.channels()
    settings = notifier_settings(kafka_bootstrap, database_url, unique_name, names, [channels["webhook"]],
                                 [{"channel": "webhook", "events": ["fill"]}])
    async with RunningNotifier(settings) as client:
        await receivers.stop()
        await publish(kafka_bootstrap, [(names["fills"], "alice", fill(n)) for n in range(20)])
        await wait_until(lambda: len(delivery_rows(database_url, "attempts >= 3 AND status = 'pending'")) == 20, 20,
                         "20 deliveries retried at least 3 times while the receiver is down")
        deadline = time.monotonic() + 10  # the queue-depth gauge is refreshed every 5 s
        while 'tradeflow_notifier_queue_depth{channel="webhook"} 20.0' not in (await client.get("/metrics")).text:
            assert time.monotonic() < deadline, "the queue depth never showed the 20 pending deliveries"
            await asyncio.sleep(0.5)
        await receivers.start()
        await receivers.wait_for(lambda r: len(r.by_service("webhook")) >= 20)
        await asyncio.sleep(1.0)  # a duplicate would come now
    counts = receivers.delivery_counts()
    assert len(counts) == 20 and set(counts.values()) == {1}
    assert sorted(r.json["id"] for r in receivers.by_service("webhook")) == sorted(f"fill:f-{n}" for n in range(20))
    assert {row[3] for row in delivery_rows(database_url)} == {"delivered"}


async def test_two_replicas_share_the_deliveries_and_send_each_once(
        kafka_bootstrap, database_url, unique_name, names, receivers):
    channels = receivers.channels()
    settings = notifier_settings(kafka_bootstrap, database_url, unique_name, names, [channels["webhook"]],
                                 [{"channel": "webhook", "events": ["fill"]}], webhook_concurrency=4)
    first, second = RunningNotifier(settings), RunningNotifier(settings)
    async with first as first_client, second as second_client:
        await publish(kafka_bootstrap, [(names["fills"], f"acct-{n % 6}", fill(n, account=f"acct-{n % 6}"))
                                        for n in range(200)])
        await receivers.wait_for(lambda r: len(r.delivery_counts()) == 200, 30)
        await asyncio.sleep(1.0)
        sent = [sum(float(line.rsplit(" ", 1)[1]) for line in (await client.get("/metrics")).text.splitlines()
                    if line.startswith('tradeflow_notifier_delivery_attempts_total{channel="webhook"'))
                for client in (first_client, second_client)]
    assert set(receivers.delivery_counts().values()) == {1}  # claimed by one replica at a time: sent once
    assert sum(sent) == 200 and min(sent) > 0, sent  # both replicas sent


async def test_rate_limits_are_honoured_and_a_4xx_fails_at_once_with_an_alert_elsewhere(
        kafka_bootstrap, database_url, unique_name, names, receivers):
    channels = receivers.channels()
    broken_slack = {**channels["slack"], "url": receivers.base + "/services/T/B/revoked"}
    settings = notifier_settings(
        kafka_bootstrap, database_url, unique_name, names, [channels["telegram"], broken_slack, channels["webhook"]],
        [{"channel": "telegram", "events": ["fill"]}, {"channel": "slack", "events": ["fill", "alert"]},
         {"channel": "webhook", "events": ["alert"]}])
    receivers.rate_limit("telegram", 1, retry_after=1.5)
    async with RunningNotifier(settings) as client:
        await publish(kafka_bootstrap, [(names["fills"], "alice", fill(1))])
        await receivers.wait_for(lambda r: r.by_service("telegram") and r.by_service("webhook"))
        await asyncio.sleep(1.0)  # no alert loop: nothing more comes
        failed = (await client.get("/v1/deliveries", params={"status": "failed"})).json()
    refused_at = next(at for service, at, status in receivers.attempts if service == "telegram" and status == 429)
    assert receivers.by_service("telegram")[0].at - refused_at >= 1.5  # Telegram's retry_after, honoured
    (slack,) = failed
    assert (slack["channel"], slack["attempts"], slack["last_error"]) == ("slack", 1, "HTTP 404: no_service")
    (alert,) = receivers.by_service("webhook")  # the alert about slack: through the webhook, not through slack
    assert alert.json["type"] == "notification_failed" and alert.json["data"]["labels"] == {
        "channel": "slack", "event_kind": "fill"}
    assert "HTTP 404: no_service" in alert.json["text"]
    # Slack was tried once, for the fill: no retry after its 404, and the alert about it went elsewhere.
    assert [status for service, _, status in receivers.attempts if service == "slack"] == [404]


async def test_a_delivery_fails_after_its_last_attempt_and_its_alert_failing_raises_no_further_alert(
        kafka_bootstrap, database_url, unique_name, names, receivers):
    channels = receivers.channels()
    broken_slack = {**channels["slack"], "url": receivers.base + "/services/T/B/revoked"}
    settings = notifier_settings(kafka_bootstrap, database_url, unique_name, names, [broken_slack, channels["webhook"]],
                                 [{"channel": "slack", "events": ["fill", "alert"]},
                                  {"channel": "webhook", "events": ["alert"]}], max_attempts=3)
    receivers.fail("webhook", 10, 503, "unavailable")  # retried, and failed after the last attempt
    async with RunningNotifier(settings):
        await publish(kafka_bootstrap, [(names["fills"], "alice", fill(1))])
        await wait_until(lambda: len(delivery_rows(database_url, "status = 'failed'")) == 2, 20,
                         "the fill's delivery to slack and the alert's to the webhook failed")
        await asyncio.sleep(1.5)  # a further alert would be relayed, consumed and delivered by now
    failed = delivery_rows(database_url)
    assert [(row[1].split(":")[0], row[2], row[3], row[4], row[5]) for row in failed] == [
        ("fill", "slack", "failed", 1, "HTTP 404: no_service"), ("alert", "webhook", "failed", 3, "HTTP 503: unavailable")]
    alerts = await read_topic(kafka_bootstrap, names["alerts"], 2, timeout_s=3)  # waits for a second one: none
    assert len(alerts) == 1


async def test_a_channels_rate_limit_spaces_its_messages(kafka_bootstrap, database_url, unique_name, names, receivers):
    slack = {**receivers.channels()["slack"], "rate_per_minute": 60}  # one a second, bursts of 3
    settings = notifier_settings(kafka_bootstrap, database_url, unique_name, names, [slack],
                                 [{"channel": "slack", "events": ["fill"]}])
    async with RunningNotifier(settings):
        await publish(kafka_bootstrap, [(names["fills"], "alice", fill(n)) for n in range(5)])
        await receivers.wait_for(lambda r: len(r.by_service("slack")) == 5, 20)
    arrived = [m.at for m in receivers.by_service("slack")]
    assert arrived[2] - arrived[0] < 0.9  # the burst
    assert arrived[3] - arrived[0] >= 0.9 and arrived[4] - arrived[0] >= 1.9  # then the rate
    assert [status for service, _, status in receivers.attempts if service == "slack"] == [200] * 5  # no 429 needed


async def test_a_storm_of_500_identical_alerts_becomes_a_message_and_a_summary(
        kafka_bootstrap, database_url, unique_name, names, receivers):
    channels = receivers.channels()
    settings = notifier_settings(kafka_bootstrap, database_url, unique_name, names, [channels["webhook"]],
                                 [{"channel": "webhook", "events": ["alert"]}])
    async with RunningNotifier(settings):
        start = time.time_ns()
        await publish(kafka_bootstrap, [(names["alerts"], "ingest", Alert(
            service="ingest", severity="warning", kind="feed_websocket_lost", labels={"exchange": "binance"},
            message=f"binance: websocket lost ({n})", ts_event=start + n * 1_000_000)) for n in range(500)])
        await receivers.wait_for(lambda r: sum(m.json["count"] for m in r.by_service("webhook")) >= 500, 15)
        await asyncio.sleep(1.0)
    messages = receivers.by_service("webhook")
    assert [m.json["count"] for m in messages] == [1, 499]
    assert messages[0].json["text"].startswith("binance: websocket lost (0)")
    assert messages[1].json["title"] == "[WARNING] ingest: feed_websocket_lost (x499)"
    assert "499 more alerts like this within 2s; the last one:\nbinance: websocket lost (499)" in messages[1].json["text"]


async def test_the_channels_and_routes_api(kafka_bootstrap, database_url, unique_name, names, receivers):
    channels = receivers.channels()
    settings = notifier_settings(kafka_bootstrap, database_url, unique_name, names, [channels["webhook"]], [])
    async with RunningNotifier(settings) as client:
        bad = await client.post("/v1/channels", json={"id": "t", "kind": "telegram", "token": "1:x", "url": "ftp://x"})
        assert bad.status_code == 422 and set(bad.json()["detail"]) == {"url: must be an http(s) URL",
                                                                          "chat_id: Field required"}
        created = await client.post("/v1/channels", json={**channels["telegram"], "id": "tg"})
        assert created.status_code == 201 and created.json()["token"] == "********"
        assert (await client.post("/v1/channels", json={**channels["telegram"], "id": "tg"})).status_code == 409
        assert (await client.delete("/v1/channels/webhook")).status_code == 409  # from the environment
        assert (await client.delete("/v1/channels/nope")).status_code == 404
        assert (await client.post("/v1/channels/nope/test")).status_code == 404
        listed = (await client.get("/v1/channels")).json()
        assert [(c["id"], c["source"]) for c in listed] == [("tg", "api"), ("webhook", "config")]
        assert "TEST-telegram-token" not in json.dumps(listed)
        tested = (await client.post("/v1/channels/tg/test")).json()
        assert tested == {"channel": "tg", "delivered": True, "outcome": "delivered", "error": None, "retry_after_s": None}
        assert receivers.by_service("telegram")[0].text.startswith("<b>Tradeflow test message</b>\nChannel tg (telegram)")
        receivers.fail("telegram", 1, 403, "Forbidden: bot was blocked by the user")
        blocked = (await client.post("/v1/channels/tg/test")).json()
        assert blocked["delivered"] is False and blocked["error"] == "HTTP 403: Forbidden: bot was blocked by the user"
        bad_routes = await client.put("/v1/routes", json=[{"channel": "tg"}, {"channel": "ghost", "events": ["fill"]}])
        assert bad_routes.status_code == 422 and bad_routes.json()["detail"] == [
            "routes[1].channel: unknown channel 'ghost'"]
        assert (await client.put("/v1/routes", json=[{"channel": "tg", "events": ["fill"]}])).status_code == 200
        assert (await client.delete("/v1/channels/tg")).status_code == 409  # a route uses it
        assert [r["source"] for r in (await client.get("/v1/routes")).json()] == ["api"]
        assert (await client.put("/v1/routes", json=[])).status_code == 200
        assert (await client.delete("/v1/channels/tg")).status_code == 204
        assert (await client.get("/v1/deliveries", params={"status": "lost"})).status_code == 422


async def test_the_daily_report_reaches_its_route_at_the_report_time(
        kafka_bootstrap, database_url, unique_name, names, receivers):
    channels = receivers.channels()
    at = datetime.now(UTC) + timedelta(seconds=6)
    settings = notifier_settings(kafka_bootstrap, database_url, unique_name, names, [channels["webhook"]],
                                 [{"channel": "webhook", "events": ["report"]}], report_time=at.strftime("%H:%M:%S"))
    hour = 3_600_000_000_000
    earlier = int((at - timedelta(hours=3)).timestamp()) * 1_000_000_000
    async with RunningNotifier(settings):
        await publish(kafka_bootstrap, [
            (names["fills"], "alice", fill(1, side="buy", quantity=D("1"), price=D("100"), fee=D("0.1"), ts_event=earlier)),
            (names["fills"], "alice", fill(2, side="sell", quantity=D("0.4"), price=D("110"), fee=D("0.044"),
                                           ts_event=earlier + hour)),
            (names["fills"], "alice", fill(2, side="sell", quantity=D("0.4"), price=D("110"), fee=D("0.044"),
                                           ts_event=earlier + hour)),  # redelivered: counted once
        ])
        await receivers.wait_for(lambda r: r.by_service("webhook"), 20)
    (report,) = receivers.by_service("webhook")
    assert report.json["kind"] == "report" and report.json["account_id"] == "alice"
    assert report.json["text"].splitlines()[1:] == [
        "P&L USDT: +3.856 (realized +4, fees 0.144)", "Max drawdown USDT: 0.1",
        "Trades: 2 fills, 1 closing: 1 won, 0 lost, win rate 100%",
        "Orders: submitted 0, filled 0, canceled 0, rejected 0, expired 0",
        "Open positions:", "  BTC/USDT (binance) long 0.6 @ 100"]
