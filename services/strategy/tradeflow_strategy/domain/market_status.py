"""What ``GET /v1/strategies/{id}`` shows of one instance on one market, as JSON.

Kept by the replica that runs the market (:class:`tradeflow_strategy.engine.MarketSlot`) and
written to the database every ``TRADEFLOW_STRATEGY_STATUS_INTERVAL_S``, so any replica can answer.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tradeflow.messages import Candle, Signal
from tradeflow.timeframes import ns_to_datetime
from tradeflow_trading.positions import Position

# How a market's runner stands: no candle since this replica took the market (it warms up on
# the first one), loading stored candles, deciding (its window full), or deciding while its
# window still fills (the store had fewer candles than the strategy's warm-up).
MarketState = str
WAITING, WARMING, READY, FILLING = "waiting", "warming", "ready", "filling"


def iso(ts_ns: int) -> str:
    return ns_to_datetime(ts_ns).isoformat()


def candle_json(candle: Candle, received_ns: int) -> dict[str, Any]:
    return {"timeframe": candle.timeframe, "ts": iso(candle.ts_start), "close": candle.close,
            "revision": candle.revision, "received_at": iso(received_ns)}


def signal_json(signal: Signal) -> dict[str, Any]:
    return {"signal_id": signal.signal_id, "intent": signal.intent, "ts_event": iso(signal.ts_event),
            "price": _text(signal.price), "reason": signal.reason}


def position_json(position: Position) -> dict[str, Any]:
    return {"quantity": str(position.quantity), "average_price": str(position.average_price),
            "realized_pnl": str(position.realized_pnl), "fees": {c: str(v) for c, v in position.fees.items()},
            "fills": position.fills}


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
