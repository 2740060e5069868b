"""The simulated account of a backtest: cash, positions, orders and fills, exact.

Everything that moves money is the shared trading domain (ADR 0015), the same functions paper
trading uses: orders are :class:`tradeflow.messages.Order` with client order ids derived from
signal ids, they move along the order state table (:class:`OrderState`), fills come from the
account's :class:`FillRule` and are folded into :class:`Position` and :class:`Balances`.

On candles (design.md, "Fills"): a market order fills at the open of its market's next candle
(the first trade at or after the deciding candle's end), moved against it by the slippage; a
limit order fills at its limit price on the first candle whose range reaches it (maker: it was
resting). Intents become orders here:

- ``enter_long`` with a quantity buys it; without one, the sizing rule gives the quote amount
  (default: all available cash) and the order is a quote-sized market buy. An entry without a
  quantity while a position is held (or being bought) is ignored: no pyramiding by default.
- ``exit`` sells the whole position; ignored when flat.
- ``target`` buys or sells the difference to the wanted quantity.

An unsized entry too small to ever fill at its decision price (less than one quantity step,
fee included: ``tradeflow_trading.sizing.below_minimum``, the rule risk rejects it by) is
skipped as ``below_minimum_size``. A buy that the cash cannot pay for when it fills is rejected
(``insufficient_cash``), as an exchange would; so is one that the price moved below one
quantity step by its fill. Spot only: nothing sells more than is held.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from tradeflow.messages import Fill, Order
from tradeflow_trading.fills import FillQuote, FillRule
from tradeflow_trading.ids import NS_PER_MS, client_order_id_for_signal
from tradeflow_trading.money import ZERO, div, mul, quantize_price, to_decimal
from tradeflow_trading.orders import OrderState
from tradeflow_trading.positions import Balances, Position
from tradeflow_trading.sizing import (
    BELOW_MINIMUM_SIZE,
    EntryMinimums,
    FixedQuote,
    FractionOfCash,
    FractionOfEquity,
    Size,
    below_minimum,
    entry_quote,
)
from tradeflow_trading.strategy.intents import Intent

from tradeflow_backtest.result import Trade, Unfilled


def sized_entry(sizing: FixedQuote | FractionOfCash | FractionOfEquity, fill_rule: FillRule, *, cash: Decimal,
                equity: Decimal, price: Decimal) -> tuple[Decimal, str | None]:
    """The quote amount an unsized entry at decision ``price`` spends, and why it is refused
    (None: it is not): ``insufficient_cash`` for nothing or more than the cash (as risk refuses
    it), ``below_minimum_size`` for less than one quantity step (the rule risk shares)."""
    quote = entry_quote(sizing, free_cash=cash, equity=equity)
    if quote <= 0:
        return quote, "insufficient_cash"
    if below_minimum(Size(quote=quote), price, EntryMinimums(fill_rule.quantity_step),
                     taker_fee=fill_rule.fees.taker) is not None:
        return quote, BELOW_MINIMUM_SIZE
    if quote > cash:
        return quote, "insufficient_cash"
    return quote, None


@dataclass(slots=True)
class _OpenTrade:
    entry_ts: int
    bought: Decimal = ZERO
    bought_notional: Decimal = ZERO
    sold: Decimal = ZERO
    sold_notional: Decimal = ZERO
    fees: Decimal = ZERO


@dataclass(slots=True)
class _Pending:
    state: OrderState
    intent: Intent | None


class SimulatedBroker:
    """One account on one exchange, its cash in one quote currency."""

    def __init__(self, *, account_id: str, exchange: str, quote_currency: str, cash: Decimal, fill_rule: FillRule,
                 sizing: FixedQuote | FractionOfCash | FractionOfEquity, instance_id: str = "backtest") -> None:
        self.account_id = account_id
        self.exchange = exchange
        self.quote_currency = quote_currency
        self.fill_rule = fill_rule
        self.sizing = sizing
        self.instance_id = instance_id
        self.balances = Balances.of({quote_currency: cash})
        self.positions: dict[str, Position] = {}
        self.orders: dict[str, list[_Pending]] = defaultdict(list)  # open orders by symbol
        self.trades: list[Trade] = []
        self.unfilled: list[Unfilled] = []
        self.fills: list[Fill] = []
        self._open_trades: dict[str, _OpenTrade] = {}

    @property
    def cash(self) -> Decimal:
        return self.balances.get(self.quote_currency)

    def position(self, symbol: str) -> Position:
        position = self.positions.get(symbol)
        if position is None:
            position = self.positions[symbol] = Position(self.account_id, self.exchange, symbol)
        return position

    # --- intents and orders ------------------------------------------------------------------------

    def acts_on(self, intent: Intent) -> bool:
        """Whether ``intent`` asks for an order now (False: already in, nothing to sell, at target)."""
        position = self.position(intent.symbol).quantity
        if intent.kind == "enter_long":
            buying = any(p.state.order.side == "buy" for p in self.orders[intent.symbol])
            return intent.quantity is not None or (position <= 0 and not buying)  # an unsized entry does not add
        if intent.kind == "exit":
            return position > 0
        return intent.target_quantity != position

    def decide(self, intent: Intent, *, equity: Decimal) -> OrderState | None:
        """The order an intent asks for (submitted), or None when there is nothing to do."""
        if not self.acts_on(intent):
            return None
        position = self.position(intent.symbol).quantity
        side, quantity, quote = "buy", None, None
        if intent.kind == "enter_long":
            if intent.quantity is not None:
                quantity = intent.quantity
            else:
                quote, refused = sized_entry(self.sizing, self.fill_rule, cash=self.cash, equity=equity,
                                             price=intent.price)
                if refused is not None:
                    self.unfilled.append(Unfilled(intent, refused))
                    return None
        elif intent.kind == "exit":
            side, quantity = "sell", position
        else:  # target
            difference = intent.target_quantity - position
            side, quantity = ("buy", difference) if difference > 0 else ("sell", -difference)
        signal = intent.signal_id(self.instance_id, self.exchange)
        order = Order(client_order_id=client_order_id_for_signal(signal), account_id=self.account_id,
                      exchange=self.exchange, symbol=intent.symbol, side=side, order_type="market", quantity=quantity,
                      quote_quantity=quote, signal_id=signal, strategy_id=self.instance_id, decision_price=intent.price,
                      ts_event=intent.ts_end)
        return self.submit(order, intent)

    def submit(self, order: Order, intent: Intent | None = None) -> OrderState:
        """Queue an order: a market order fills at its market's next candle, a limit order once reached."""
        state = OrderState(order)
        self.orders[order.symbol].append(_Pending(state, intent))
        return state

    # --- candles ---------------------------------------------------------------------------------------

    def on_candle_open(self, symbol: str, ts_start: int, open_: float, high: float, low: float) -> list[Fill]:
        """A candle of ``symbol`` starts: its market orders fill at the open, then limit orders its range reaches."""
        pending = self.orders.get(symbol)
        if not pending:
            return []
        fills: list[Fill] = []
        still_open: list[_Pending] = []
        open_price = to_decimal(open_)
        for item in pending:
            order = item.state.order
            if order.order_type == "market":
                remaining = item.state.remaining_quantity
                quote = self.fill_rule.market(order, open_price, remaining=remaining)
            else:
                reach = to_decimal(low) if order.side == "buy" else to_decimal(high)
                quote = self.fill_rule.limit(order, reach, resting=True, remaining=item.state.remaining_quantity)
                if quote is None:
                    still_open.append(item)
                    continue
            fill = self._execute(item, quote, ts_start)
            if fill is not None:
                fills.append(fill)
        self.orders[symbol] = still_open
        return fills

    def _execute(self, item: _Pending, quote: FillQuote | None, ts_event: int) -> Fill | None:
        order = item.state.order
        reason = None
        if quote is None:
            reason = "insufficient_cash"  # a quote amount too small for one quantity step
        elif order.side == "buy":
            cost = mul(quote.quantity, quote.price) + quote.fee
            limit = order.quote_quantity if order.quote_quantity is not None else cost
            if cost > self.cash or cost > limit:
                reason = "insufficient_cash"
        elif quote.quantity > self.position(order.symbol).quantity:
            reason = "insufficient_position"
        if reason is not None:
            item.state = item.state.move("rejected", reason=reason)
            if item.intent is not None:
                self.unfilled.append(Unfilled(item.intent, reason))
            return None
        fill = FillRule.to_fill(order, quote, trade_id=f"candle-{ts_event // NS_PER_MS}", ts_event=ts_event)
        item.state = item.state.fill(quote.quantity, quote.price, complete=True)
        self._apply(fill)
        return fill

    def _apply(self, fill: Fill) -> None:
        after = self.position(fill.symbol).apply(fill)
        self.positions[fill.symbol] = after
        self.balances = self.balances.apply(fill)
        self.fills.append(fill)
        trade = self._open_trades.get(fill.symbol)
        if trade is None:
            trade = self._open_trades[fill.symbol] = _OpenTrade(fill.ts_event)
        notional = mul(fill.quantity, fill.price)
        if fill.side == "buy":
            trade.bought += fill.quantity
            trade.bought_notional += notional
        else:
            trade.sold += fill.quantity
            trade.sold_notional += notional
        trade.fees += fill.fee
        if after.quantity == 0:
            del self._open_trades[fill.symbol]
            self.trades.append(Trade(
                symbol=fill.symbol, entry_ts=trade.entry_ts, entry_price=quantize_price(div(trade.bought_notional, trade.bought)),
                exit_ts=fill.ts_event, exit_price=quantize_price(div(trade.sold_notional, trade.sold)),
                quantity=trade.bought, pnl=trade.sold_notional - trade.bought_notional - trade.fees, fees=trade.fees))
