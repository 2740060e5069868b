"""The daily report of an account: P&L, trades, win rate, drawdown and open positions.

Computed from the fills and order events the notifier has seen, with the shared trading
domain's arithmetic (positions are the fold of fills, ``tradeflow_trading.positions``), so the
figures agree with what execution and the backtest compute from the same fills:

- **P&L** per currency: the price P&L realized by the period's fills, less the fees paid in
  that currency during the period (fees in another currency are listed on their own).
- **trades**: the period's fills; a fill that reduces a position *closes* (part of) a trade,
  and is a win when it realized more than zero, a loss when less.
- **win rate**: wins over closing fills (none without closing fills).
- **max drawdown** per currency: the largest fall of the period's running net P&L from its
  highest point (which starts at 0 at the period start).
- **open positions** at the period end (quantity and average price; the notifier reads no
  market data, so no unrealized P&L).

The period is one day ending at the report time: [end - 1 day, end).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from tradeflow.messages import Fill, OrderEvent
from tradeflow_trading.money import ZERO
from tradeflow_trading.positions import Position, split_symbol

# The order statuses the report counts (an order's end, or its submission).
COUNTED_ORDER_STATUSES = ("submitted", "filled", "canceled", "rejected", "expired")


@dataclass(frozen=True, slots=True)
class CurrencyPnl:
    currency: str
    realized: Decimal
    fees: Decimal
    net: Decimal
    max_drawdown: Decimal


@dataclass(frozen=True, slots=True)
class OpenPosition:
    exchange: str
    symbol: str
    side: str
    quantity: Decimal
    average_price: Decimal


@dataclass(frozen=True, slots=True)
class DailyReport:
    account_id: str
    period_start_ns: int
    period_end_ns: int
    pnl: tuple[CurrencyPnl, ...]
    trades: int
    closing_trades: int
    wins: int
    losses: int
    win_rate: Decimal | None  # a fraction (0.5 is half); None without closing trades
    open_positions: tuple[OpenPosition, ...]
    orders: dict[str, int]

    @property
    def is_empty(self) -> bool:
        """Nothing happened and nothing is open: no report is worth sending."""
        return self.trades == 0 and not self.open_positions and not any(self.orders.values())


def daily_report(account_id: str, fills: Iterable[Fill], order_events: Iterable[OrderEvent],
                 period_start_ns: int, period_end_ns: int) -> DailyReport:
    """The report of [period_start, period_end) from every fill of the account up to the end (in
    the order they happened) and the order events of the period."""
    positions: dict[tuple[str, str], Position] = {}
    realized: dict[str, Decimal] = {}
    fees: dict[str, Decimal] = {}
    running: dict[str, Decimal] = {}
    peak: dict[str, Decimal] = {}
    drawdown: dict[str, Decimal] = {}
    trades = closing = wins = losses = 0
    for fill in fills:
        if fill.ts_event >= period_end_ns:
            continue
        key = (fill.exchange, fill.symbol)
        before = positions.get(key) or Position(account_id, fill.exchange, fill.symbol)
        after = before.apply(fill)
        positions[key] = after
        if fill.ts_event < period_start_ns:
            continue
        trades += 1
        quote = split_symbol(fill.symbol)[1]
        gained = after.realized_pnl - before.realized_pnl
        reduces = before.quantity != 0 and (before.quantity > 0) != (fill.side == "buy")
        if reduces:
            closing += 1
            wins += gained > 0
            losses += gained < 0
        realized[quote] = realized.get(quote, ZERO) + gained
        fees[fill.fee_currency] = fees.get(fill.fee_currency, ZERO) + fill.fee
        changes = {quote: gained}
        changes[fill.fee_currency] = changes.get(fill.fee_currency, ZERO) - fill.fee
        for currency, change in changes.items():  # one step per fill, fee included
            running[currency] = running.get(currency, ZERO) + change
            peak[currency] = max(peak.get(currency, ZERO), running[currency])
            drawdown[currency] = max(drawdown.get(currency, ZERO), peak[currency] - running[currency])
    currencies = sorted(set(realized) | set(fees))
    pnl = tuple(CurrencyPnl(c, realized.get(c, ZERO), fees.get(c, ZERO), realized.get(c, ZERO) - fees.get(c, ZERO),
                            drawdown.get(c, ZERO)) for c in currencies)
    open_positions = tuple(
        OpenPosition(p.exchange, p.symbol, p.side, abs(p.quantity), p.average_price)
        for _, p in sorted(positions.items()) if not p.is_flat)
    counted = Counter(e.status for e in order_events
                      if period_start_ns <= e.ts_event < period_end_ns and e.status in COUNTED_ORDER_STATUSES)
    return DailyReport(
        account_id, period_start_ns, period_end_ns, pnl, trades, closing, wins, losses,
        Decimal(wins) / Decimal(closing) if closing else None, open_positions,
        {status: counted.get(status, 0) for status in COUNTED_ORDER_STATUSES})
