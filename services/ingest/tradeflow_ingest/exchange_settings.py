"""Configuration of one exchange feed (an entry of ``TRADEFLOW_EXCHANGES``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

URL_SCHEMES = frozenset({"http", "https", "ws", "wss"})


def _ccxt_pro_exchanges() -> frozenset[str]:
    import ccxt.pro  # imported on validation only: ccxt takes a second to import

    return frozenset(ccxt.pro.exchanges)


class ExchangeFeedSettings(BaseModel):
    """One exchange, its symbols, and how to reach it.

    ``urls`` overrides entries of ccxt's ``exchange.urls['api']`` by dotted path, e.g. for
    Binance spot ``{"public": "http://host/api/v3", "ws.spot": "ws://host/ws"}`` (a proxy, a
    mirror, or a test double). ``options`` are merged over ccxt's exchange options.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="ccxt exchange id with websocket support, e.g. 'binance'")
    symbols: tuple[str, ...] = Field(min_length=1, max_length=200, description="unified symbols, e.g. 'BTC/USDT'")
    name: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[^:\s]+$",
        description="exchange name on the ticks (default: the id)",
    )
    urls: dict[str, str] = Field(default_factory=dict, description="overrides of urls['api'] by dotted path")
    sandbox: bool = Field(default=False, description="use the exchange's test environment")
    api_key: SecretStr | None = None
    secret: SecretStr | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="ccxt options merged over the defaults")
    poll_interval_s: float = Field(default=1.0, gt=0, le=60, description="REST polling period while the websocket is down")
    rate_limit_wait_s: float = Field(
        default=60.0, gt=0, le=600,
        description="pause of every request after a rate-limit refusal that names no Retry-After",
    )
    breaker_failures: int = Field(
        default=5, ge=1, le=100, description="consecutive failed calls that open the circuit breaker"
    )
    breaker_cool_down_s: float = Field(
        default=30.0, gt=0, le=3600, description="open breaker: wait before a single probe call"
    )
    max_reconnects: int = Field(
        default=10, ge=1, le=1000, description="websocket connection attempts allowed per reconnect_window_s"
    )
    reconnect_window_s: float = Field(
        default=300.0, gt=0, le=86_400, description="sliding window of max_reconnects"
    )
    stale_after_s: float = Field(
        default=120.0, gt=0, le=3600,
        description="a symbol that has traded and then sends nothing for this long makes the feed resubscribe",
    )

    @field_validator("id")
    @classmethod
    def _known_exchange(cls, value: str) -> str:
        if value not in _ccxt_pro_exchanges():
            raise ValueError(f"{value!r} is not a ccxt exchange with websocket support")
        return value

    @field_validator("symbols")
    @classmethod
    def _unified_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [s for s in value if "/" not in s or ":" in s.split("/")[0] or s != s.strip()]
        if bad:
            raise ValueError(f"symbols must be unified spot symbols like 'BTC/USDT', got {bad}")
        if len(set(value)) != len(value):
            raise ValueError("symbols must not repeat")
        return value

    @field_validator("urls")
    @classmethod
    def _urls_are_urls(cls, value: dict[str, str]) -> dict[str, str]:
        for path, url in value.items():
            parts = urlsplit(url)
            if parts.scheme not in URL_SCHEMES or not parts.netloc:
                raise ValueError(f"urls[{path!r}] must be an http(s) or ws(s) URL, got {url!r}")
        return value

    @model_validator(mode="after")
    def _credentials_come_in_pairs(self) -> ExchangeFeedSettings:
        if (self.api_key is None) != (self.secret is None):
            raise ValueError("api_key and secret must be given together")
        return self

    @property
    def exchange_name(self) -> str:
        return self.name or self.id
