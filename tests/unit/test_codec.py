"""MessagePack round trips of every message type, the schema headers and decode failures."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from tradeflow.codec import (
    CONTENT_TYPE,
    DecodeError,
    decode,
    encode,
    header_value,
    message_headers,
    type_for_schema,
)
from tradeflow.messages import (
    ALL_MESSAGE_TYPES,
    Alert,
    Candle,
    Fill,
    Order,
    OrderAmendment,
    OrderEvent,
    RiskEvent,
    Signal,
    Subscription,
    Tick,
)

NS = 1_700_000_000_123_456_789

SAMPLES = [
    Tick(exchange="binance", symbol="BTC/USDT", trade_id="t-1", price=64123.5, amount=0.001, side="buy",
         ts_event=NS, ts_recv=NS + 1),
    Candle(exchange="binance", symbol="BTC/USDT", timeframe="1m", ts_start=NS, ts_end=NS + 60_000_000_000,
           open=1.5, high=2.25, low=1.0, close=2.0, volume=10.125, trades=7, revision=2),
    Signal(signal_id="s-1", account_id="acct-1", strategy_id="sma", exchange="binance", symbol="ETH/USDT",
           intent="target", target_quantity=Decimal("-1.000000000000000001"), reason="cross", ts_event=NS),
    Order(client_order_id="o-1", account_id="acct-1", exchange="binance", symbol="ETH/USDT", side="sell",
          order_type="limit", quantity=Decimal("0.30000000000000004"), limit_price=Decimal("3120.01"),
          time_in_force="IOC", signal_id="s-1", ts_event=NS),
    OrderEvent(client_order_id="o-1", account_id="acct-1", exchange="binance", symbol="ETH/USDT",
               status="partially_filled", exchange_order_id="x-9", filled_quantity=Decimal("0.1"),
               average_price=Decimal("3120.005"), ts_event=NS),
    Fill(fill_id="f-1", client_order_id="o-1", account_id="acct-1", exchange="binance", symbol="ETH/USDT",
         side="sell", quantity=Decimal("0.1"), price=Decimal("3120.005"), fee=Decimal("0.00031200050"),
         fee_currency="USDT", liquidity="maker", ts_event=NS),
    RiskEvent(event_id="r-1", account_id="acct-1", kind="limit_breach", reason="max_position: 5 > 4",
              details={"limit": "4", "value": "5"}, ts_event=NS),
    Alert(service="ingest", severity="warning", kind="disconnect", message="binance ws closed",
          labels={"exchange": "binance"}, ts_event=NS),
    Subscription(exchange="binance", symbol="BTC/USDT", source="api", ts_created=1_700_000_000_000_000_000),
    OrderAmendment(amendment_id="o-1:1", client_order_id="o-1", account_id="acct-1", exchange="binance",
                   symbol="ETH/USDT", quantity=Decimal("0.2"), limit_price=Decimal("3119.5"), ts_event=NS),
]


def test_every_message_type_has_a_sample():
    assert {type(s) for s in SAMPLES} == set(ALL_MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_is_exact(message):
    data = encode(message)
    decoded = decode(type(message), data)
    assert decoded == message
    assert type_for_schema(type(message).SCHEMA) is type(message)
    # a MessagePack map keyed by field name: readable by any MessagePack library
    assert isinstance(msgspec.msgpack.decode(data), dict)


def test_decimals_keep_every_digit_and_trailing_zero():
    fill = SAMPLES[5]
    decoded = decode(Fill, encode(fill))
    assert str(decoded.fee) == "0.00031200050"
    assert decoded.quantity * decoded.price == Decimal("312.0005")  # exact, no float rounding


def test_schema_and_content_type_headers():
    headers = message_headers(Tick, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    assert header_value(headers, "content-type") == CONTENT_TYPE
    assert header_value(headers, "schema") == "Tick/1"
    assert header_value(headers, "traceparent").startswith("00-aaaa")
    assert header_value(message_headers(Candle), "traceparent") is None


def test_garbage_and_wrong_types_raise_decode_error():
    with pytest.raises(DecodeError):
        decode(Tick, b"\xc1\x00 not msgpack")
    with pytest.raises(DecodeError, match="missing required field"):
        decode(Tick, encode(SAMPLES[1]))  # a Candle is not a Tick
    with pytest.raises(DecodeError):
        decode(Fill, msgspec.msgpack.encode({**msgspec.to_builtins(SAMPLES[5]), "quantity": "lots"}))
    with pytest.raises(DecodeError, match="unknown schema"):
        type_for_schema("Tick/9")


def test_a_field_added_with_a_default_is_backward_compatible():
    class TickV1Reader(msgspec.Struct, kw_only=True):  # an old reader without `amount`
        exchange: str
        price: float

    assert msgspec.msgpack.decode(encode(SAMPLES[0]), type=TickV1Reader).price == 64123.5
    # and a new optional field unknown to the writer decodes to its default
    old_candle = {k: v for k, v in msgspec.to_builtins(SAMPLES[1]).items() if k != "revision"}
    assert decode(Candle, msgspec.msgpack.encode(old_candle)).revision == 0
