"""``POST /v1/instruments``: register an instrument's market calendar; ``GET /v1/instruments``: list them.

201 for a new registration, 200 when it is identical to the stored one (or changes one that has
no candles yet), 409 when it would change the settings of an instrument that already has candles
(they are cut one way; an unregistered instrument counts as 24/7), 422 for a bad exchange or
symbol, an unknown calendar (the message names examples) or extended hours on a calendar whose
extended session we do not know.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tradeflow_candle_builder.adapters.instrument_store import InstrumentStore
from tradeflow_candle_builder.adapters.market_calendars import (
    EXTENDED_HOURS,
    UnknownCalendarError,
    canonical_calendar,
    session_table,
)
from tradeflow_candle_builder.domain.instruments import TWENTY_FOUR_SEVEN, InstrumentSpec, instrument_problem
from tradeflow_candle_builder.instrument_registry import InstrumentRegistry

log = logging.getLogger(__name__)


class InstrumentIn(BaseModel):
    exchange: str = Field(description="e.g. nasdaq, binance")
    symbol: str = Field(description="e.g. AAPL, BTC/USDT")
    calendar: str = Field(default=TWENTY_FOUR_SEVEN,
                          description="'24/7' (UTC-aligned bars) or an exchange_calendars code: XNYS, XLON, XTKS ...")
    extended_hours: bool = Field(default=False, description="count pre-market and after-hours trades (XNYS, XNAS)")


class InstrumentOut(BaseModel):
    exchange: str
    symbol: str
    calendar: str
    extended_hours: bool


def _out(spec: InstrumentSpec) -> dict:
    return {"exchange": spec.exchange, "symbol": spec.symbol, "calendar": spec.calendar,
            "extended_hours": spec.extended_hours}


def _unavailable(exc: Exception) -> HTTPException:
    log.warning("instrument registry query failed: %s: %s", type(exc).__name__, exc)
    return HTTPException(status_code=503, detail="database unavailable, try again")


async def _validated(body: InstrumentIn) -> InstrumentSpec:
    problem = instrument_problem(body.exchange, body.symbol)
    if problem is not None:
        raise HTTPException(status_code=422, detail=problem)
    try:
        calendar = canonical_calendar(body.calendar)
    except UnknownCalendarError as exc:
        raise HTTPException(status_code=422, detail=f"calendar: {exc}") from None
    if body.extended_hours and calendar not in EXTENDED_HOURS:
        raise HTTPException(status_code=422, detail=(
            f"extended_hours: no extended session is known for {calendar}; "
            f"extended hours are defined for {', '.join(sorted(EXTENDED_HOURS))}"))
    spec = InstrumentSpec(body.exchange, body.symbol, calendar, body.extended_hours)
    if spec.has_sessions:
        try:  # loads (and caches) the calendar: a calendar we cannot cut into minutes is refused here
            await asyncio.to_thread(session_table, spec.calendar, spec.extended_hours)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=f"calendar: {exc}") from None
    return spec


def create_instruments_router(store: InstrumentStore, registry: InstrumentRegistry) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["instruments"])

    @router.post("/instruments", response_model=InstrumentOut, status_code=201,
                 responses={200: {"description": "already registered with these settings, or changed before any candle"},
                            409: {"description": "the instrument has candles under other settings"},
                            422: {"description": "bad exchange, symbol, calendar or extended_hours"}})
    async def register_instrument(body: InstrumentIn) -> JSONResponse:
        """Register (or re-register) an instrument's market calendar."""
        spec = await _validated(body)
        try:
            stored = await store.get(spec.exchange, spec.symbol)
            if stored == spec:
                return JSONResponse(_out(spec), status_code=200)
            current = stored or InstrumentSpec(spec.exchange, spec.symbol)
            if not current.same_settings(spec) and await store.has_candles(spec.exchange, spec.symbol):
                raise HTTPException(status_code=409, detail=(
                    f"{spec.exchange} {spec.symbol} already has candles under calendar {current.calendar!r}"
                    f"{' with extended hours' if current.extended_hours else ''}; its settings cannot change"))
            await store.save(spec)
            await registry.reload()  # this replica applies it at once; the others on their next refresh
        except HTTPException:
            raise
        except Exception as exc:
            raise _unavailable(exc) from None
        return JSONResponse(_out(spec), status_code=201 if stored is None else 200)

    @router.get("/instruments", response_model=list[InstrumentOut])
    async def list_instruments() -> list[dict]:
        """Every registered instrument, ordered by exchange and symbol (unregistered ones are 24/7)."""
        try:
            specs = await store.list()
        except Exception as exc:
            raise _unavailable(exc) from None
        return [_out(s) for s in specs]

    return router
