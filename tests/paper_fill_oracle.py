"""design.md's paper fill rule written out plainly, to check the execution service against.

Only what the end-to-end tests place: good-till-canceled market orders (base- or quote-sized)
and limit orders, no participation cap, no reduce-only. A symbol's trades are taken in the
order md.ticks.v1 holds them; an order meets those at or after its ts_event:

- market: the first one, its price moved against the order by the slippage and rounded
  half-even to the price step; a quote-sized buy gets ``quote / (price x (1 + taker))`` cut
  down to the lot; taker fee;
- limit: the first one reaching the limit fills at the limit, as a taker if it is the very
  first one the order meets, else as a maker.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext

from tradeflow.messages import Order, Tick

Expected = tuple[str, Decimal, Decimal, Decimal, str]  # fill id, quantity, price, fee, liquidity


def expected_fill(order: Order, trades: list[Tick], *, maker: Decimal, taker: Decimal, slippage_bps: Decimal,
                  price_step: Decimal, lot: Decimal) -> Expected | None:
    with localcontext() as ctx:
        ctx.prec = 50
        eligible = [t for t in trades if t.symbol == order.symbol and t.ts_event >= order.ts_event]
        if not eligible:
            return None
        if order.order_type == "market":
            trade = eligible[0]
            factor = 1 + slippage_bps / 10_000 if order.side == "buy" else 1 - slippage_bps / 10_000
            price = (Decimal(repr(trade.price)) * factor / price_step).to_integral_value(ROUND_HALF_EVEN) * price_step
            if order.quote_quantity is not None:
                quantity = (order.quote_quantity / (price * (1 + taker)) / lot).to_integral_value(ROUND_DOWN) * lot
            else:
                quantity = order.quantity
            return (f"{order.client_order_id}:{trade.trade_id}", quantity, price, quantity * price * taker, "taker")
        for n, trade in enumerate(eligible):
            traded = Decimal(repr(trade.price))
            if (traded <= order.limit_price) if order.side == "buy" else (traded >= order.limit_price):
                rate, liquidity = (taker, "taker") if n == 0 else (maker, "maker")
                price = order.limit_price
                return (f"{order.client_order_id}:{trade.trade_id}", order.quantity, price,
                        order.quantity * price * rate, liquidity)
        return None
