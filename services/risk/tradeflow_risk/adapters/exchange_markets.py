"""Market precision and minimums from ccxt, for the accounts' exchanges configured in TRADEFLOW_EXCHANGES.

At start, for every exchange an account trades on that has an entry in ``TRADEFLOW_EXCHANGES``
(the same entries ingest reads: id, URL overrides, sandbox), risk loads ccxt's markets once
(``load_markets``) in the background, retrying with backoff while the exchange is away; the
``markets`` readiness check fails until every one is loaded. An account on an exchange without
an entry (the synthetic market, any exchange ccxt does not know) gets no market rules: only the
default quantity step of 1e-8 applies, and any BASE/QUOTE symbol is accepted.

ccxt gives steps either as tick sizes or as decimal places (``precisionMode``); significant
digits (a few exchanges) cannot be expressed as a step and are not enforced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from tradeflow.bus.connection import Backoff
from tradeflow.service import BackgroundTask
from tradeflow_exchanges.ccxt_client import ExchangeFeedSettings, create_ccxt_exchange, find_exchange

from tradeflow_risk.domain.market_rules import MarketRules

log = logging.getLogger(__name__)

# ccxt.base.decimal_to_precision's precision modes (imported lazily with ccxt).
DECIMAL_PLACES = 2
TICK_SIZE = 4


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    number = Decimal(str(value))
    return number if number > 0 else None


def _step(value: Any, precision_mode: int) -> Decimal | None:
    if value is None:
        return None
    if precision_mode == TICK_SIZE:
        return _decimal(value)
    if precision_mode == DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(value))
    return None


def rules_from_ccxt(market: Mapping[str, Any], precision_mode: int) -> MarketRules:
    """A ccxt unified market's steps and minimums as :class:`MarketRules`."""
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    return MarketRules(amount_step=_step(precision.get("amount"), precision_mode),
                       price_step=_step(precision.get("price"), precision_mode),
                       min_amount=_decimal((limits.get("amount") or {}).get("min")),
                       min_cost=_decimal((limits.get("cost") or {}).get("min")))


class ExchangeMarkets(BackgroundTask):
    """A service Component: the market rules of the accounts' configured exchanges."""

    name = "exchange-markets"

    def __init__(self, configured: Iterable[ExchangeFeedSettings], account_exchanges: Iterable[str]) -> None:
        super().__init__()
        configured = list(configured)
        self._feeds = {name: feed for name in sorted(set(account_exchanges))
                       if (feed := find_exchange(configured, name)) is not None}
        self._rules: dict[str, dict[str, MarketRules]] = {}
        self._errors: dict[str, str] = {}

    async def start(self) -> None:
        if self._feeds:
            await super().start()

    async def ready(self) -> tuple[bool, str]:
        missing = [name for name in self._feeds if name not in self._rules]
        if missing:
            detail = "; ".join(f"{name}: {self._errors.get(name, 'loading')}" for name in missing)
            return False, f"markets not loaded yet: {detail}"
        if not self._feeds:
            return True, "no account exchange is configured in TRADEFLOW_EXCHANGES: default steps only"
        return True, ", ".join(f"{name}: {len(rules)} markets" for name, rules in self._rules.items())

    def rules(self, exchange: str, symbol: str) -> MarketRules | None:
        markets = self._rules.get(exchange)
        return markets.get(symbol) if markets is not None else None

    def symbols(self, exchange: str) -> frozenset[str] | None:
        """The exchange's market symbols; None where risk does not know its markets."""
        markets = self._rules.get(exchange)
        return frozenset(markets) if markets is not None else None

    async def run(self) -> None:
        await asyncio.gather(*(self._load(name, feed) for name, feed in self._feeds.items()))

    async def _load(self, name: str, feed: ExchangeFeedSettings) -> None:
        backoff = Backoff(initial_s=1.0, maximum_s=60.0)
        while True:
            exchange = create_ccxt_exchange(feed)
            try:
                markets = await exchange.load_markets()
                mode = exchange.precisionMode
                self._rules[name] = {symbol: rules_from_ccxt(market, mode) for symbol, market in markets.items()}
                log.info("markets of %s loaded: %d symbols", name, len(markets))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the exchange is away or refuses: retry
                self._errors[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
                delay = backoff.next_delay()
                log.warning("loading the markets of %s failed (%s); retrying in %.1fs", name, self._errors[name], delay)
            finally:
                await exchange.close()
            await asyncio.sleep(delay)
