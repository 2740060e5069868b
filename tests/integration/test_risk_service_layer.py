"""Risk's service layer on the real database, without a broker: decoded messages in, the stored
decisions and the outbox rows they publish out."""

from __future__ import annotations

import asyncio
import time
from decimal import ROUND_DOWN, Decimal

import psycopg
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tradeflow.messages import AccountStatus, Order, RiskEvent, Tick
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow_db import Database
from tradeflow_db.outbox import Outbox
from tradeflow_risk.adapters.exchange_markets import ExchangeMarkets
from tradeflow_risk.adapters.instrument_calendars import InstrumentCalendars
from tradeflow_risk.adapters.store import OUTBOX_TABLE, REQUIRED_REVISION, RiskStore
from tradeflow_risk.domain.account import AccountControl, TrackedOrder
from tradeflow_risk.domain.limits import RiskLimits
from tradeflow_risk.domain.market import MarketData
from tradeflow_risk.domain.profiles import AccountProfile, Profiles, StrategyProfile
from tradeflow_risk.service import PendingSignal, RiskService, Topics
from tradeflow_trading.accounts import AccountConfig
from tradeflow_trading.ids import client_order_id_for_signal

from tests.risk_support import EXCHANGE, MINUTE, NS, T0, account, execute, outbox_messages, signal

pytestmark = pytest.mark.integration


@pytest.fixture
async def database(database_url):
    db = Database(database_url, name="risk-test", required_revision=REQUIRED_REVISION, max_connections=8)
    await db.start()
    try:
        yield db
    finally:
        await db.stop()


class Harness:
    """Services on one database (a restart is a new service on the same tables)."""

    def __init__(self, database: Database, database_url: str, unique: str) -> None:
        self.database, self.database_url = database, database_url
        self.topics = Topics(orders=f"orders-{unique}", events=f"events-{unique}")
        self.unique = unique
        self.now = T0

    def id(self, name: str) -> str:
        return f"{name}-{self.unique[-8:]}"

    async def service(self, accounts, profiles=None, strategies=None, telemetry=None) -> RiskService:
        settings = CommonSettings()
        service = RiskService(
            accounts=accounts, profiles=Profiles(profiles or {}, strategies or {}),
            store=RiskStore(self.database, Outbox(OUTBOX_TABLE)), market=MarketData("1m", 3, 10),
            markets=ExchangeMarkets([], []), calendars=InstrumentCalendars(None, 60), topics=self.topics,
            telemetry=telemetry or Telemetry("risk-test", settings), wall_clock_ns=lambda: self.now)
        await service.start()
        return service

    async def orders(self) -> list[Order]:
        return [m for _, m in await outbox_messages(self.database_url, self.topics.orders)]

    async def events(self) -> list[RiskEvent]:
        return [m for _, m in await outbox_messages(self.database_url, self.topics.events)]


@pytest.fixture
def harness(database, database_url, unique_name) -> Harness:
    return Harness(database, database_url, unique_name)


def pending(*signals) -> list[PendingSignal]:
    return [PendingSignal(s, "signals", 0, i) for i, s in enumerate(signals)]


async def test_a_signal_waits_while_a_market_order_of_its_account_is_in_flight_whatever_the_fill_timing(harness):
    """The decision of the second signal must not depend on whether its fill or its terminal event came first."""
    outcomes = []
    for order_of_arrival in ("fill_first", "event_first"):
        account_id = harness.id(order_of_arrival)
        service = await harness.service([account(account_id, cash="250")])
        first, second = signal(account_id, 0, quantity="1"), signal(account_id, 1, quantity="1.6")
        decisions = await service.on_trading(signals=pending(first, second))
        assert [d.approved for d in decisions] == [True]
        assert service.held_offsets() == {("signals", 0): 1}  # the second signal holds back the commit
        order = decisions[0].order
        events, fills = execute(order, Decimal("101"))
        if order_of_arrival == "fill_first":
            assert await service.on_trading(fills=fills) == []  # filled, but not terminal yet
            later = await service.on_trading(events=events)
        else:
            assert await service.on_trading(events=events) == []  # terminal, but its fill not applied yet
            later = await service.on_trading(fills=fills)
        # 250 - 101 = 149 free: 1.6 x 100 = 160 does not fit, whatever arrived first.
        assert [(d.approved, d.reason) for d in later] == [(False, "insufficient_balance")]
        assert later[0].event.details == {"need": "160", "free": "149", "currency": "USDT"}
        assert service.held_offsets() == {}
        outcomes.append([(o.client_order_id, o.quantity) for o in await harness.orders()])
    assert [len(o) for o in outcomes] == [1, 1]


async def test_a_redelivered_signal_gets_its_stored_decision_again_even_after_a_restart(harness, database_url):
    account_id = harness.id("redeliver")
    service = await harness.service([account(account_id, cash="150")])
    approved, refused = signal(account_id, 0, quantity="1"), signal(account_id, 1, quantity="5")
    first = await service.on_trading(signals=pending(approved))
    events, fills = execute(first[0].order, Decimal(100))
    second = await service.on_trading(events=events, fills=fills, signals=pending(refused))
    assert [d.reason for d in second] == ["insufficient_balance"]

    restarted = await harness.service([account(account_id, cash="150")])
    again = await restarted.on_trading(signals=pending(approved, refused))
    assert [(d.replayed, d.approved) for d in again] == [(True, True), (True, False)]
    orders = await harness.orders()
    assert [o.client_order_id for o in orders] == [client_order_id_for_signal(approved.signal_id)] * 2
    assert orders[0] == orders[1]
    assert [e.reason for e in await harness.events()] == ["insufficient_balance"] * 2
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        rows = await (await conn.execute("SELECT outcome FROM risk_decisions WHERE account_id = %s ORDER BY outcome",
                                         (account_id,))).fetchall()
    assert rows == [("approved",), ("rejected",)]
    # The restarted service knows the position from the stored fill.
    assert restarted.risk_view(account_id)["positions"][0]["quantity"] == "1"


async def outbox_traceparents(database_url: str, topic: str) -> list[str | None]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        rows = await (await conn.execute("SELECT headers FROM risk_outbox WHERE topic = %s ORDER BY id",
                                         (topic,))).fetchall()
    return [headers.get("traceparent") for (headers,) in rows]


async def test_the_order_continues_the_signals_trace_with_a_decision_span_only_where_spans_are_exported(
        harness, database_url):
    signal_trace, signal_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    traceparent = f"00-{signal_trace}-{signal_span}-01"

    # No OTLP endpoint: no span of risk's own; the order carries the signal's traceparent as it came,
    # and so does a redelivery's replayed decision.
    account_id = harness.id("untraced")
    service = await harness.service([account(account_id, cash="1000")])
    approved = signal(account_id, 0, quantity="1")
    await service.on_trading(signals=[PendingSignal(approved, "signals", 0, 0, traceparent)])
    await service.on_trading(signals=[PendingSignal(approved, "signals", 0, 1, traceparent)])
    assert await outbox_traceparents(database_url, harness.topics.orders) == [traceparent, traceparent]
    await harness.orders()

    # Exported: a "risk decide" span, a child of the signal's, and the order carries that span.
    settings = CommonSettings()
    telemetry = Telemetry("risk-test", settings)
    exporter = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.tracing = True
    account_id = harness.id("traced")
    service = await harness.service([account(account_id, cash="1000")], telemetry=telemetry)
    decisions = await service.on_trading(signals=[PendingSignal(signal(account_id, 0, quantity="1"), "signals", 0, 0,
                                                                traceparent)])
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "risk decide"]
    assert format(span.context.trace_id, "032x") == signal_trace
    assert format(span.parent.span_id, "016x") == signal_span
    assert span.attributes["tradeflow.client_order_id"] == decisions[0].order.client_order_id
    assert await outbox_traceparents(database_url, harness.topics.orders) == [
        f"00-{signal_trace}-{span.context.span_id:016x}-01"]


async def test_manual_orders_racing_the_consumer_never_pass_a_limit_only_some_of_them_fit(harness):
    account_id = harness.id("race")
    limits = RiskLimits(max_open_orders=5)
    service = await harness.service([account(account_id, cash="100000")], {account_id: AccountProfile(limits=limits)})
    signals = pending(*(signal(account_id, n, quantity="1") for n in range(4)))
    manual = [service.manual_order(account_id=account_id, exchange=EXCHANGE, symbol="BTC/USDT", side="buy",
                                   order_type="limit", quantity=Decimal(1), limit_price=Decimal(90), request_id=f"r{n}")
              for n in range(8)]
    results = await asyncio.gather(service.on_trading(signals=signals), *manual)
    decisions = [d for batch in results for d in (batch if isinstance(batch, list) else [batch])]
    approved = [d for d in decisions if d.approved]
    assert len(approved) == 5
    assert {d.reason for d in decisions if not d.approved} == {"max_open_orders"}
    assert len(await harness.orders()) == 5
    # A second replica on the same tables, deciding at the same time as the first: the account's
    # row lock and version make each reload what the other approved; still one slot in all.
    await service.set_limits(account_id, RiskLimits(max_open_orders=6), "ops")
    replica = await harness.service([account(account_id, cash="100000")], {account_id: AccountProfile(limits=limits)})
    racing = [s.manual_order(account_id=account_id, exchange=EXCHANGE, symbol="BTC/USDT", side="buy",
                             order_type="limit", quantity=Decimal(1), limit_price=Decimal(90),
                             request_id=f"{r}-{n}")
              for n in range(4) for r, s in enumerate((service, replica))]
    raced = await asyncio.gather(*racing)
    assert sum(d.approved for d in raced) == 1
    assert {d.event.details["open_orders"] for d in raced if not d.approved} == {"7"}
    assert len(await harness.orders()) == 1
    # A retried request (same Idempotency-Key) gets the same decision, not a new order.
    retry = await service.manual_order(account_id=account_id, exchange=EXCHANGE, symbol="BTC/USDT", side="buy",
                                       order_type="limit", quantity=Decimal(1), limit_price=Decimal(90),
                                       request_id="r0")
    assert retry.replayed
    assert retry.decision_id in {d.decision_id for d in decisions}


async def test_daily_loss_halts_engages_the_kill_switch_and_only_the_operator_resumes_the_same_day(harness):
    account_id, exchange = harness.id("loss"), harness.id("marks")
    profile = AccountProfile(limits=RiskLimits(max_daily_loss=Decimal(50)))
    service = await harness.service([account(account_id, cash="1000", exchange=exchange)], {account_id: profile})
    entry = await service.on_trading(signals=pending(signal(account_id, 0, quantity="5", exchange=exchange)))
    events, fills = execute(entry[0].order, Decimal(100))
    await service.on_trading(events=events, fills=fills)
    await harness.events()

    def tick(price: float, at: int) -> Tick:
        return Tick(exchange=exchange, symbol="BTC/USDT", trade_id=f"x{at}", price=price, amount=1.0, side="sell",
                    ts_event=at, ts_recv=at)

    await service.on_market(ticks=[tick(95.0, T0 + 3 * MINUTE)])  # -25: within the limit
    assert service.books[account_id].state == "active"
    await service.on_market(ticks=[tick(89.9, T0 + 4 * MINUTE)])  # -50.5: broken
    breach, engaged = await harness.events()
    assert (breach.kind, breach.reason, breach.state) == ("limit_breach", "max_daily_loss", "halted")
    assert (engaged.kind, engaged.details, engaged.account_id) == ("kill_switch", {"engaged": "true"}, account_id)
    refused = await service.on_trading(signals=pending(signal(account_id, 5, quantity="1", exchange=exchange)))
    assert [d.reason for d in refused] == ["kill_switch"]
    await harness.events()

    # A restart keeps the account halted (and the marks the market-state saver stored).
    await service.save_market_state()
    restarted = await harness.service([account(account_id, cash="1000", exchange=exchange)], {account_id: profile})
    assert restarted.risk_view(account_id)["state"] == "halted"
    change = await restarted.resume(account_id, "checked")
    assert change is not None and change.after == "active"
    resumed, released = await harness.events()
    assert (resumed.kind, resumed.state, released.details) == ("state_change", "active", {"engaged": "false"})
    # The loss counts from the resume: a further small fall does not halt again.
    await restarted.on_market(ticks=[tick(89.0, T0 + 6 * MINUTE)])
    assert restarted.books[account_id].state == "active"


def status(account_id: str, reconciliation: str, at: int, *differences: str) -> AccountStatus:
    return AccountStatus(event_id=f"s:{account_id}:{reconciliation}:{at}", account_id=account_id,
                         reconciliation=reconciliation, differences=list(differences), ts_event=at)


async def test_a_live_account_passes_nothing_until_reconciled_a_mismatch_halts_it_across_restarts(harness):
    account_id = harness.id("live")
    live = [account(account_id, cash="1000", mode="live")]
    service = await harness.service(live)
    view = service.risk_view(account_id)
    assert (view["state"], view["reconciliation"]["status"]) == ("halted", "pending")
    refused = await service.on_trading(signals=pending(signal(account_id, 0, quantity="1")))
    assert [d.reason for d in refused] == ["account_not_reconciled"]
    manual = await service.manual_order(account_id=account_id, exchange=EXCHANGE, symbol="BTC/USDT", side="buy",
                                        order_type="market", quantity=Decimal(1), limit_price=None, request_id="m0")
    assert manual.reason == "account_not_reconciled"
    await harness.events()

    await service.on_trading(statuses=[status(account_id, "agreed", T0 + MINUTE)])
    (lifted,) = await harness.events()
    assert (lifted.kind, lifted.reason, lifted.state, lifted.severity) == ("state_change", "reconciled", "active", "info")
    approved = await service.on_trading(signals=pending(signal(account_id, 1, quantity="1")))
    assert approved[0].approved
    events, fills = execute(approved[0].order, Decimal(100))
    await service.on_trading(events=events, fills=fills)

    # Execution finds balances the fills cannot explain: halted (critical), and it stays so across a restart.
    difference = "balance BTC: the exchange has 2, the fills give 1"
    await service.on_trading(statuses=[status(account_id, "mismatch", T0 + 3 * MINUTE, difference)])
    (halt,) = await harness.events()
    assert (halt.kind, halt.reason, halt.state, halt.severity) == (
        "state_change", "reconciliation_mismatch", "halted", "critical")
    assert difference in halt.message
    restarted = await harness.service(live)
    view = restarted.risk_view(account_id)
    assert (view["state"], view["reconciliation"]) == ("halted", {"status": "mismatch", "message": difference})
    assert view["reasons"] == [f"reconciliation_mismatch: {difference}"]
    manual = await restarted.manual_order(account_id=account_id, exchange=EXCHANGE, symbol="BTC/USDT", side="sell",
                                          order_type="market", quantity=Decimal(1), limit_price=None, request_id="m1")
    assert manual.reason == "account_not_reconciled" and difference in manual.event.message
    assert await restarted.resume(account_id, "ops") is None  # only execution's agreement lifts it

    # An operator's kill switch engaged meanwhile outlives the agreement; a redelivered status changes nothing.
    await restarted.set_kill_switch(account_id, True, "checking the exchange")
    await restarted.on_trading(statuses=[status(account_id, "agreed", T0 + 5 * MINUTE)] * 2)
    assert restarted.risk_view(account_id)["state"] == "halted"
    manual = await restarted.manual_order(account_id=account_id, exchange=EXCHANGE, symbol="BTC/USDT", side="sell",
                                          order_type="market", quantity=Decimal(1), limit_price=None, request_id="m2")
    assert manual.reason == "kill_switch"
    await restarted.set_kill_switch(account_id, False, "")
    manual = await restarted.manual_order(account_id=account_id, exchange=EXCHANGE, symbol="BTC/USDT", side="sell",
                                          order_type="limit", quantity=Decimal(1), limit_price=Decimal(100),
                                          request_id="m3")
    assert manual.approved, manual.event

    # Execution restarted: held again until its first reconciliation; a paper account ignores statuses.
    await restarted.on_trading(statuses=[status(account_id, "pending", T0 + 7 * MINUTE)])
    assert restarted.risk_view(account_id)["state"] == "halted"
    paper_id = harness.id("paper")
    paper = await harness.service([account(paper_id)])
    await paper.on_trading(statuses=[status(paper_id, "mismatch", T0, "x")])
    assert paper.risk_view(paper_id)["state"] == "active" and paper.risk_view(paper_id)["reconciliation"] is None


async def test_limits_are_versioned_with_who_and_apply_to_the_next_decision(harness):
    account_id = harness.id("limits")
    service = await harness.service([account(account_id, cash="100000")])
    assert service.limits_version(account_id).version == 0
    first = await service.on_trading(signals=pending(signal(account_id, 0, quantity="3")))
    assert first[0].approved
    events, fills = execute(first[0].order, Decimal(100))
    await service.on_trading(events=events, fills=fills)
    version = await service.set_limits(account_id, RiskLimits(max_order_notional=Decimal(250)), "alice")
    assert (version.version, version.changed_by) == (1, "alice")
    second = await service.on_trading(signals=pending(signal(account_id, 1, quantity="3")))
    assert (second[0].reason, second[0].event.details) == (
        "max_order_notional", {"notional": "300", "limit": "250"})
    await service.set_limits(account_id, RiskLimits(), "bob")
    history = await service.limits_history(account_id)
    assert [(v.version, v.changed_by, v.limits.max_order_notional) for v in history] == [
        (1, "alice", Decimal(250)), (2, "bob", None)]
    assert [e.kind for e in await harness.events()] == ["limits_changed", "rejection", "limits_changed"]


async def test_a_stop_loss_fires_once_on_the_trade_that_crosses_it(harness):
    account_id = harness.id("stop")
    strategies = {"inst": StrategyProfile.model_validate({"protective": {"stop_loss": {"pct": "5"}}})}
    service = await harness.service([account(account_id, cash="1000")], strategies=strategies)
    entry = await service.on_trading(signals=pending(signal(account_id, 0, quantity="2")))
    events, fills = execute(entry[0].order, Decimal(100))
    await service.on_trading(events=events, fills=fills)
    await harness.orders()

    ticks = [Tick(exchange=EXCHANGE, symbol="BTC/USDT", trade_id=str(i), price=p, amount=1.0, side="sell",
                  ts_event=T0 + 2 * MINUTE + i * NS, ts_recv=T0) for i, p in enumerate([99.0, 95.01, 94.9, 94.0])]
    exits = await service.on_market(ticks=ticks)
    assert len(exits) == 1
    order = exits[0].order
    assert (order.side, order.quantity, order.reduce_only, order.origin, order.ts_event) == (
        "sell", Decimal(2), True, "protective", T0 + 2 * MINUTE + 2 * NS)
    assert await service.on_market(ticks=[ticks[-1]]) == []  # the exit is in flight: no second one
    assert [o.client_order_id for o in await harness.orders()] == [order.client_order_id]
    assert [e.kind for e in await harness.events()] == ["protective_exit"]


async def until_ready(check, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not (answer := await check())[0]:
        assert time.monotonic() < deadline, answer[1]
        await asyncio.sleep(0.05)


@pytest.fixture
async def candle_builder_instruments(database_url):
    """The candle-builder's instrument registry API, served over HTTP on a free port."""
    import uvicorn
    from fastapi import FastAPI
    from tradeflow_candle_builder.adapters.candle_store import CandleStore
    from tradeflow_candle_builder.adapters.instrument_store import InstrumentStore
    from tradeflow_candle_builder.instrument_registry import InstrumentRegistry
    from tradeflow_candle_builder.instruments_api import create_instruments_router

    from tests.e2e.service_process import free_port

    store = CandleStore(database_url)
    await store.start()
    instruments = InstrumentStore(store)
    app = FastAPI()
    app.include_router(create_instruments_router(instruments, InstrumentRegistry(instruments, refresh_s=60)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and not task.done(), "the instruments API did not start"
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        await store.stop()


async def test_trading_hours_come_from_the_candle_builders_registry_and_its_market_calendar(
        harness, candle_builder_instruments):
    import httpx

    exchange = harness.id("nyse")
    async with httpx.AsyncClient(base_url=candle_builder_instruments, timeout=60) as client:  # it loads the calendar
        resp = await client.post("/v1/instruments", json={"exchange": exchange, "symbol": "AAPL/USD",
                                                           "calendar": "XNYS"})
        assert resp.status_code == 201, resp.text
    account_id = harness.id("hours")
    calendars = InstrumentCalendars(candle_builder_instruments, refresh_s=60)
    await calendars.start()
    try:
        await until_ready(calendars.ready)
        service = RiskService(
            accounts=[AccountConfig(id=account_id, exchange=exchange, balances={"USD": "1000", "USDT": "1000"})],
            profiles=Profiles({}, {}), store=RiskStore(harness.database, Outbox(OUTBOX_TABLE)), market=MarketData("1m"),
            markets=ExchangeMarkets([], []), calendars=calendars, topics=harness.topics,
            telemetry=Telemetry("risk-test", CommonSettings()))
        await service.start()
        saturday = 1_772_886_600 * NS  # 2026-03-07 12:30 UTC
        monday = 1_772_460_000 * NS  # 2026-03-02 14:00 UTC: 09:00 New York, before the open
        opened = monday + 3600 * NS  # 10:00 New York
        decided = await service.on_trading(signals=pending(*(
            signal(account_id, n, quantity="1", symbol="AAPL/USD", exchange=exchange, ts_event=ts)
            for n, ts in enumerate([saturday, monday, opened]))))
        assert [d.reason or "approved" for d in decided] == ["market_closed", "market_closed", "approved"]
        assert decided[0].event.details == {"calendar": "XNYS", "ts_event": str(saturday)}
        # BTC/USDT on the same exchange is not registered: 24/7 (decided once the AAPL order settled).
        events, fills = execute(decided[2].order, Decimal(100))
        crypto = await service.on_trading(events=events, fills=fills, signals=pending(signal(
            account_id, 9, quantity="1", exchange=exchange, ts_event=saturday)))
        assert crypto[0].approved
    finally:
        await calendars.stop()


async def test_market_precision_and_minimums_come_from_ccxt_markets_of_the_configured_exchange(harness):
    from tradeflow_exchanges.ccxt_client import ExchangeFeedSettings

    from tests.fakes.fake_binance import FakeBinance

    fake = FakeBinance()
    await fake.start()
    markets = ExchangeMarkets([ExchangeFeedSettings(id="binance", urls={"public": fake.rest_url})], ["binance"])
    await markets.start()
    try:
        await until_ready(markets.ready)
        account_id = harness.id("precision")
        service = RiskService(
            accounts=[account(account_id, exchange="binance")], profiles=Profiles({}, {}),
            store=RiskStore(harness.database, Outbox(OUTBOX_TABLE)), market=MarketData("1m"), markets=markets,
            calendars=InstrumentCalendars(None, 60), topics=harness.topics,
            telemetry=Telemetry("risk-test", CommonSettings()))
        await service.start()
        tiny, odd, unknown = (signal(account_id, 0, quantity="0.000001", exchange="binance"),
                              signal(account_id, 1, quantity="0.123456", exchange="binance"),
                              signal(account_id, 2, quantity="1", symbol="DOGE/USDT", exchange="binance"))
        decided = await service.on_trading(signals=pending(tiny, unknown, odd))
        assert [d.reason or "approved" for d in decided] == ["below_min_quantity", "unknown_symbol", "approved"]
        assert decided[0].event.details == {"quantity": "0.000001", "step": "0.00001", "min_amount": "0.00001"}
        assert decided[2].order.quantity == Decimal("0.12345")  # cut down to the lot step
        limit = await service.manual_order(account_id=account_id, exchange="binance", symbol="ETH/USDT", side="buy",
                                           order_type="limit", quantity=Decimal(1), limit_price=Decimal("100.005"),
                                           request_id="p1")
        assert (limit.reason, limit.event.details["price_step"]) == ("price_precision", "0.01")
    finally:
        await markets.stop()
        await fake.stop()


async def test_entries_without_quantity_are_sized_per_account_or_strategy_instance(harness):
    account_id = harness.id("sizing")
    profiles = {account_id: AccountProfile.model_validate({"sizing": {"method": "fixed_quote", "amount": "250"}})}
    strategies = {"half": StrategyProfile.model_validate({"sizing": {"method": "fraction_of_cash", "fraction": "0.5"}})}
    service = RiskService(
        accounts=[account(account_id, cash="1000")], profiles=Profiles(profiles, strategies),
        store=RiskStore(harness.database, Outbox(OUTBOX_TABLE)), market=MarketData("1m"),
        markets=ExchangeMarkets([], []), calendars=InstrumentCalendars(None, 60), topics=harness.topics,
        telemetry=Telemetry("risk-test", CommonSettings()))
    assert await service.ready() == (False, "loading accounts, positions and open orders")  # /readyz until loaded
    await service.start()
    assert (await service.ready())[0]
    by_account = await service.on_trading(signals=pending(signal(account_id, 0)))
    assert (by_account[0].order.quote_quantity, by_account[0].order.quantity) == (Decimal(250), None)
    events, fills = execute(by_account[0].order, Decimal(125))  # 2 units for the 250
    by_instance = await service.on_trading(events=events, fills=fills,
                                           signals=pending(signal(account_id, 1, instance="half", symbol="ETH/USDT")))
    assert by_instance[0].order.quote_quantity == Decimal(375)  # half of the 750 left


async def test_a_second_all_cash_entry_while_holding_is_rejected_below_the_minimum_size_not_approved(harness):
    """The exactly-once e2e's dust orders: the first all-cash buy leaves less than one quantity
    step of cash; the next entry is a rejection on the events topic, not an order that could never fill."""
    account_id = harness.id("dust")
    service = await harness.service([account(account_id, cash="10000", taker="0.001")])
    first = await service.on_trading(signals=pending(signal(account_id, 0, price="64000")))
    assert first[0].order.quote_quantity == Decimal(10000)
    events, fills = execute(first[0].order, Decimal("64013"), taker=Decimal("0.001"))
    again = signal(account_id, 1, price="64000")
    second = await service.on_trading(events=events, fills=fills, signals=pending(again))
    assert [(d.approved, d.reason) for d in second] == [(False, "below_minimum_size")]
    left = Decimal(10000) - fills[0].quantity * fills[0].price - fills[0].fee
    assert Decimal(0) < left < Decimal("0.00000001") * 64000  # cash left: less than one step at the price
    published = await harness.events()
    assert [(e.kind, e.reason, e.client_order_id) for e in published] == [
        ("rejection", "below_minimum_size", client_order_id_for_signal(again.signal_id))]
    assert Decimal(published[0].details["quote_quantity"]) == left.quantize(Decimal("1e-8"), ROUND_DOWN)  # all of it
    assert [o.client_order_id for o in await harness.orders()] == [first[0].order.client_order_id]


async def test_a_unit_of_work_that_fails_stores_nothing_and_hands_back_a_clean_connection(harness, database_url):
    """A unit's BEGIN and COMMIT are statements of its pipeline: whether the failure is the
    service's (an exception between the reads and the writes) or the database's (a statement of
    the pipeline fails), nothing of the unit is stored and the next unit on the same connection works."""
    database = Database(database_url, name="risk-uow-test", required_revision=REQUIRED_REVISION, max_connections=1)
    await database.start()
    try:
        store = RiskStore(database, Outbox(OUTBOX_TABLE))
        account_id = harness.id("uow")
        await store.ensure_accounts([account_id])
        before = await store.version(account_id)

        def decide(uow, name: str) -> None:
            event = RiskEvent(event_id=f"{name}-{harness.unique}", account_id=account_id, kind="rejection",
                              reason="test", ts_event=1)
            payload = uow.add_decision(f"{name}-{harness.unique}", account_id, "signal", event, "test", 1)
            uow.publish(None, harness.topics.events, account_id, event, payload)
            uow.save_control(account_id, AccountControl(), 1)

        with pytest.raises(RuntimeError, match="the decision failed"):
            async with store.unit_of_work([account_id]) as uow:
                decide(uow, "service-failure")
                raise RuntimeError("the decision failed")
        with pytest.raises(psycopg.errors.DivisionByZero):
            async with store.unit_of_work([account_id]) as uow:
                decide(uow, "database-failure")
                await uow.conn.execute("SELECT 1 / 0")
        assert await harness.events() == [], "neither failed unit published anything"
        assert await store.version(account_id) == before

        async with store.unit_of_work([account_id]) as uow:
            decide(uow, "after")
        assert [e.event_id for e in await harness.events()] == [f"after-{harness.unique}"]
        assert await store.version(account_id) == before + 1
        async with database.connection() as conn:
            assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    finally:
        await database.stop()


async def test_an_order_created_and_progressed_in_the_same_unit_is_stored_as_progressed(harness):
    """The parts of the unit's one write statement all see the tables as they were before it: an
    order inserted and progressed in one unit gets its progress from a second statement."""
    import msgspec

    account_id = harness.id("same-unit")
    service = await harness.service([account(account_id, cash="1000000")])
    [decision] = await service.on_trading(signals=pending(signal(account_id, 0, quantity="1")))
    order = msgspec.structs.replace(decision.order, client_order_id=harness.id("created-and-filled"))
    store = RiskStore(harness.database, Outbox(OUTBOX_TABLE))
    async with store.unit_of_work([account_id]) as uow:
        uow.add_decision(harness.id("decision"), account_id, "manual", order, "", order.ts_event)
        uow.order_progress(TrackedOrder(order, "filled", 2, order.quantity, order.quantity, order.quantity * 100))
    assert await store.order_row(order.client_order_id) == (account_id, "filled")
