"""Messages and channels the notifier's unit tests share."""

from __future__ import annotations

from decimal import Decimal

from tradeflow.messages import Alert, Fill, OrderEvent, RiskEvent
from tradeflow_notifier.domain.channels import parse_channel

T0 = 1_772_445_600_000_000_000  # 2026-03-02 10:00:00 UTC (a Monday; Berlin is on CET, +01:00)


def fill(**overrides) -> Fill:
    values = dict(fill_id="f-1", client_order_id="c0ffee", account_id="alice", exchange="binance", symbol="BTC/USDT",
                  side="buy", quantity=Decimal("0.00100000"), price=Decimal("64123.45"), fee=Decimal("0.06412345"),
                  fee_currency="USDT", liquidity="taker", ts_event=T0)
    values.update(overrides)
    return Fill(**values)


def order_event(**overrides) -> OrderEvent:
    values = dict(client_order_id="c0ffee", account_id="alice", exchange="binance", symbol="BTC/USDT", side="buy",
                  status="filled", seq=3, quantity=Decimal("0.001"), filled_quantity=Decimal("0.001"),
                  average_price=Decimal("64123.45"), ts_event=T0)
    values.update(overrides)
    return OrderEvent(**values)


def risk_event(**overrides) -> RiskEvent:
    values = dict(event_id="r-1", account_id="alice", kind="limit_breach", reason="max_daily_loss",
                  message="daily loss 512.40 USDT exceeds max_daily_loss 500", severity="critical", state="halted",
                  details={"limit": "500", "value": "512.40"}, ts_event=T0)
    values.update(overrides)
    return RiskEvent(**values)


def alert(**overrides) -> Alert:
    values = dict(service="ingest", severity="critical", kind="feed_breaker_open",
                  message="binance: circuit breaker open after 5 consecutive failed calls", labels={"exchange": "binance"},
                  ts_event=T0)
    values.update(overrides)
    return Alert(**values)


def channel(kind: str, channel_id: str | None = None, **fields):
    base = {
        "webhook": {"url": "http://127.0.0.1:9/hook", "secret": "whsec_0123456789abcdef"},
        "telegram": {"token": "123:ABC", "chat_id": "42"},
        "discord": {"url": "http://127.0.0.1:9/api/webhooks/1/tok"},
        "slack": {"url": "http://127.0.0.1:9/services/T/B/X"},
        "email": {"host": "127.0.0.1", "from": "Tradeflow <alerts@example.com>", "to": ["ops@example.com"]},
    }[kind]
    return parse_channel({"id": channel_id or kind, "kind": kind, **base, **fields})
