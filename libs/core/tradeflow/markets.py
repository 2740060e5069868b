"""Exchange names, symbols and market keys: one validation for every service (design.md, "Topics").

A market is an exchange and a symbol; its key on the market-data topics is ``exchange:symbol``
(``binance:BTC/USDT``). Exchange names are ccxt ids or our own (``synthetic``): a letter or
digit, then letters, digits, ``_``, ``.`` or ``-``, at most 64, so never a ``:``. Symbols are
as ccxt writes them (``BTC/USDT``, ``BTC/USDT:USDT``, ``AAPL``): a letter or digit, then letters,
digits, ``/ : _ . + -``, at most 64. A key is split at its first ``:``, which is therefore
always the separator.

A service may ask more of a symbol for what it does (ingest serves spot pairs ``BASE/QUOTE``:
:func:`spot_pair_problem`; the strategy service's signal ids need symbols without ``:``), never
less: every such rule starts from :func:`symbol_problem`.

For request and settings models: :data:`ExchangeName`, :data:`SymbolName` and
:data:`SpotPairName` are ``str`` with these patterns.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

EXCHANGE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9/_.:+-]{0,63}$"
SPOT_PAIR_PATTERN = r"^[A-Za-z0-9._-]{1,32}/[A-Za-z0-9._-]{1,32}$"  # ccxt's unified spot symbols
KEY_SEPARATOR = ":"

_EXCHANGE = re.compile(EXCHANGE_PATTERN)
_SYMBOL = re.compile(SYMBOL_PATTERN)
_SPOT_PAIR = re.compile(SPOT_PAIR_PATTERN)

ExchangeName = Annotated[str, Field(pattern=EXCHANGE_PATTERN, min_length=1, max_length=64,
                                    description="exchange name, e.g. binance")]
SymbolName = Annotated[str, Field(pattern=SYMBOL_PATTERN, min_length=1, max_length=64,
                                  description="symbol as ccxt writes it, e.g. BTC/USDT or AAPL")]
SpotPairName = Annotated[str, Field(pattern=SPOT_PAIR_PATTERN, min_length=3, max_length=65,
                                    description="unified spot symbol BASE/QUOTE, e.g. BTC/USDT")]


def exchange_problem(exchange: str) -> str | None:
    """Why ``exchange`` is not an exchange name, or None."""
    if not isinstance(exchange, str) or not _EXCHANGE.fullmatch(exchange):
        return f"exchange: {exchange!r} must be 1-64 letters, digits, '_', '.' or '-' (e.g. binance)"
    return None


def symbol_problem(symbol: str) -> str | None:
    """Why ``symbol`` is not a symbol, or None."""
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
        return f"symbol: {symbol!r} must be 1-64 letters, digits, '/', ':', '_', '.', '+' or '-' (e.g. BTC/USDT, AAPL)"
    return None


def spot_pair_problem(symbol: str) -> str | None:
    """Why ``symbol`` is not a unified spot pair ``BASE/QUOTE``, or None."""
    if not isinstance(symbol, str) or not _SPOT_PAIR.fullmatch(symbol):
        return f"symbol {symbol!r} is not a unified spot symbol like 'BTC/USDT'"
    return None


def instrument_problem(exchange: str, symbol: str) -> str | None:
    """Why ``exchange``/``symbol`` is not a market, or None (the exchange is checked first)."""
    return exchange_problem(exchange) or symbol_problem(symbol)


def market_key(exchange: str, symbol: str) -> str:
    """The topics' key of a market: ``exchange:symbol``."""
    return f"{exchange}{KEY_SEPARATOR}{symbol}"


def parse_market_key(key: str | bytes | None) -> tuple[str, str] | None:
    """``'binance:BTC/USDT'`` (or its bytes) -> ``('binance', 'BTC/USDT')``; None for a key that
    is not a valid exchange and symbol."""
    if not key:
        return None
    text = key.decode("utf-8", "replace") if isinstance(key, bytes | bytearray) else key
    exchange, sep, symbol = text.partition(KEY_SEPARATOR)
    if not sep or instrument_problem(exchange, symbol) is not None:
        return None
    return exchange, symbol


def split_market_key(key: str | bytes) -> tuple[str, str]:
    """:func:`parse_market_key`, raising ValueError (quoting the key) where it answers None."""
    market = parse_market_key(key)
    if market is None:
        raise ValueError(f"market key must be 'exchange:symbol', got {key!r}")
    return market
