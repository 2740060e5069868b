"""How a live account's own trades are read completely, per exchange (ADR 0022 and its amendment).

The live broker reads the account's trades of a symbol since a time (polls, reconciliation after
a restart or a reconnect) and the trades of one order. An exchange answers such a read in pages
and often only within a time window; a read that stops after one page or one window misses fills
after an outage, silently. Each reader here walks the exchange's own windows and cursors until
the exchange says there is nothing more:

* Binance ``myTrades``: 1000 a page, ``startTime``..``endTime`` at most 24 hours: the windows from
  the start up to the first with trades, then by trade id (``fromId``) until a page is not full.
* Bybit v5 ``execution/list``: 100 a page, newest first, ``startTime``..``endTime`` at most 7 days:
  every 7-day window from the start to now, each paged by ``cursor`` until ``nextPageCursor`` is
  empty. ccxt's ``paginate`` walks no windows (only the first 7 days after ``since``) and stops
  silently after 10 pages.
* OKX ``trade/fills-history`` (3 months; ``trade/fills`` keeps only 3 days): 100 a page, newest
  first, back by ``after`` = the oldest ``billId`` read until a page is shorter than 100. ccxt's
  ``paginate`` pages by time (``until`` = the oldest trade's ms - 1: the other trades of that
  millisecond are skipped) and stops silently after 10 pages.
* Kraken ``TradesHistory``: 50 a page, newest first, all pairs: by offset ``ofs`` until the
  offset reaches Kraken's ``count`` (a trade made meanwhile shifts the pages by one: a trade read
  twice, deduplicated by id, never one missed); ccxt has no paging for it. An order's trades:
  their ids from ``QueryOrders`` (``trades``), then ``QueryTrades`` 20 ids a request (ccxt's
  ``fetch_order_trades`` sends an empty batch when the ids are a multiple of 20).
* Other exchanges: one ``fetch_my_trades`` request per read (not paged here).

The three exchanges without a paging rule in ccxt that is complete are asked through ccxt's
endpoint methods (signing, errors, rate limit) and their rows read by ccxt's own ``parse_trade``;
a row it cannot read is reported and skipped (the balance check then halts the account, as for
any unreadable fill). Results are in time order, each trade once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DAY_MS = 86_400_000
BINANCE_PAGE = 1000
BINANCE_WINDOW_MS = DAY_MS
BYBIT_PAGE = 100
BYBIT_WINDOW_MS = 7 * DAY_MS
OKX_PAGE = 100
KRAKEN_QUERY_TRADES_MAX = 20  # QueryTrades: at most 20 trade ids a request


class UnreadableAnswer(ValueError):
    """An answer whose paging cannot be followed (no id to go on from, a cursor that does not move)."""


@dataclass(frozen=True, slots=True)
class ExchangeCalls:
    """How the broker makes a request (through its request hold and circuit breaker)."""

    call: Callable[..., Awaitable[Any]]  # call(method, *args): one request
    fetch_list: Callable[..., Awaitable[list[dict]]]  # fetch_list(method name, parse name, symbol, *args)
    malformed: Callable[[str, Exception], None]  # an entry that cannot be read: counted, logged, skipped


class AccountTrades:
    """One ``fetch_my_trades`` request per read: exchanges without a paging rule here."""

    def __init__(self, exchange: Any, calls: ExchangeCalls) -> None:
        self._exchange = exchange
        self._calls = calls

    async def since(self, symbol: str, since_ms: int, now_ms: int) -> list[dict]:
        """The account's trades of ``symbol`` made at or after ``since_ms``."""
        return await self._calls.fetch_list("fetch_my_trades", "parse_trade", symbol, since_ms, BINANCE_PAGE)

    async def of_order(self, symbol: str, order_id: str, since_ms: int, now_ms: int) -> list[dict]:
        """Every trade of the order ``order_id`` (placed at or after ``since_ms``)."""
        return await self._calls.call(self._exchange.fetch_my_trades, symbol, None, None, {"orderId": order_id})

    async def _market(self, symbol: str) -> dict:
        await self._calls.call(self._exchange.load_markets)
        return self._exchange.market(symbol)

    def _parsed(self, rows: Iterable[Mapping[str, Any]], market: dict | None, symbol: str) -> list[dict]:
        """``rows`` read by ccxt's parser, those of ``symbol`` only, each id once, in time order."""
        trades: dict[str, dict] = {}
        unnamed: list[dict] = []
        for row in rows:
            try:
                trade = self._exchange.parse_trade(dict(row), market)
            except Exception as exc:  # noqa: BLE001 - one bad row does not lose the others
                self._calls.malformed(f"trade {str(row)[:200]}", exc)
                continue
            if trade.get("symbol") != symbol:
                continue
            if trade.get("id") is None:
                unnamed.append(trade)  # the broker counts it as unreadable
            else:
                trades[str(trade["id"])] = trade
        return sorted(trades.values(), key=_time_order) + unnamed


class BinanceTrades(AccountTrades):
    async def since(self, symbol: str, since_ms: int, now_ms: int) -> list[dict]:
        """The 24-hour windows from ``since_ms`` are walked up to the first that has trades, then
        the trades after the newest one read are asked for by id (``fromId``), a page of 1000 at a
        time, until a page is not full."""
        fetch = self._calls.fetch_list
        start = since_ms
        while True:
            end = start + BINANCE_WINDOW_MS - 1
            window = {"endTime": end} if end < now_ms else {}  # the last window: the exchange ends it
            page = await fetch("fetch_my_trades", "parse_trade", symbol, start, BINANCE_PAGE, window)
            if page or end >= now_ms:
                break
            start = end + 1
        trades = list(page)
        more = len(page) >= BINANCE_PAGE or (bool(page) and end < now_ms)
        while more:
            page = await fetch("fetch_my_trades", "parse_trade", symbol, None, BINANCE_PAGE,
                               {"fromId": _newest_id(trades) + 1})
            trades += page
            more = len(page) >= BINANCE_PAGE
        return trades

    async def of_order(self, symbol: str, order_id: str, since_ms: int, now_ms: int) -> list[dict]:
        """By ``orderId``, pages of 1000 by ``fromId``."""
        params: dict[str, Any] = {"orderId": order_id}
        trades: list[dict] = []
        while True:
            page = await self._calls.call(self._exchange.fetch_my_trades, symbol, None, BINANCE_PAGE, params)
            trades += page
            if len(page) < BINANCE_PAGE:
                return trades
            params = {"orderId": order_id, "fromId": _newest_id(trades) + 1}


class BybitTrades(AccountTrades):
    async def since(self, symbol: str, since_ms: int, now_ms: int) -> list[dict]:
        return _from(await self._windows(symbol, since_ms, now_ms, {}), since_ms)

    async def of_order(self, symbol: str, order_id: str, since_ms: int, now_ms: int) -> list[dict]:
        # Without a time Bybit answers the last 7 days: enough unless the order is older.
        start = since_ms if since_ms < now_ms - BYBIT_WINDOW_MS else None
        return await self._windows(symbol, start, now_ms, {"orderId": order_id})

    async def _windows(self, symbol: str, start: int | None, now_ms: int, extra: Mapping[str, Any]) -> list[dict]:
        """Every 7-day window from ``start`` to now (None: Bybit's default, the last 7 days)."""
        market = await self._market(symbol)
        # Spot only (live accounts trade spot, ADR 0022); execType: trades, not funding or settlement.
        base = {"category": "spot", "symbol": market["id"], "execType": "Trade", "limit": BYBIT_PAGE, **extra}
        if start is None:
            return self._parsed(await self._pages(base), market, symbol)
        rows: list[dict] = []
        while True:
            end = start + BYBIT_WINDOW_MS - 1
            # The last window gives only its start: Bybit ends it 7 days later, after now.
            window = {"startTime": start, "endTime": end} if end < now_ms else {"startTime": start}
            rows += await self._pages({**base, **window})
            if end >= now_ms:
                return self._parsed(rows, market, symbol)
            start = end + 1

    async def _pages(self, request: Mapping[str, Any]) -> list[dict]:
        """One window, page by page (``cursor``) until ``nextPageCursor`` is empty."""
        rows: list[dict] = []
        cursor = ""
        while True:
            params = {**request, "cursor": cursor} if cursor else dict(request)
            answer = await self._calls.call(self._exchange.privateGetV5ExecutionList, params)
            result = _dict(_dict(answer).get("result"))
            page = result.get("list")
            if not isinstance(page, list):
                raise UnreadableAnswer(f"bybit execution/list without a list: {str(answer)[:200]}")
            rows += page
            following = str(result.get("nextPageCursor") or "")
            if not page or not following:
                return rows
            if following == cursor:
                raise UnreadableAnswer("bybit execution/list: nextPageCursor did not move")
            cursor = following


class OkxTrades(AccountTrades):
    async def since(self, symbol: str, since_ms: int, now_ms: int) -> list[dict]:
        # ``begin`` may be exclusive: from the millisecond before, the rest filtered below.
        return _from(await self._pages(symbol, {"begin": str(since_ms - 1)}), since_ms)

    async def of_order(self, symbol: str, order_id: str, since_ms: int, now_ms: int) -> list[dict]:
        return await self._pages(symbol, {"ordId": order_id})

    async def _pages(self, symbol: str, extra: Mapping[str, Any]) -> list[dict]:
        """fills-history, newest first, back by ``after`` (the oldest billId read) until a page is short."""
        market = await self._market(symbol)
        request = {"instType": "SPOT", "instId": market["id"], "limit": str(OKX_PAGE), **extra}
        rows: list[dict] = []
        after: int | None = None
        while True:
            params = {**request, "after": str(after)} if after is not None else request
            answer = await self._calls.call(self._exchange.privateGetTradeFillsHistory, params)
            page = _dict(answer).get("data")
            if not isinstance(page, list):
                raise UnreadableAnswer(f"okx fills-history without data: {str(answer)[:200]}")
            rows += page
            if len(page) < OKX_PAGE:
                return self._parsed(rows, market, symbol)
            bills = [int(r["billId"]) for r in page if isinstance(r, dict) and str(r.get("billId", "")).isdigit()]
            if not bills or (after is not None and min(bills) >= after):
                raise UnreadableAnswer("okx fills-history: a full page without an older billId to go on from")
            after = min(bills)


class KrakenTrades(AccountTrades):
    async def since(self, symbol: str, since_ms: int, now_ms: int) -> list[dict]:
        await self._market(symbol)
        # ``start`` is exclusive and in seconds: from the second before, the rest filtered by ms.
        request = {"start": str(since_ms // 1000 - 1)}
        rows: dict[str, dict] = {}
        offset = 0
        while True:
            answer = await self._calls.call(self._exchange.privatePostTradesHistory, {**request, "ofs": offset})
            result = _dict(_dict(answer).get("result"))
            page, count = result.get("trades"), result.get("count")
            if not isinstance(page, dict) or not isinstance(count, int):
                raise UnreadableAnswer(f"kraken TradesHistory without trades and count: {str(answer)[:200]}")
            for txid, row in page.items():  # ccxt's fetch_my_trades names each row by its key too
                rows[txid] = {**_dict(row), "id": txid}
            offset += len(page)
            if not page or offset >= count:
                break
        # All pairs come back: ccxt's parser names each row's market, the others are left out.
        return _from(self._parsed(rows.values(), None, symbol), since_ms)

    async def of_order(self, symbol: str, order_id: str, since_ms: int, now_ms: int) -> list[dict]:
        market = await self._market(symbol)
        answer = await self._calls.call(self._exchange.privatePostQueryOrders, {"txid": order_id, "trades": True})
        order = _dict(_dict(_dict(answer).get("result")).get(order_id))
        ids = [str(txid) for txid in order.get("trades") or []]
        rows: list[dict] = []
        for first in range(0, len(ids), KRAKEN_QUERY_TRADES_MAX):
            batch = ids[first:first + KRAKEN_QUERY_TRADES_MAX]
            answer = await self._calls.call(self._exchange.privatePostQueryTrades, {"txid": ",".join(batch)})
            rows += [{**_dict(row), "id": txid} for txid, row in _dict(_dict(answer).get("result")).items()]
        return self._parsed(rows, market, symbol)


READERS: Mapping[str, type[AccountTrades]] = {
    "binance": BinanceTrades, "bybit": BybitTrades, "okx": OkxTrades, "kraken": KrakenTrades,
}


def account_trades(exchange: Any, calls: ExchangeCalls) -> AccountTrades:
    """The reader of the account's trades at ``exchange`` (a ccxt client)."""
    return READERS.get(exchange.id, AccountTrades)(exchange, calls)


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _time_order(trade: Mapping[str, Any]) -> tuple[int, int, int | str]:
    timestamp = trade.get("timestamp")
    trade_id = str(trade.get("id"))
    return (timestamp if isinstance(timestamp, int) else 0,) + ((0, int(trade_id)) if trade_id.isdigit()
                                                              else (1, trade_id))


def _from(trades: list[dict], since_ms: int) -> list[dict]:
    """The trades at or after ``since_ms`` (the exchange's window may start earlier); one without a
    time is kept for the broker to report."""
    return [t for t in trades if not isinstance(t.get("timestamp"), int) or t["timestamp"] >= since_ms]


def _newest_id(trades: list[dict]) -> int:
    """The highest numeric trade id read (Binance's ids grow per symbol)."""
    ids = [int(t["id"]) for t in trades if str(t.get("id") or "").isdigit()]
    if not ids:
        raise UnreadableAnswer("a full page of trades without a numeric id: cannot ask for the next page")
    return max(ids)
