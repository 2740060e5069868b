"""The fill rule that paper trading and backtests share (design.md, "Fills").

- A **market** order fills at the price of the first trade of its symbol with an event time at
  or after the order's ``ts_event``, moved against the order by the account's slippage (basis
  points); on candles alone (a backtest) that price is the next candle's open.
- A **limit** order fills at its limit price once a trade reaches it (a buy when a trade is at
  or below the limit, a sell at or above).
- The fee is the account's maker (resting limit orders) or taker (market orders, and limit
  orders that fill on arrival) rate on the notional, paid in the quote currency.
- A quote-sized market buy (``quote_quantity``) spends at most that amount including its fee:
  ``quantity = quote / (price x (1 + taker))`` cut down to the quantity step.
- With a ``participation`` cap an order takes at most that share of one trade's amount; the
  rest waits for the next trades (partial fills). Off by default: an order then fills whole at
  its trade, as the backtest's candle rule does.

Paper fills are thereby a pure function of the market data and the order: the execution
service and ``tradeflow backtest`` call the same :class:`FillRule`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tradeflow.messages import Fill, Order

from tradeflow_trading.fees import FeeSchedule, Liquidity
from tradeflow_trading.ids import paper_fill_id
from tradeflow_trading.money import (
    DEFAULT_PRICE_STEP,
    DEFAULT_QUANTITY_STEP,
    ONE,
    ZERO,
    div,
    from_bps,
    mul,
    quantize_down,
    quantize_price,
)
from tradeflow_trading.positions import split_symbol


def limit_reached(side: str, limit_price: Decimal, trade_price: Decimal) -> bool:
    """A trade at ``trade_price`` reaches a limit order on ``side`` at ``limit_price``."""
    return trade_price <= limit_price if side == "buy" else trade_price >= limit_price


def quantity_for_quote(quote: Decimal, price: Decimal, taker: Decimal, quantity_step: Decimal) -> Decimal:
    """Base quantity a market buy of ``quote`` gets at ``price`` paying the ``taker`` rate on it:
    ``quote / (price x (1 + taker))`` cut down to ``quantity_step`` (the fill rule, and the
    minimum-size rule of tradeflow_trading.sizing)."""
    return quantize_down(div(quote, mul(price, ONE + taker)), quantity_step)


@dataclass(frozen=True, slots=True)
class FillQuote:
    """What a fill would be: quantity, price, fee and liquidity (before it becomes a Fill)."""

    quantity: Decimal
    price: Decimal
    fee: Decimal
    liquidity: Liquidity


@dataclass(frozen=True, slots=True)
class FillRule:
    """An account's fees and slippage, and the steps quantities and prices are cut to."""

    fees: FeeSchedule
    slippage_bps: Decimal = ZERO
    quantity_step: Decimal = DEFAULT_QUANTITY_STEP
    price_step: Decimal = DEFAULT_PRICE_STEP
    participation: Decimal | None = None  # at most this share of a trade's amount per order (0 < x <= 1)

    def __post_init__(self) -> None:
        if self.participation is not None and not ZERO < self.participation <= ONE:
            raise ValueError(f"participation must be in (0, 1], got {self.participation}")

    def available(self, trade_amount: Decimal) -> Decimal | None:
        """What one order may take of a trade of ``trade_amount`` (None: no cap)."""
        if self.participation is None:
            return None
        return quantize_down(mul(trade_amount, self.participation), self.quantity_step)

    def slipped(self, price: Decimal, side: str) -> Decimal:
        """``price`` moved against an order on ``side`` by the slippage."""
        if self.slippage_bps == 0:
            return price
        factor = ONE + from_bps(self.slippage_bps) if side == "buy" else ONE - from_bps(self.slippage_bps)
        return quantize_price(mul(price, factor), self.price_step)

    def quantity_for_quote(self, quote: Decimal, price: Decimal) -> Decimal:
        """Base quantity a buy of ``quote`` (fee included) gets at ``price`` (already slipped), cut to the step."""
        return quantity_for_quote(quote, price, self.fees.taker, self.quantity_step)

    def market_fill(self, side: str, trade_price: Decimal, *, quantity: Decimal | None = None,
                    quote_quantity: Decimal | None = None) -> FillQuote | None:
        """A market fill at the trade price ``trade_price`` without an :class:`Order` (the
        backtest's hot path): ``quantity`` base units, or a buy of ``quote_quantity``."""
        price = self.slipped(trade_price, side)
        if quote_quantity is not None:
            quantity = self.quantity_for_quote(quote_quantity, price)
        return self._taker(quantity, price)

    def market(self, order: Order, trade_price: Decimal, remaining: Decimal | None = None,
               available: Decimal | None = None, remaining_quote: Decimal | None = None) -> FillQuote | None:
        """The fill of a market order at the first trade at or after its ``ts_event``.

        ``remaining`` is the base quantity still open (default: the order's quantity);
        ``available`` caps it (e.g. a share of the trade's volume for partial fills). A
        quote-sized order spends ``remaining_quote`` (default: its whole ``quote_quantity``;
        after a partial fill, what its fills have not spent yet, fees included). None when the
        order would fill nothing (a quote amount too small for one quantity step).
        """
        price = self.slipped(trade_price, order.side)
        if order.quote_quantity is not None:
            quote = order.quote_quantity if remaining_quote is None else remaining_quote
            quantity = self.quantity_for_quote(quote, price)
        else:
            quantity = remaining if remaining is not None else order.quantity
        if available is not None and quantity is not None:
            quantity = min(quantity, quantize_down(available, self.quantity_step))
        return self._taker(quantity, price)

    def _taker(self, quantity: Decimal | None, price: Decimal) -> FillQuote | None:
        if quantity is None or quantity <= 0:
            return None
        return FillQuote(quantity, price, self.fees.fee(mul(quantity, price), "taker"), "taker")

    def limit(self, order: Order, trade_price: Decimal, *, resting: bool, remaining: Decimal | None = None,
              available: Decimal | None = None) -> FillQuote | None:
        """The fill of a limit order by a trade at ``trade_price``, or None when it does not reach it.

        ``resting``: the order was on the book before this trade (maker); otherwise it crossed
        on arrival (taker).
        """
        if order.limit_price is None or not limit_reached(order.side, order.limit_price, trade_price):
            return None
        quantity = remaining if remaining is not None else order.quantity
        if available is not None:
            quantity = min(quantity, quantize_down(available, self.quantity_step))
        if quantity is None or quantity <= 0:
            return None
        liquidity: Liquidity = "maker" if resting else "taker"
        price = order.limit_price
        return FillQuote(quantity, price, self.fees.fee(mul(quantity, price), liquidity), liquidity)

    @staticmethod
    def to_fill(order: Order, quote: FillQuote, *, trade_id: str, ts_event: int) -> Fill:
        """The exec.fills.v1 message of ``quote``, named by the order and the trade that filled it."""
        _, quote_currency = split_symbol(order.symbol)
        return Fill(
            fill_id=paper_fill_id(order.client_order_id, trade_id), client_order_id=order.client_order_id,
            account_id=order.account_id, exchange=order.exchange, symbol=order.symbol, side=order.side,
            quantity=quote.quantity, price=quote.price, fee=quote.fee, fee_currency=quote_currency,
            liquidity=quote.liquidity, strategy_id=order.strategy_id, ts_event=ts_event)
