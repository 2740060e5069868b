"""The execution service layer with the paper broker, on a test clock and an in-memory store.

What a user sees is what is published (the outbox: exec.orders.v1 transitions, exec.fills.v1
fills), what is stored, and the positions and balances; each test checks those.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from tradeflow.messages import AccountStatus, Alert, Fill, Order, OrderEvent, RiskEvent, Tick
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow_execution.adapters.paper_broker import PaperBroker, PaperMarket
from tradeflow_execution.domain.live import AccountMismatch, AccountPending
from tradeflow_execution.domain.markets import Markets, MarketSteps
from tradeflow_execution.domain.paper_exchange import LoggedTrade, PaperExchange
from tradeflow_execution.metrics import ExecutionMetrics
from tradeflow_execution.order_traces import OrderTracing
from tradeflow_execution.service import (
    ExecutionService,
    IncomingOrder,
    OrderFinished,
    OrderNotFound,
    OutputTopics,
)
from tradeflow_trading.accounts import AccountConfig
from tradeflow_trading.positions import Position

from services.execution.tests.unit.execution_memory import LogHistory, MemoryStore, StoreFailure

S = 1_000_000_000
T0 = 1_772_445_600 * S
PAPER = AccountConfig(id="paper-1", exchange="sim", balances={"USDT": D("10000")},
                      fees={"maker": D("0.0002"), "taker": D("0.001")}, slippage_bps=D("5"))
LIVE = AccountConfig(id="live-1", exchange="sim", mode="live")
MARKETS = [MarketSteps("sim", "BTC/USDT", D("0.01"), D("0.0001")), MarketSteps("sim", "ETH/USDT", D("0.01"), D("0.001"))]
TOPICS = OutputTopics(order_events="exec.orders.test", fills="exec.fills.test")


class Clock:
    def __init__(self) -> None:
        self.now = T0 + 3600 * S

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


class World:
    """The service as bootstrap wires it, with the store and md.ticks.v1 in memory."""

    def __init__(self, participation: D | None = None, window_trades: int = 100) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.history = LogHistory()
        self.offsets = {"BTC/USDT": 0, "ETH/USDT": 0}
        self.participation = participation
        self.window_trades = window_trades
        self.telemetry = Telemetry("test-execution", CommonSettings())
        self.metrics = ExecutionMetrics(self.telemetry)
        self.service = self.build()

    def build(self) -> ExecutionService:
        markets = Markets(MARKETS, participation=self.participation)
        service: ExecutionService

        def exchange() -> PaperExchange:
            return PaperExchange(position_of=lambda *key: service.position_quantity(*key),
                                 window_trades=self.window_trades, window_ns=600 * S)

        market = PaperMarket(exchange, self.history)
        service = ExecutionService(
            accounts=[PAPER, LIVE], brokers={PAPER.id: PaperBroker(PAPER, market, markets, self.clock)},
            trade_driven=[market], markets=markets, store=self.store, topics=TOPICS, metrics=self.metrics,
            tracing=OrderTracing(self.telemetry.tracer), clock=self.clock)
        return service

    async def restart(self) -> None:
        self.service = self.build()
        await self.service.start()

    def publish(self, symbol: str, trade_id: str, price: float, amount: float, ts: int) -> LoggedTrade:
        partition = 0 if symbol == "BTC/USDT" else 1
        tick = Tick(exchange="sim", symbol=symbol, trade_id=trade_id, price=price, amount=amount, side="buy",
                    ts_event=ts, ts_recv=ts)
        trade = LoggedTrade(tick, partition, self.offsets[symbol])
        self.offsets[symbol] += 1
        self.history.published.append(trade)
        return trade

    async def trade(self, symbol: str, trade_id: str, price: float, amount: float = 10.0, ts: int = T0) -> None:
        await self.service.handle_trades([self.publish(symbol, trade_id, price, amount, ts)])

    def published(self, kind: type) -> list:
        return [m.message for m in self.store.tables.outbox if isinstance(m.message, kind)]

    def statuses(self, client_order_id: str) -> list[tuple[int, str]]:
        return [(e.seq, e.status) for e in self.published(OrderEvent) if e.client_order_id == client_order_id]


def order(cid: str = "o1", **overrides) -> Order:
    fields = dict(client_order_id=cid, account_id="paper-1", exchange="sim", symbol="BTC/USDT", side="buy",
                  order_type="market", quantity=D("0.5"), ts_event=T0 + S // 2)
    fields.update(overrides)
    return Order(**fields)


@pytest.fixture
async def world() -> World:
    w = World()
    await w.service.start()
    return w


async def test_a_market_order_is_submitted_accepted_and_filled_at_the_fill_rules_price(world):
    await world.trade("BTC/USDT", "t0", 100.0, ts=T0)  # before the order: not its trade
    await world.trade("BTC/USDT", "t1", 101.0, ts=T0 + S)
    await world.service.handle_orders([IncomingOrder(order(decision_price=D("100.5")))])

    assert world.statuses("o1") == [(1, "submitted"), (2, "accepted"), (3, "filled")]
    (fill,) = world.published(Fill)
    # The first trade at or after ts_event, 5 bps against the buy, on the market's tick size (0.01).
    price = (D("101") * D("1.0005")).quantize(D("0.01"))
    assert (fill.fill_id, fill.quantity, fill.price, fill.fee, fill.liquidity, fill.ts_event) == \
        ("o1:t1", D("0.5"), price, D("0.5") * price * D("0.001"), "taker", T0 + S)
    assert {m.key for m in world.store.tables.outbox} == {"paper-1"}
    (position,) = world.service.positions("paper-1")
    assert (position.position.quantity, position.position.average_price) == (D("0.5"), price)
    assert world.service.balances("paper-1").amounts == {"USDT": D("10000") - D("0.5") * price * D("1.001"),
                                                         "BTC": D("0.5")}
    assert world.store.tables.orders["o1"].state.status == "filled"


async def test_a_redelivered_order_creates_and_publishes_nothing_new(world):
    await world.trade("BTC/USDT", "t0", 100.0, ts=T0)
    await world.service.handle_orders([IncomingOrder(order(order_type="limit", limit_price=D("90")))])
    before = list(world.store.tables.outbox)
    await world.service.handle_orders([IncomingOrder(order(order_type="limit", limit_price=D("90")))] * 2)
    await world.restart()
    await world.service.handle_orders([IncomingOrder(order(order_type="limit", limit_price=D("90")))])
    assert world.store.tables.outbox == before
    assert world.statuses("o1") == [(1, "submitted"), (2, "accepted")]


@pytest.mark.parametrize("overrides, code", [
    ({"account_id": "nobody"}, "unknown_account"),
    ({"exchange": "other"}, "unknown_market"),
    ({"symbol": "DOGE/USDT"}, "unknown_market"),
    ({"quantity": D("0")}, "invalid_quantity"),
    ({"quantity": D("-2")}, "invalid_quantity"),
    ({"order_type": "limit", "limit_price": D("100.005")}, "invalid_price"),
    ({"account_id": "live-1"}, "no_broker"),
])
async def test_bad_input_is_rejected_with_its_reason_and_published(world, overrides, code):
    await world.service.handle_orders([IncomingOrder(order("bad", **overrides))])
    events = [e for e in world.published(OrderEvent) if e.client_order_id == "bad"]
    assert [(e.seq, e.status) for e in events] == [(1, "submitted"), (2, "rejected")]
    assert events[-1].reason.startswith(f"{code}: "), events[-1].reason
    assert events[-1].account_id == overrides.get("account_id", "paper-1")
    assert world.store.tables.orders["bad"].state.status == "rejected"
    assert world.published(Fill) == []


async def test_the_kill_switch_cancels_open_orders_once_and_holds_new_ones_until_released(world):
    await world.trade("BTC/USDT", "t0", 100.0, ts=T0)
    await world.service.handle_orders([IncomingOrder(order(f"r{i}", order_type="limit", limit_price=D("90")))
                                       for i in range(2)])
    engage = RiskEvent(event_id="ks-1", account_id="paper-1", kind="kill_switch", reason="kill_switch",
                       message="drawdown", details={"engaged": "true"}, ts_event=T0)
    await world.service.handle_risk_events([engage])
    for cid in ("r0", "r1"):
        assert world.statuses(cid) == [(1, "submitted"), (2, "accepted"), (3, "canceled")]
        assert world.store.tables.orders[cid].state.reason == "kill_switch: drawdown"
    await world.service.handle_orders([IncomingOrder(order("new", order_type="limit", limit_price=D("90"))),
                                       IncomingOrder(order("exit", side="sell", reduce_only=True))])
    assert world.statuses("new")[-1] == (2, "rejected")
    assert world.statuses("exit")[1] == (2, "accepted")  # reduce-only orders still pass

    release = RiskEvent(event_id="ks-2", account_id="paper-1", kind="kill_switch", reason="kill_switch",
                        details={"engaged": "false"}, ts_event=T0)
    await world.service.handle_risk_events([release])
    await world.service.handle_orders([IncomingOrder(order("after", order_type="limit", limit_price=D("90")))])
    await world.service.handle_risk_events([engage])  # redelivered: applied once, long ago
    await world.restart()
    assert world.statuses("after") == [(1, "submitted"), (2, "accepted")]
    assert not world.service.is_halted("paper-1")


async def test_cancel_says_unknown_finished_or_cancels(world):
    await world.trade("BTC/USDT", "t0", 100.0, ts=T0)
    await world.trade("BTC/USDT", "t1", 100.0, ts=T0 + S)
    await world.service.handle_orders([IncomingOrder(order("done")),
                                       IncomingOrder(order("rest", order_type="limit", limit_price=D("50")))])
    with pytest.raises(OrderNotFound):
        await world.service.cancel("nope")
    with pytest.raises(OrderFinished, match="is filled"):
        await world.service.cancel("done")
    state = await world.service.cancel("rest")
    assert (state.status, state.seq) == ("canceled", 3)
    with pytest.raises(OrderFinished, match="is canceled"):
        await world.service.cancel("rest")


async def test_an_order_older_than_the_trade_window_meets_its_trades_read_back_from_the_log():
    world = World(window_trades=2)
    await world.service.start()
    for n in range(6):
        await world.trade("BTC/USDT", f"t{n}", 100.0 + n, ts=T0 + n * S)
    await world.service.handle_orders([IncomingOrder(order("late", ts_event=T0 + 2 * S))])
    assert world.history.reads == 1
    (fill,) = world.published(Fill)
    assert (fill.fill_id, fill.price) == ("late:t2", D("102.05"))  # 102 x 1.0005 on the 0.01 tick


async def test_partial_fills_on_small_trades_spend_at_most_the_quote_amount():
    world = World(participation=D("0.5"))
    await world.service.start()
    await world.trade("ETH/USDT", "e0", 50.0, ts=T0)
    await world.service.handle_orders([IncomingOrder(order("q", symbol="ETH/USDT", quantity=None,
                                                           quote_quantity=D("100")))])
    for n, amount in enumerate([0.5, 0.3, 10.0], start=1):
        await world.trade("ETH/USDT", f"e{n}", 50.0, amount=amount, ts=T0 + n * S)
    fills = world.published(Fill)
    # Half of each trade, then what the rest of the 100 buys at 50.02 (50 x 1.0005 on the tick) with
    # the 0.1% fee, cut to the 0.001 lot: (100 - 0.4 x 50.02 x 1.001) / (50.02 x 1.001) -> 1.597.
    assert [(f.fill_id, f.quantity, f.price) for f in fills] == [
        ("q:e1", D("0.25"), D("50.02")), ("q:e2", D("0.15"), D("50.02")), ("q:e3", D("1.597"), D("50.02"))]
    spent = sum(f.quantity * f.price + f.fee for f in fills)
    assert D("100") - D("50.02") * D("0.001") * D("1.001") < spent <= D("100")
    assert world.statuses("q") == [(1, "submitted"), (2, "accepted"), (3, "partially_filled"),
                                   (4, "partially_filled"), (5, "filled")]


async def test_a_failed_commit_loses_and_doubles_nothing_when_the_batch_is_delivered_again():
    async def scenario(world: World, fail_in: int | None) -> bool:
        batches = [
            ("trades", [world.publish("BTC/USDT", "t0", 100.0, 4.0, T0)]),
            ("orders", [IncomingOrder(order("m1")), IncomingOrder(order("l1", order_type="limit",
                                                                        limit_price=D("99"), quantity=D("3")))]),
            ("trades", [world.publish("BTC/USDT", f"t{n}", 100.0 - n / 2, 1.0, T0 + n * S) for n in range(1, 5)]),
            ("orders", [IncomingOrder(order("x1", side="sell", reduce_only=True, quantity=D("9"),
                                            ts_event=T0 + 5 * S))]),
            ("trades", [world.publish("BTC/USDT", "t5", 98.0, 1.0, T0 + 5 * S)]),
        ]
        world.store.fail_in = fail_in
        failed = False
        for kind, items in batches:
            handler = world.service.handle_trades if kind == "trades" else world.service.handle_orders
            try:
                await handler(items)
            except StoreFailure:
                failed = True
                await handler(items)  # the consumer delivers a failed batch again
        return failed

    clean = World(participation=D("0.5"))
    await clean.service.start()
    commits_at_start = clean.store.commits
    await scenario(clean, None)
    for fail_in in range(12):
        crashed = World(participation=D("0.5"))
        await crashed.service.start()
        if not await scenario(crashed, fail_in):
            break  # fewer transactions than that: every one has failed once
        # Per order the same transitions and fills; across orders the interleaving may differ (a
        # reload reads history that runs ahead of the consumer, so an order may fill sooner).
        assert sorted(crashed.published(Fill), key=lambda f: f.fill_id) == \
            sorted(clean.published(Fill), key=lambda f: f.fill_id), fail_in
        assert sorted((e.client_order_id, e.seq, e.status, e.filled_quantity) for e in crashed.published(OrderEvent)) \
            == sorted((e.client_order_id, e.seq, e.status, e.filled_quantity) for e in clean.published(OrderEvent))
        assert [v.position for v in crashed.service.positions()] == [v.position for v in clean.service.positions()]
    assert fail_in == clean.store.commits - commits_at_start  # each transaction of the scenario failed once
    assert {f.fill_id for f in clean.published(Fill)} >= {"m1:t1", "l1:t2", "x1:t5"}


async def test_after_a_restart_resting_orders_fill_once_as_makers_and_positions_are_the_fold(world):
    await world.trade("BTC/USDT", "t0", 100.0, 1.0, ts=T0)
    await world.service.handle_orders([IncomingOrder(order("l", order_type="limit", limit_price=D("99"),
                                                           quantity=D("1.5")))])
    await world.trade("BTC/USDT", "t1", 99.5, 1.0, ts=T0 + S)  # its arrival: not reached, it rests
    await world.restart()  # t1 is not delivered again (its offset was committed)
    t2 = world.publish("BTC/USDT", "t2", 98.0, 1.0, T0 + 2 * S)
    await world.service.handle_trades([t2])
    await world.restart()
    await world.service.handle_trades([t2])  # delivered again after the restart
    await world.trade("BTC/USDT", "t3", 98.5, 5.0, ts=T0 + 3 * S)
    fills = world.published(Fill)
    assert [(f.fill_id, f.quantity, f.price, f.liquidity) for f in fills] == [("l:t2", D("1.5"), D("99"), "maker")]
    (view,) = world.service.positions("paper-1")
    assert view.position == Position.fold("paper-1", "sim", "BTC/USDT", fills)
    assert view.mark == D("98.5") and view.unrealized_pnl == D("1.5") * (D("98.5") - D("99"))
    result = await world.service.reconcile("paper-1")
    assert (result.agreed, result.repaired, result.fills) == (True, False, 1)


async def test_reconcile_repairs_balances_that_are_not_the_fold_of_the_fills(world):
    await world.trade("BTC/USDT", "t0", 100.0, ts=T0)
    await world.trade("BTC/USDT", "t1", 100.0, ts=T0 + S)
    await world.service.handle_orders([IncomingOrder(order())])
    world.store.tables.balances["paper-1"] = world.store.tables.balances["paper-1"].apply(
        world.published(Fill)[0])  # the fill applied twice to the stored balances
    await world.restart()
    result = await world.service.reconcile("paper-1")
    assert not result.agreed and result.repaired
    assert [d.split(":")[0] for d in result.differences] == ["balance BTC", "balance USDT"]
    assert (await world.service.reconcile("paper-1")).agreed
    assert world.service.balances("paper-1").get("BTC") == D("0.5")


async def test_a_fill_learned_after_a_later_one_gives_the_position_of_the_fills_in_market_order():
    world = World(window_trades=2)
    await world.service.start()
    await world.trade("BTC/USDT", "t0", 100.0, ts=T0)
    await world.service.handle_orders([IncomingOrder(order("l", order_type="limit", limit_price=D("98"),
                                                           quantity=D("1")))])
    for n, price in enumerate([99.0, 99.5, 99.0, 97.0, 99.0], start=1):
        await world.trade("BTC/USDT", f"t{n}", price, ts=T0 + n * S)
    # Risk's order for t2 comes late: its trades are read back and it fills at t2, before l's t4.
    await world.service.handle_orders([IncomingOrder(order("m", ts_event=T0 + 2 * S))])
    fills = world.published(Fill)
    assert [f.fill_id for f in fills] == ["l:t4", "m:t2"]
    (view,) = world.service.positions("paper-1")
    assert view.position == Position.fold("paper-1", "sim", "BTC/USDT", fills)
    assert view.position.opened_at == T0 + 2 * S
    await world.restart()
    assert [v.position for v in world.service.positions("paper-1")] == [view.position]
    assert (await world.service.reconcile("paper-1")).agreed


async def test_an_orders_span_continues_risks_trace_and_its_later_fills_continue_the_orders(world):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    world.telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    risk_trace, risk_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    await world.trade("BTC/USDT", "t0", 100.0, ts=T0)
    await world.service.handle_orders([IncomingOrder(order("l", order_type="limit", limit_price=D("99")),
                                                     traceparent=f"00-{risk_trace}-{risk_span}-01")])
    await world.trade("BTC/USDT", "t1", 98.0, ts=T0 + S)  # a later batch fills the resting order

    by_name = {s.name: s for s in spans.get_finished_spans()}
    order_span, fill_span = by_name["execution order"], by_name["execution fill"]
    assert format(order_span.context.trace_id, "032x") == risk_trace
    assert format(order_span.parent.span_id, "016x") == risk_span
    assert fill_span.parent.span_id == order_span.context.span_id
    assert fill_span.context.trace_id == order_span.context.trace_id
    headers = {type(m.message).__name__ + ":" + getattr(m.message, "status", ""): m.trace["traceparent"]
               for m in world.store.tables.outbox}
    assert headers["OrderEvent:accepted"].split("-")[1:3] == [risk_trace, format(order_span.context.span_id, "016x")]
    assert headers["Fill:"].split("-")[2] == format(fill_span.context.span_id, "016x")
    assert headers["OrderEvent:filled"] == headers["Fill:"]


async def test_an_order_left_in_flight_is_settled_by_its_broker_at_start(world):
    """A broker outside the process leaves an order stored as submitted when the answer never came;
    at the next start the service asks the broker about it (paper: places it, with the same fills)."""
    from tradeflow_execution.store import TrackedOrder
    from tradeflow_trading.orders import OrderState

    await world.trade("BTC/USDT", "t0", 100.0, ts=T0)
    await world.trade("BTC/USDT", "t1", 101.0, ts=T0 + S)
    in_flight = TrackedOrder(OrderState(order("flying")), {}, T0)
    world.store.tables.orders["flying"] = in_flight
    await world.restart()
    assert world.store.tables.orders["flying"].state.status == "filled"
    (fill,) = world.published(Fill)
    assert (fill.fill_id, fill.price) == ("flying:t1", D("101.05"))  # 101 x 1.0005 on the tick
    assert world.statuses("flying") == [(2, "accepted"), (3, "filled")]


async def test_a_live_accounts_reconciliation_status_is_published_for_risk_once_per_change(world):
    async def report(*updates) -> None:
        await world.service.apply_from_broker(LIVE.id, lambda _open: list(updates))

    await report(AccountPending(LIVE.id, T0))
    await report(AccountMismatch(LIVE.id, (), T0 + S))  # the first reconciliation agrees
    await report(AccountMismatch(LIVE.id, ("balance USDT: the exchange has 5, the fills give 0",), T0 + 2 * S))
    await report(AccountMismatch(LIVE.id, ("balance USDT: the exchange has 6, the fills give 0",), T0 + 3 * S))
    assert world.service.mismatch(LIVE.id) == ("balance USDT: the exchange has 6, the fills give 0",)
    await report(AccountMismatch(LIVE.id, (), T0 + 4 * S))  # agree again: the halt lifts
    statuses = world.published(AccountStatus)
    assert [(s.account_id, s.reconciliation, s.ts_event) for s in statuses] == [
        (LIVE.id, "pending", T0), (LIVE.id, "agreed", T0 + S), (LIVE.id, "mismatch", T0 + 2 * S),
        (LIVE.id, "agreed", T0 + 4 * S)]
    assert statuses[2].differences == ["balance USDT: the exchange has 5, the fills give 0"]
    assert len({s.event_id for s in statuses}) == 4 and world.service.mismatch(LIVE.id) == ()
    kinds = [a.kind for a in world.published(Alert)]
    assert kinds == ["position_mismatch", "position_mismatch_resolved"]
