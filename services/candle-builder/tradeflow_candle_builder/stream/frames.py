"""What a stream client receives: one JSON text frame per candle, and what it subscribes to."""

from __future__ import annotations

import msgspec
from tradeflow.markets import parse_market_key
from tradeflow.messages import Candle

from tradeflow_candle_builder.domain.timeframes import TIMEFRAMES, ns_to_datetime

StreamKey = tuple[str, str, str]  # (exchange, symbol, timeframe)
MAX_KEYS = 1_000  # markets per connection: bounds a subscription's size and its query string

_json = msgspec.json.Encoder()


def stream_key(candle: Candle) -> StreamKey:
    return (candle.exchange, candle.symbol, candle.timeframe)


def candle_frame(candle: Candle) -> str:
    """The JSON text of one candle (``ts``: its bucket start, ISO 8601 UTC)."""
    ts = ns_to_datetime(candle.ts_start).isoformat().replace("+00:00", "Z")
    return _json.encode({
        "exchange": candle.exchange, "symbol": candle.symbol, "timeframe": candle.timeframe, "ts": ts,
        "open": candle.open, "high": candle.high, "low": candle.low, "close": candle.close,
        "volume": candle.volume, "trades": candle.trades, "revision": candle.revision,
    }).decode()


class InvalidSubscription(ValueError):
    """A query parameter the stream refuses; the message starts with the parameter's name."""


def parse_subscription(keys: str | None, timeframes: str | None) -> set[StreamKey]:
    """``keys=binance:BTC/USDT,...`` x ``timeframes=1m,1h`` (default ``1m``) -> the stream keys."""
    markets = [k.strip() for k in (keys or "").split(",") if k.strip()]
    if not markets:
        raise InvalidSubscription("keys: required, e.g. keys=binance:BTC/USDT,binance:ETH/USDT")
    if len(markets) > MAX_KEYS:
        raise InvalidSubscription(f"keys: at most {MAX_KEYS} per connection, got {len(markets)}")
    pairs = []
    for market in markets:
        pair = parse_market_key(market)
        if pair is None:
            raise InvalidSubscription(f"keys: {market[:60]!r} is not exchange:symbol")
        pairs.append(pair)
    names = [t.strip() for t in (timeframes or "1m").split(",") if t.strip()]
    if not names:
        raise InvalidSubscription("timeframes: empty; e.g. timeframes=1m,1h")
    for name in names:
        if name not in TIMEFRAMES:
            raise InvalidSubscription(f"timeframes: unknown {name[:20]!r}; known: {','.join(TIMEFRAMES)}")
    return {(exchange, symbol, tf) for exchange, symbol in pairs for tf in names}
