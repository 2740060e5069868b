"""The paper broker: the broker port of paper accounts, on the paper exchange and md.ticks.v1.

:class:`PaperMarket` is the paper exchange of every paper account plus the history it may
need (trades read back from md.ticks.v1). :class:`PaperBroker` is one account's broker on it.
Paper places and cancels at once, inside the process (``in_process``: the service stores an
order together with what paper did with it), so no call ends with an unknown outcome. An order
stored as submitted all the same is placed on :meth:`PaperBroker.resolve`: since paper fills are a
function of the log, placing it now gives the fills it would have had.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from tradeflow.messages import Order, OrderAmendment, Tick
from tradeflow_trading.accounts import AccountConfig
from tradeflow_trading.matching import MatchProgress
from tradeflow_trading.money import to_decimal

from tradeflow_execution.adapters.tick_history import TickHistory
from tradeflow_execution.domain.broker import (
    AmendRefused,
    BrokerSnapshot,
    BrokerState,
    BrokerUpdate,
    OpenOrder,
    OrderAmended,
    OrderUpdate,
)
from tradeflow_execution.domain.markets import Markets
from tradeflow_execution.domain.paper_exchange import PaperExchange

Clock = Callable[[], int]


class PaperMarket:
    """The paper exchange with its history reader; the service feeds it every consumed trade."""

    def __init__(self, exchange_factory: Callable[[], PaperExchange], history: TickHistory,
                 on_history_read: Callable[[], None] = lambda: None) -> None:
        self._exchange_factory = exchange_factory
        self.exchange = exchange_factory()
        self._history = history
        self._on_history_read = on_history_read
        # Kept when the exchange is reset: the latest price per market, the last offset per partition.
        self._marks: dict[tuple[str, str], float] = {}
        self._consumed: dict[int, int] = {}

    async def place(self, order: Order, rule) -> list[BrokerUpdate]:
        if self.exchange.covers(order):
            return self.exchange.place(order, rule)
        self._on_history_read()
        trades, end = await self._history.trades_since(order.exchange, order.symbol, order.ts_event,
                                                       self.consumed_through)
        return self.exchange.place(order, rule, history=trades, history_end=end)

    # --- TradeDriven ------------------------------------------------------------------------------

    def on_trade(self, tick: Tick, partition: int, offset: int) -> list[BrokerUpdate]:
        self._marks[(tick.exchange, tick.symbol)] = tick.price
        if offset > self._consumed.get(partition, -1):
            self._consumed[partition] = offset
        return self.exchange.on_trade(tick, partition, offset)

    def consumed_through(self, partition: int) -> int:
        """The last offset of ``partition`` consumed live in this process (-1: none)."""
        return self._consumed.get(partition, -1)

    def mark(self, exchange: str, symbol: str) -> Decimal | None:
        price = self._marks.get((exchange, symbol))
        return None if price is None else to_decimal(price)

    def reset(self) -> None:
        """Forget every order and trade: the service restores its open orders next."""
        self.exchange = self._exchange_factory()


class PaperBroker:
    """The broker of one paper account."""

    in_process = True

    def __init__(self, account: AccountConfig, market: PaperMarket, markets: Markets, clock: Clock) -> None:
        self.account_id = account.id
        self._account = account
        self._market = market
        self._markets = markets
        self._clock = clock

    def _rule(self, order: Order):
        return self._markets.fill_rule(self._account, order.exchange, order.symbol)

    async def submit(self, order: Order) -> list[BrokerUpdate]:
        accepted = OrderUpdate(order.client_order_id, "accepted", self._clock(),
                               exchange_order_id=f"paper-{order.client_order_id}")
        return [accepted, *await self._market.place(order, self._rule(order))]

    async def cancel(self, client_order_id: str, reason: str) -> list[BrokerUpdate]:
        self._market.exchange.cancel(client_order_id)
        return [OrderUpdate(client_order_id, "canceled", self._clock(), reason=reason)]

    async def amend(self, amendment: OrderAmendment) -> list[BrokerUpdate]:
        if amendment.quantity is None and amendment.limit_price is None:
            raise AmendRefused("an amendment changes the quantity, the limit price or both")
        order = self._market.exchange.amend(amendment.client_order_id, quantity=amendment.quantity,
                                            limit_price=amendment.limit_price)
        return [OrderAmended(amendment.client_order_id, amendment.amendment_id, order, self._clock())]

    async def resolve_amendment(self, amendment: OrderAmendment, order: Order,
                                exchange_order_id: str) -> list[BrokerUpdate]:
        return await self.amend(amendment)  # paper stores an amendment with its outcome: never left sent

    async def resolve(self, order: Order) -> list[BrokerUpdate]:
        return await self.submit(order)

    async def restore(self, open_order: OpenOrder) -> list[BrokerUpdate]:
        state = open_order.broker_state
        if "cursor" not in state:  # stored without its place in the log: meet the history again
            raise ValueError(f"paper order {open_order.order.client_order_id} was stored without its cursor")
        progress = MatchProgress(open_order.filled_quantity, open_order.spent_quote, bool(state.get("arrived")))
        order = open_order.order
        self._market.exchange.restore(order, self._rule(order), progress, int(state["cursor"]))
        return []

    async def snapshot(self, fills_since_ns: int) -> BrokerSnapshot:
        return BrokerSnapshot(open_orders=self._market.exchange.resting(self.account_id))

    def broker_state(self, client_order_id: str) -> BrokerState:
        return self._market.exchange.state_of(client_order_id)
