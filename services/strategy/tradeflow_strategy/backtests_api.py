"""``/v1/backtests``: where the backtest tools store their runs and anyone reads them back.

``POST /v1/backtests`` (API key) takes one run of ``tradeflow backtest``, ``optimize``,
walk-forward or Monte Carlo: ``{"kind", "strategy", "params", "markets": [{"exchange",
"symbol"}], "timeframe", "since", "until", "settings", "metrics", "trades", "equity",
"summary"}``, validated (422 naming the field), stored, 201 with its ``id``. ``GET
/v1/backtests`` lists runs newest first without trades and equity (filters ``strategy``,
``kind``, ``limit``); ``GET /v1/backtests/{id}`` gives everything (404 when unknown).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from tradeflow.markets import ExchangeName, SymbolName
from tradeflow.timeframes import TimeframeName

from tradeflow_strategy.adapters.backtest_store import BacktestStore
from tradeflow_strategy.api_errors import database_unavailable

RunKind = Literal["backtest", "optimize", "walk_forward", "montecarlo"]
MAX_ROWS = 2_000_000  # trades or equity points of one run


class MarketIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exchange: ExchangeName
    symbol: SymbolName


class BacktestRunIn(BaseModel):
    """One run as the backtest tools report it (design.md's ``--json`` output plus what was run)."""

    model_config = ConfigDict(extra="forbid")

    kind: RunKind
    strategy: str = Field(min_length=1, max_length=128, description="the strategy's catalog name")
    params: dict[str, Any] = Field(default_factory=dict)
    markets: list[MarketIn] = Field(min_length=1, max_length=10_000)
    timeframe: TimeframeName
    since: AwareDatetime = Field(description="ISO 8601 with offset")
    until: AwareDatetime = Field(description="ISO 8601 with offset, after since")
    settings: dict[str, Any] = Field(default_factory=dict, description="cash, fees, slippage, search settings ...")
    metrics: dict[str, Any] = Field(default_factory=dict)
    trades: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_ROWS)
    equity: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_ROWS)
    summary: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _since_before_until(self) -> BacktestRunIn:
        if self.since >= self.until:
            raise ValueError(f"until ({self.until.isoformat()}) must be after since ({self.since.isoformat()})")
        return self


class BacktestCreated(BaseModel):
    id: str
    created_at: str


def create_backtests_router(store: BacktestStore) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["backtests"])

    @router.post("/backtests", status_code=201, response_model=BacktestCreated,
                 responses={422: {"description": "a field is missing or invalid (named in the detail)"}})
    async def store_run(run: BacktestRunIn) -> dict[str, str]:
        """Store one run of the backtest tools; answers its id."""
        values = run.model_dump(mode="json")
        values["since"], values["until"] = run.since, run.until
        try:
            return await store.add(values)
        except Exception as exc:
            raise database_unavailable(exc, "backtest store") from None

    @router.get("/backtests")
    async def list_runs(strategy: str | None = Query(default=None, max_length=128), kind: RunKind | None = None,
                        limit: int = Query(default=50, ge=1, le=1_000)) -> list[dict[str, Any]]:
        """Stored runs, newest first, without their trades and equity curve."""
        try:
            return await store.list(strategy=strategy, kind=kind, limit=limit)
        except Exception as exc:
            raise database_unavailable(exc, "backtest store") from None

    @router.get("/backtests/{run_id}", responses={404: {"description": "no run with this id"}})
    async def get_run(run_id: str) -> dict[str, Any]:
        """One run with everything it was stored with."""
        try:
            run = await store.get(run_id)
        except Exception as exc:
            raise database_unavailable(exc, "backtest store") from None
        if run is None:
            raise HTTPException(status_code=404, detail=f"no backtest run {run_id!r}")
        return run

    return router
