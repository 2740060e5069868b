"""Which markets an account can trade, their steps where known, and each order's fill rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from tradeflow.messages import Order
from tradeflow_trading.accounts import AccountConfig
from tradeflow_trading.fills import FillRule
from tradeflow_trading.order_checks import order_problem


@dataclass(frozen=True, slots=True)
class MarketSteps:
    exchange: str
    symbol: str
    price_step: Decimal
    quantity_step: Decimal


class Markets:
    """Markets with known steps. Where an exchange has any, its other symbols are unknown;
    an exchange without any takes every well-formed ``BASE/QUOTE`` symbol (paper accounts)."""

    def __init__(self, markets: Iterable[MarketSteps] = (), participation: Decimal | None = None) -> None:
        self._steps = {(m.exchange, m.symbol): m for m in markets}
        self._listed_exchanges = {m.exchange for m in self._steps.values()}
        self._participation = participation
        self._rules: dict[tuple[str, str, str], FillRule] = {}

    def steps(self, exchange: str, symbol: str) -> MarketSteps | None:
        return self._steps.get((exchange, symbol))

    def problem(self, order: Order, account: AccountConfig | None) -> str | None:
        """Why ``order`` cannot go to a broker, or None (design.md's bad input, with a reason)."""
        if account is None:
            return f"unknown_account: no account {order.account_id!r} in TRADEFLOW_ACCOUNTS"
        if order.exchange != account.exchange:
            return f"unknown_market: account {account.id} trades on {account.exchange}, not {order.exchange}"
        steps = self.steps(order.exchange, order.symbol)
        if steps is None and order.exchange in self._listed_exchanges:
            return f"unknown_market: {order.symbol} is not a market of {order.exchange}"
        return order_problem(order, price_step=steps.price_step if steps else None,
                             quantity_step=steps.quantity_step if steps else None)

    def fill_rule(self, account: AccountConfig, exchange: str, symbol: str) -> FillRule:
        """The account's fees and slippage with the market's steps and the participation cap."""
        key = (account.id, exchange, symbol)
        rule = self._rules.get(key)
        if rule is None:
            rule = dataclasses.replace(account.fill_rule(), participation=self._participation)
            steps = self.steps(exchange, symbol)
            if steps is not None:
                rule = dataclasses.replace(rule, price_step=steps.price_step, quantity_step=steps.quantity_step)
            self._rules[key] = rule
        return rule
