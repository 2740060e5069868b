"""Rendering per event kind and channel: exact amounts, the reader's time zone, each channel's
escaping and length limit, and events that cannot be rendered."""

from __future__ import annotations

import json
from decimal import Decimal
from types import MappingProxyType

import pytest
from tradeflow_notifier.domain.events import Notification, UnrenderableEvent, notification_from_message
from tradeflow_notifier.domain.grouping import AlertGroup, summary_notification
from tradeflow_notifier.domain.rendering import DISCORD_LIMIT, TELEGRAM_LIMIT, amount, render

from services.notifier.tests.unit.notifier_samples import T0, alert, channel, fill, order_event, risk_event


def rendered(message, kind: str, **channel_fields):
    ch = channel(kind, **channel_fields)
    return render(notification_from_message(message), kind, ch.zone)


def test_a_fill_on_telegram_shows_exact_amounts_and_the_readers_time():
    text = rendered(fill(), "telegram", timezone="Europe/Berlin").body
    assert text == (
        "<b>Fill: BUY 0.001 BTC/USDT @ 64123.45</b>\n"
        "Account: alice\nExchange: binance\nOrder: c0ffee\n"
        "Notional: 64.12345 USDT\n"  # 0.001 x 64123.45, exactly
        "Fee: 0.06412345 USDT\nLiquidity: taker\n"
        "Time: 2026-03-02 11:00:00 CET")


def test_amounts_never_go_through_floats_or_exponents():
    assert amount(Decimal("0.00000001")) == "0.00000001"
    assert amount(Decimal("1E+3")) == "1000"
    assert amount(Decimal("123456789012345678.123456789")) == "123456789012345678.123456789"
    assert amount(Decimal("-0.0")) == "0"
    text = rendered(fill(quantity=Decimal("0.1"), price=Decimal("0.2"), fee=Decimal("0E-8")), "slack").body
    assert "Notional: 0.02 USDT" in text and "Fee: 0 USDT" in text  # 0.1 x 0.2 is 0.02, not 0.020000000000000004


def test_times_follow_each_channels_zone_across_daylight_saving():
    summer = T0 + 150 * 86_400 * 1_000_000_000  # 2026-07-30
    assert "Time: 2026-07-30 12:00:00 CEST" in rendered(fill(ts_event=summer), "email", timezone="Europe/Berlin").body
    assert "Time: 2026-03-02 19:00:00 JST" in rendered(fill(), "email", timezone="Asia/Tokyo").body
    assert "Time: 2026-03-02 10:00:00 UTC" in rendered(fill(), "email").body


def test_an_order_a_risk_event_and_an_alert_read_as_people_expect():
    order = rendered(order_event(status="partially_filled", filled_quantity=Decimal("0.0004")), "email")
    assert order.title == "Order partially filled: BUY 0.001 BTC/USDT"
    assert "Filled: 0.0004 of 0.001\nAverage price: 64123.45" in order.body
    rejected = notification_from_message(order_event(status="rejected", reason="insufficient balance"))
    assert rejected.severity == "warning"
    risk = rendered(risk_event(), "email")
    assert risk.title == "[CRITICAL] Risk limit breach: max_daily_loss"
    assert risk.body.splitlines()[:3] == ["Account: alice", "daily loss 512.40 USDT exceeds max_daily_loss 500",
                                          "State: halted"]
    assert "limit: 500\nvalue: 512.40" in risk.body
    ops = rendered(alert(), "email")
    assert ops.title == "[CRITICAL] ingest: feed_breaker_open"
    assert ops.body.startswith("binance: circuit breaker open after 5 consecutive failed calls\nexchange: binance\n")


def test_a_grouped_alert_says_how_many_it_stands_for():
    group = AlertGroup("k", T0, T0 + 60_000_000_000, 499, alert(message="binance: still failing"))
    text = render(summary_notification(group, 60.0), "slack", channel("slack").zone).body
    assert text.startswith("*[CRITICAL] ingest: feed_breaker_open (x499)*\n"
                           "499 more alerts like this within 60s; the last one:\nbinance: still failing\n")


def test_the_webhook_body_is_the_event_as_json_with_exact_decimal_strings():
    document = json.loads(rendered(fill(), "webhook").body)
    assert document["id"] == "fill:f-1" and document["kind"] == "fill" and document["type"] == "fill"
    assert document["ts_event"] == "2026-03-02T10:00:00.000Z"
    assert document["data"]["quantity"] == "0.00100000" and document["data"]["price"] == "64123.45"
    assert document["count"] == 1 and document["title"] == "Fill: BUY 0.001 BTC/USDT @ 64123.45"


def test_each_channel_escapes_what_its_markup_would_interpret():
    evil = alert(message="<b>x</b> & *bold* _it_ `code` | > quote", labels={})
    assert "&lt;b&gt;x&lt;/b&gt; &amp; *bold*" in rendered(evil, "telegram").body
    assert r"\*bold\* \_it\_ \`code\` \| > quote" in rendered(evil, "discord").body
    assert "&lt;b&gt;x&lt;/b&gt; &amp; *bold*" in rendered(evil, "slack").body
    assert "<b>x</b> & *bold*" in rendered(evil, "email").body  # plain text: nothing to escape


@pytest.mark.parametrize("kind, limit", [("telegram", TELEGRAM_LIMIT), ("discord", DISCORD_LIMIT)])
def test_a_huge_message_is_cut_to_the_channels_limit_without_breaking_an_escape(kind, limit):
    huge = alert(message="<&>" * 5000)
    body = rendered(huge, kind).body
    assert len(body) <= limit and body.endswith("…")
    if kind == "telegram":
        cut = body.rsplit("\n", 1)[-1]
        assert cut.removesuffix("…").endswith(("&lt;", "&amp;", "&gt;"))  # whole entities only


@pytest.mark.parametrize("message, why", [
    (fill(price=Decimal("NaN")), "price is NaN"),
    (fill(quantity=Decimal("Infinity")), "quantity is Infinity"),
    (fill(quantity=Decimal("0")), "must be positive"),
    (fill(symbol="BTCUSDT"), "BASE/QUOTE"),
    (order_event(average_price=Decimal("sNaN")), "average_price"),
    (alert(ts_event=-5), "not a time"),
])
def test_an_event_that_cannot_be_shown_says_why(message, why):
    with pytest.raises(UnrenderableEvent, match=why):
        render(notification_from_message(message), "webhook", channel("webhook").zone)


def test_the_test_message_names_its_channel():
    note = Notification("test:1", "test", "test", "info", T0, payload="ops (slack)", labels=MappingProxyType({}))
    assert render(note, "slack", channel("slack").zone).body == (
        "*Tradeflow test message*\nChannel ops (slack) is set up: this message came through it.\n"
        "Time: 2026-03-02 10:00:00 UTC")
