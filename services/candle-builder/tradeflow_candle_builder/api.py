"""``GET /v1/candles``: stored candles of one instrument and timeframe, ordered by time;
``GET /v1/candles/latest``: the newest one.

Served from the database (candles_1m and the higher-timeframe relations), which the pipeline
keeps equal to the stream, including the forming 1m candle. Instruments with trading sessions
(docs/adr/0008) get their higher timeframes from ``session_candles`` (closed buckets) plus the
forming bucket folded from its 1m candles.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

import msgspec
from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel
from tradeflow.time import TimeFormatError, datetime_to_ns, format_datetime, ns_to_datetime, parse_datetime

from tradeflow_candle_builder.adapters.candle_store import CandleRow, CandleStore
from tradeflow_candle_builder.adapters.session_candle_store import SessionCandleStore
from tradeflow_candle_builder.domain.instruments import SessionRules
from tradeflow_candle_builder.domain.timeframes import TIMEFRAMES
from tradeflow_candle_builder.instrument_registry import InstrumentRegistry

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000


class CandleOut(BaseModel):
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int


def invalid(parameter: str, why: str) -> HTTPException:
    return HTTPException(status_code=422, detail=f"{parameter}: {why}")


def parse_time(parameter: str, value: str | None) -> datetime | None:
    """ISO 8601 (no offset: UTC) or epoch milliseconds (:mod:`tradeflow.time`); 422 naming the
    parameter otherwise."""
    if value is None or value == "":
        return None
    try:
        return parse_datetime(value)
    except TimeFormatError:
        hint = " (a '+' in the offset must be URL-encoded as %2B)" if " " in value.strip() else ""
        raise invalid(parameter, f"{value!r} is neither ISO 8601 nor epoch milliseconds{hint}") from None


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise invalid("limit", f"{value!r} is not an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def candle_json(row: CandleRow) -> dict:
    return {"ts": format_datetime(row.ts), "open": row.open, "high": row.high,
            "low": row.low, "close": row.close, "volume": row.volume, "trades": row.trades}


def check_timeframe(timeframe: str) -> None:
    if timeframe not in TIMEFRAMES:
        raise invalid("timeframe", f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}")


def database_unavailable(exc: Exception) -> HTTPException:
    """The database is away or failing: not the client's fault."""
    log.warning("candle query failed: %s: %s", type(exc).__name__, exc)
    return HTTPException(status_code=503, detail="database unavailable, try again")


async def session_candles(sessions: SessionCandleStore, rules: SessionRules, timeframe: str,
                          start: datetime | None, end: datetime | None, limit: int) -> list[CandleRow]:
    """A session instrument's higher-timeframe candles overlapping [start, end): the stored
    (closed) ones, plus the forming bucket (the one holding the newest 1m candle) folded from
    its 1m candles when it is not stored yet."""
    exchange, symbol = rules.spec.exchange, rules.spec.symbol
    rows = await sessions.fetch(exchange, symbol, timeframe, start, end, limit)
    newest = await sessions.newest_1m_start(exchange, symbol)
    bucket = None if newest is None else rules.timeframe(timeframe).bucket(newest)
    if bucket is None or any(datetime_to_ns(r.ts) == bucket[0] for r in rows):
        return rows
    if (start is not None and bucket[1] <= datetime_to_ns(start)) or (end is not None and bucket[0] >= datetime_to_ns(end)):
        return rows
    forming = await sessions.fold_1m(exchange, symbol, timeframe, *bucket)
    if forming is None:
        return rows
    rows = sorted([*rows, forming], key=lambda r: r.ts)
    return rows[:limit] if start is not None else rows[-limit:]


def create_candles_router(store: CandleStore, sessions: SessionCandleStore, registry: InstrumentRegistry) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["candles"])

    @router.get("/candles", response_model=list[CandleOut])
    async def get_candles(
        exchange: Annotated[str, Query(min_length=1, description="e.g. binance")],
        symbol: Annotated[str, Query(min_length=1, description="e.g. BTC/USDT")],
        timeframe: Annotated[str, Query(description=f"one of {', '.join(TIMEFRAMES)}")] = "1m",
        start: Annotated[str | None, Query(description="first bucket start (inclusive): ISO 8601 with offset or epoch ms")] = None,
        end: Annotated[str | None, Query(description="bucket starts before this (exclusive): ISO 8601 with offset or epoch ms")] = None,
        limit: Annotated[str | None, Query(description=f"at most this many candles (default {DEFAULT_LIMIT}, max {MAX_LIMIT})")] = None,
    ) -> Response:
        """Candles overlapping [start, end), ordered by ``ts`` (bucket start, UTC). With
        ``start``: the first ``limit`` from it; without: the latest ``limit`` before ``end``."""
        check_timeframe(timeframe)
        start_at = parse_time("start", start)
        end_at = parse_time("end", end)
        if start_at is not None and end_at is not None and start_at > end_at:
            raise invalid("start", f"{start} is after end {end}")
        count = parse_limit(limit)
        rules = registry.rules.get((exchange, symbol))
        if rules is not None and timeframe != "1m":
            try:
                rows = await session_candles(sessions, rules, timeframe, start_at, end_at, count)
            except Exception as exc:
                raise database_unavailable(exc) from None
            return Response(content=msgspec.json.encode([candle_json(row) for row in rows]),
                            media_type="application/json")
        if start_at is not None:
            # Candles overlapping [start, end): the bucket holding `start` counts too (a 5m
            # candle of 09:55 covers 09:58).
            tf = TIMEFRAMES[timeframe]
            start_at = ns_to_datetime(tf.bucket_start(datetime_to_ns(start_at)))
        try:
            rows = await store.fetch_candles(exchange, symbol, timeframe, start_at, end_at, count)
        except Exception as exc:
            raise database_unavailable(exc) from None
        # Encoded directly (the response model documents the shape): up to 10,000 rows.
        return Response(content=msgspec.json.encode([candle_json(row) for row in rows]), media_type="application/json")

    @router.get("/candles/latest", response_model=CandleOut, responses={404: {"description": "no candle stored"}})
    async def get_latest_candle(
        exchange: Annotated[str, Query(min_length=1, description="e.g. binance")],
        symbol: Annotated[str, Query(min_length=1, description="e.g. BTC/USDT")],
        timeframe: Annotated[str, Query(description=f"one of {', '.join(TIMEFRAMES)}")],
    ) -> Response:
        """The newest candle of the instrument and timeframe, the forming one included."""
        check_timeframe(timeframe)
        rules = registry.rules.get((exchange, symbol))
        try:
            if rules is not None and timeframe != "1m":
                newest = await session_candles(sessions, rules, timeframe, None, None, 1)
                row = newest[-1] if newest else None
            else:
                row = await store.fetch_latest(exchange, symbol, timeframe)
        except Exception as exc:
            raise database_unavailable(exc) from None
        if row is None:
            raise HTTPException(status_code=404, detail=f"no {timeframe} candle stored for {exchange} {symbol}")
        return Response(content=msgspec.json.encode(candle_json(row)), media_type="application/json")

    return router
