"""Exchanges through ccxt: the settings of one exchange (an entry of ``TRADEFLOW_EXCHANGES``) and
the ccxt client made from them. Shared by the ingest feeds and the backfill command."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode
from tradeflow.markets import ExchangeName
from tradeflow.settings import HOLDS_SECRETS, read_secret_file

if TYPE_CHECKING:
    import ccxt.pro

URL_SCHEMES = frozenset({"http", "https", "ws", "wss"})


def _ccxt_pro_exchanges() -> frozenset[str]:
    import ccxt.pro  # imported on validation only: ccxt takes a second to import

    return frozenset(ccxt.pro.exchanges)


class ExchangeFeedSettings(BaseModel):
    """One exchange, its symbols, and how to reach it.

    ``urls`` overrides entries of ccxt's ``exchange.urls['api']`` by dotted path, e.g. for
    Binance spot ``{"public": "http://host/api/v3", "ws.spot": "ws://host/ws"}`` (a proxy, a
    mirror, or a test double). ``options`` are merged over ccxt's exchange options.

    Credentials come from the entry (``api_key``, ``secret``, and ``password`` where the exchange
    wants a passphrase, e.g. OKX: the environment variable) or from mounted files (``api_key_file``,
    ``secret_file``, ``password_file``: a Kubernetes Secret volume), read once when
    the settings load. They are SecretStr: a repr, a log line or a settings error shows
    ``**********``, never the value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="ccxt exchange id with websocket support, e.g. 'binance'")
    symbols: tuple[str, ...] = Field(
        default=(), max_length=200,
        description="unified symbols subscribed from the start, e.g. 'BTC/USDT' (more at run time via /v1/subscriptions)",
    )
    name: ExchangeName | None = Field(default=None, description="exchange name on the ticks (default: the id)")
    urls: dict[str, str] = Field(default_factory=dict, description="overrides of urls['api'] by dotted path")
    sandbox: bool = Field(default=False, description="use the exchange's test environment")
    api_key: SecretStr | None = None
    secret: SecretStr | None = None
    api_key_file: Path | None = Field(default=None, description="a mounted file holding the API key (instead of api_key)")
    secret_file: Path | None = Field(default=None, description="a mounted file holding the secret (instead of secret)")
    password: SecretStr | None = Field(default=None, description="the API key's passphrase where the exchange has one (OKX)")
    password_file: Path | None = Field(default=None, description="a mounted file holding the passphrase (instead of password)")
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

    catch_up_max_pages: int = Field(
        default=100, ge=1, le=10_000,
        description="older pages fetched at most per symbol and catch-up where the trades endpoint serves "
                    "the newest page only (OKX: 100 trades each); beyond it a catch_up_incomplete alert",
    )

    alert_interval_s: float = Field(
        default=60.0, gt=0, le=86_400,
        description="at most one alert of each kind (websocket lost, breaker open...) per this many seconds",
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

    @model_validator(mode="before")
    @classmethod
    def _credentials_from_files(cls, data: Any) -> Any:
        """``api_key_file``/``secret_file``/``password_file`` read into ``api_key``/``secret``/``password``
        (one source per credential)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in ("api_key", "secret", "password"):
            path = data.get(f"{name}_file")
            if path is None:
                continue
            if data.get(name) is not None:
                raise ValueError(f"give {name} or {name}_file, not both")
            data[name] = read_secret_file(Path(path), f"{name}_file of exchange {data.get('id')!r}")
        return data

    @model_validator(mode="after")
    def _credentials_come_in_pairs(self) -> ExchangeFeedSettings:
        if (self.api_key is None) != (self.secret is None):
            raise ValueError("api_key and secret must be given together")
        return self

    @property
    def exchange_name(self) -> str:
        return self.name or self.id


def exchanges_from_json(value: Any) -> Any:
    """``TRADEFLOW_EXCHANGES`` text (a JSON list of exchanges) as a list; other values as given.

    Used as a "before" validator, so text that is not JSON is a validation error naming the
    setting instead of a traceback.
    """
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else []
        except ValueError as exc:
            raise ValueError(f"must be a JSON list of exchange feeds: {exc}") from None
    return value


class ExchangeListSettings(BaseModel):
    """``TRADEFLOW_EXCHANGES`` for a settings class (ingest, backfill): mix it into a
    :class:`~tradeflow.settings.CommonSettings` subclass."""

    exchanges: Annotated[list[ExchangeFeedSettings], NoDecode] = Field(
        default_factory=list, max_length=32, description="exchanges (JSON list of ExchangeFeedSettings); empty: none",
        json_schema_extra=HOLDS_SECRETS,  # entries carry credentials: an error never quotes the value
    )

    @field_validator("exchanges", mode="before")
    @classmethod
    def _exchanges_from_json(cls, value: Any) -> Any:
        return exchanges_from_json(value)


def find_exchange(configured: Sequence[ExchangeFeedSettings], name_or_id: str) -> ExchangeFeedSettings | None:
    """The configured exchange named ``name_or_id``, else the first whose ccxt id it is."""
    by_name = [feed for feed in configured if feed.exchange_name == name_or_id]
    by_id = [feed for feed in configured if feed.id == name_or_id]
    return (by_name or by_id or [None])[0]


# Per exchange, ccxt options the feed needs. Binance: spot markets only, no currency/sapi calls
# at start, and aggregate trades on BOTH the websocket and REST, so a trade has the same id
# whichever way it arrives (the plain `trade` stream and `aggTrades` number trades differently).
# Bybit and OKX: spot markets only (by default ccxt also loads their linear, inverse and option
# instruments: a dozen requests at start for markets the feed refuses anyway).
EXCHANGE_DEFAULT_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "binance": {
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "watchTrades": {"name": "aggTrade"},
        "watchTradesForSymbols": {"name": "aggTrade"},
        "fetchTradesMethod": "publicGetAggTrades",
    },
    "bybit": {"fetchMarkets": {"types": ["spot"]}},
    "okx": {"fetchMarkets": {"types": ["spot"]}},
}

# The most trades one REST trades request may ask of an exchange (ccxt passes ``limit`` through):
# Bybit spot recent-trade allows 60, OKX market/trades 500; the others 1000.
TRADES_PAGE_LIMITS: Mapping[str, int] = {"bybit": 60, "okx": 500}
DEFAULT_TRADES_PAGE_LIMIT = 1000


def trades_request(exchange_id: str, now_ms: int) -> tuple[int, dict[str, Any]]:
    """The ``limit`` and ``params`` of a ``fetch_trades(symbol, since=...)`` call to ``exchange_id``.

    Coinbase: ccxt refuses ``since`` without ``until`` (its trades endpoint takes a window); the
    window ends a second from now, since Coinbase counts it in whole seconds.
    """
    params: dict[str, Any] = {"until": now_ms + 1000} if exchange_id == "coinbase" else {}
    return TRADES_PAGE_LIMITS.get(exchange_id, DEFAULT_TRADES_PAGE_LIMIT), params


# Exchanges whose REST trades endpoint answers only the newest page (newest first; ccxt filters
# by ``since`` afterwards): a full page may not reach back to the cursor. OKX can page further
# back (market/history-trades); Bybit (recent-trade, no cursor) cannot. Coinbase (a time window in
# whole seconds) could be paged back through ccxt's ``until``; that is not done (no Coinbase fake
# to test it against, ADR 0010), so on both an outage longer than a page is reported.
NEWEST_PAGE_ONLY_TRADES = frozenset({"okx", "bybit", "coinbase"})
OKX_HISTORY_TRADES_LIMIT = 100  # market/history-trades: at most 100 per page


def serves_newest_page_only(exchange_id: str) -> bool:
    """Whether ``exchange_id``'s trades endpoint serves only its newest trades (see above)."""
    return exchange_id in NEWEST_PAGE_ONLY_TRADES


def older_trades_request(exchange_id: str, oldest_trade_id: str) -> tuple[int, dict[str, Any]] | None:
    """The ``limit`` and ``params`` of a ``fetch_trades`` call for the page of trades just older
    than the trade ``oldest_trade_id``, newest first; None where the exchange serves no older page.

    OKX: market/history-trades by trade id (``type`` 1), ``after`` = older than that id. ccxt's
    own ``paginate`` for it is not used: it takes the NEWEST trade of each page as the next
    cursor (ccxt 4.5), so each call moves back by one trade.
    """
    if exchange_id == "okx":
        return OKX_HISTORY_TRADES_LIMIT, {"method": "publicGetMarketHistoryTrades", "type": "1",
                                          "after": oldest_trade_id}
    return None


def create_ccxt_exchange(feed: ExchangeFeedSettings) -> ccxt.pro.Exchange:
    """The ccxt.pro client of ``feed``: default options, sandbox, credentials, URL overrides."""
    import ccxt.pro  # imported on use: ccxt takes a second to import

    config: dict[str, Any] = {
        "enableRateLimit": True,
        "options": {**EXCHANGE_DEFAULT_OPTIONS.get(feed.id, {}), **feed.options},
    }
    if feed.api_key is not None and feed.secret is not None:
        config["apiKey"] = feed.api_key.get_secret_value()
        config["secret"] = feed.secret.get_secret_value()
        if feed.password is not None:
            config["password"] = feed.password.get_secret_value()
    exchange = getattr(ccxt.pro, feed.id)(config)
    if feed.sandbox:
        exchange.set_sandbox_mode(True)
    for path, url in feed.urls.items():
        _override_url(exchange.urls["api"], path, url, feed.id)
    return exchange


def _override_url(api_urls: dict, path: str, url: str, exchange_id: str) -> None:
    *parents, leaf = path.split(".")
    node = api_urls
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            break
    if not isinstance(node, dict) or not isinstance(node.get(leaf), str):
        raise ValueError(f"{exchange_id}: urls override {path!r} names no URL of urls['api']")
    node[leaf] = url
