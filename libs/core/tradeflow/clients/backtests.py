"""The strategy service's store of research runs: ``POST /v1/backtests`` and ``GET /v1/backtests``
(issue 17, item 7), written by ``tradeflow backtest``, ``optimize`` and ``montecarlo``.

A stored run (:class:`ResearchRun`) is one JSON object::

    {"kind": "backtest" | "optimize" | "walk_forward" | "montecarlo",
     "strategy": "sma_cross", "params": {...}, "markets": [{"exchange", "symbol"}],
     "timeframe": "1m", "since": ISO 8601, "until": ISO 8601,
     "settings": {...}, "metrics": {...}, "trades": [...], "equity": [...], "summary": {...}}

``settings`` are how the run was made (cash, fees, slippage, sampler, windows...), ``metrics``
the run's figures (for an optimisation: the best trial's), ``trades`` and ``equity`` in
``tradeflow backtest --json``'s shapes, ``summary`` what the kind adds (the results table and
best parameters, the walk-forward windows, the Monte Carlo distributions).

Posting needs an API key (design.md): the first of ``TRADEFLOW_API_KEYS`` /
``TRADEFLOW_API_KEYS_FILE``. The service is at ``TRADEFLOW_STRATEGY_URL``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field, SecretStr

RunKind = Literal["backtest", "optimize", "walk_forward", "montecarlo"]
DEFAULT_STRATEGY_URL = "http://127.0.0.1:8003"


class StrategyApiSettings(BaseModel):
    """``TRADEFLOW_STRATEGY_URL``: where a tool finds the strategy service (mix into its settings)."""

    strategy_url: str = Field(default=DEFAULT_STRATEGY_URL, pattern=r"^https?://",
                              description="base URL of the strategy service's REST API")


class BacktestStoreError(RuntimeError):
    """The strategy service refused the run or could not be reached; the text says which and why."""


@dataclass(frozen=True, slots=True)
class MarketRef:
    exchange: str
    symbol: str


@dataclass(frozen=True, slots=True)
class ResearchRun:
    """One run as stored (the module docstring has the shape)."""

    kind: RunKind
    strategy: str
    params: dict[str, Any]
    markets: list[MarketRef]
    timeframe: str
    since: str
    until: str
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    trades: list[dict[str, Any]] = field(default_factory=list)
    equity: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return asdict(self)


class BacktestStore:
    """Stores and lists research runs on the strategy service at ``base_url``."""

    def __init__(self, base_url: str, api_key: SecretStr | None, *, timeout_s: float = 10.0,
                 client: httpx.AsyncClient | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._owns_client = client is None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def save(self, run: ResearchRun) -> dict[str, Any]:
        """POST the run; returns the service's answer (the stored run, with its id)."""
        headers = {}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        response = await self._request("POST", json=run.body(), headers=headers)
        if response.status_code not in (200, 201):
            raise BacktestStoreError(f"strategy service at {self._base_url} answered {response.status_code} to "
                                     f"POST /v1/backtests: {response.text[:300]}")
        return response.json()

    async def list(self, **filters: str) -> list[dict[str, Any]]:
        """GET /v1/backtests (filters as query parameters, e.g. ``strategy="sma_cross"``)."""
        response = await self._request("GET", params=filters)
        if response.status_code != 200:
            raise BacktestStoreError(f"strategy service at {self._base_url} answered {response.status_code} to "
                                     f"GET /v1/backtests: {response.text[:300]}")
        return response.json()

    async def _request(self, method: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, f"{self._base_url}/v1/backtests", **kwargs)
        except httpx.HTTPError as exc:
            raise BacktestStoreError(f"strategy service at {self._base_url} unreachable: "
                                     f"{type(exc).__name__}: {exc}") from exc
