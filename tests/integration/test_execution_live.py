"""Live execution through ccxt against a fake Binance spot account on loopback (ADR 0022).

The real service (broker, database, consumer, outbox) with a live account whose exchange entry
points ccxt at :class:`FakeBinanceAccount`. Each test drives the fake's matching engine and its
failures, then checks the database (the API), exec.orders.v1 and exec.fills.v1 against the fake's
own books: every order once, every fill once, positions and balances equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D

import httpx
import psycopg
import pytest
from tradeflow.bus import Producer
from tradeflow.messages import AccountStatus, Alert, Fill, Order, OrderAmendment, OrderEvent, RiskEvent
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow_execution.bootstrap import SERVICE
from tradeflow_execution.settings import ExecutionSettings
from tradeflow_risk.bootstrap import SERVICE as RISK
from tradeflow_risk.settings import RiskSettings

from tests.fakes.fake_binance_account import FakeBinanceAccount
from tests.trading_topics import read_topic

pytestmark = pytest.mark.integration

API_KEY = "execution-live-test-api-key-0123456789"
EXCHANGE_KEY, EXCHANGE_SECRET = "fake-binance-key", "fake-binance-secret"
STATUS = {"NEW": "accepted", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled", "CANCELED": "canceled",
          "EXPIRED": "expired", "REJECTED": "rejected"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceAccount]:
    exchange = FakeBinanceAccount(api_key=EXCHANGE_KEY, secret=EXCHANGE_SECRET, balances={"USDT": "10000"})
    exchange.market_price["BTCUSDT"] = D("100")
    exchange.answer_delay_s = 3.0  # past the client's 1 s timeout
    await exchange.start()
    yield exchange
    await exchange.stop()


@pytest.fixture
def settings(kafka_bootstrap, database_url, unique_name, fake) -> ExecutionSettings:
    u = unique_name
    return ExecutionSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, environment="test", api_keys=API_KEY,
        consumer_session_timeout_ms=6000, consumer_group=f"ex-{u}",
        orders_topic=f"orders-{u}", risk_events_topic=f"risk-events-{u}", ticks_topic=f"ticks-{u}",
        order_events_topic=f"exec-orders-{u}", fills_topic=f"exec-fills-{u}", alerts_topic=f"alerts-{u}",
        accounts_topic=f"exec-accounts-{u}",
        accounts=[{"id": f"live-{u[-8:]}", "exchange": "binance", "mode": "live", "balances": {"USDT": "10000"},
                   "fees": {"maker": "0.001", "taker": "0.001"}}],
        exchanges=[{"id": "binance", "symbols": ["BTC/USDT"], "api_key": EXCHANGE_KEY, "secret": EXCHANGE_SECRET,
                    "urls": {"public": fake.rest_url, "private": fake.rest_url, "ws.ws-api.spot": fake.ws_api_url}}],
        live_poll_interval_s=0.2, in_flight_interval_s=0.2, in_flight_threshold_s=1.0, in_flight_retries=2,
        live_request_timeout_s=1.0, balance_checks=2, reconcile_interval_s=1.0)


@contextlib.asynccontextmanager
async def in_process(app, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` (lifespan included) in this process until its /readyz answers 200; a client with the key."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url,
                                 headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
        async with app.router.lifespan_context(app):
            deadline = time.monotonic() + 30
            while (resp := await client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, resp.text
                await asyncio.sleep(0.2)
            yield client


@contextlib.asynccontextmanager
async def running(settings: ExecutionSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(SERVICE.create_app(settings), "http://execution") as client:
        yield client


@contextlib.asynccontextmanager
async def running_risk(settings: ExecutionSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The risk service on execution's topics: it reads exec.accounts.v1 and publishes what it approves
    to the topic execution consumes."""
    u = settings.consumer_group.removeprefix("ex-")
    risk = RiskSettings(
        kafka_bootstrap=settings.kafka_bootstrap, database_url=settings.database_url, environment="test",
        api_keys=API_KEY, consumer_session_timeout_ms=6000, consumer_group=f"risk-{u}", market_data_group=f"rmd-{u}",
        signals_topic=f"signals-{u}", exec_orders_topic=settings.order_events_topic,
        exec_fills_topic=settings.fills_topic, exec_accounts_topic=settings.accounts_topic,
        candles_topic=f"candles-{u}", ticks_topic=settings.ticks_topic, orders_topic=settings.orders_topic,
        events_topic=f"risk-events-out-{u}", accounts=[a.model_dump(mode="json") for a in settings.accounts])
    async with in_process(RISK.create_app(risk), "http://risk") as client:
        yield client


async def risk_state(risk: httpx.AsyncClient, account_id: str, reconciliation: str, timeout_s: float = 20) -> dict:
    deadline = time.monotonic() + timeout_s
    while (view := (await risk.get(f"/v1/accounts/{account_id}/risk")).json())["reconciliation"]["status"] \
            != reconciliation:
        assert time.monotonic() < deadline, view
        await asyncio.sleep(0.2)
    return view


@contextlib.asynccontextmanager
async def risk_producer(settings: ExecutionSettings) -> AsyncIterator[Producer]:
    common = CommonSettings(kafka_bootstrap=settings.kafka_bootstrap)
    producer = Producer(common, Telemetry("test-risk", common), client_id="test-risk")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


def tag(settings: ExecutionSettings) -> str:
    """Client order ids are unique in the database: each test's carry its account's suffix."""
    return settings.accounts[0].id[-8:]


def order(settings: ExecutionSettings, name: str, **fields) -> Order:
    base = dict(client_order_id=f"{name}-{tag(settings)}", account_id=settings.accounts[0].id, exchange="binance", symbol="BTC/USDT",
                side="buy", order_type="limit", quantity=D("0.5"), limit_price=D("90"), ts_event=time.time_ns(),
                strategy_id="s1", decision_price=D("90.5"))
    return Order(**{**base, **fields})


async def wait_for(client: httpx.AsyncClient, cid: str, status: str, timeout_s: float = 20) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        resp = await client.get(f"/v1/orders/{cid}")
        if resp.status_code == 200 and resp.json()["status"] == status:
            return resp.json()
        assert time.monotonic() < deadline, f"{cid} never became {status}: {resp.text}"
        await asyncio.sleep(0.1)


def latest(events: list[OrderEvent]) -> dict[str, OrderEvent]:
    out: dict[str, OrderEvent] = {}
    for event in events:
        if event.client_order_id not in out or out[event.client_order_id].seq < event.seq:
            out[event.client_order_id] = event
    return out


async def assert_books_agree(settings: ExecutionSettings, client: httpx.AsyncClient, fake: FakeBinanceAccount,
                             local: dict[str, str], renamed: dict[str, str] | None = None,
                             history: set[int] = frozenset()) -> None:
    """The database (API), exec.orders.v1 and exec.fills.v1 agree with the fake's books.

    ``local``: orders that never reached the exchange and their final status; ``renamed``: the
    final status execution gives where it differs from the exchange's word (an expiry by time in
    force is a cancel at the exchange); ``history``: trade ids from before the account was traded
    through Tradeflow (in its configured balances, not its fills).
    """
    account = settings.accounts[0].id
    at_exchange = {o.client_order_id: renamed.get(o.client_order_id, STATUS[o.status]) if renamed else
                   STATUS[o.status] for o in fake.orders.values()}
    wanted = {**at_exchange, **local}
    wanted_fills = {f"{account}:binance:BTC/USDT:{t.trade_id}": (D(t.qty), D(t.price), D(t.commission))
                    for t in fake.trades if t.trade_id not in history}

    events = await read_topic(settings.kafka_bootstrap, settings.order_events_topic, OrderEvent,
                              lambda es: {c: e.status for c, e in latest(es).items()} == wanted)
    seqs = [(e.client_order_id, e.seq) for e in events]
    assert len(seqs) == len(set(seqs)), "a transition published twice"
    for cid in wanted:
        assert sorted(s for c, s in seqs if c == cid) == list(range(1, 1 + max(s for c, s in seqs if c == cid)))
    fills = await read_topic(settings.kafka_bootstrap, settings.fills_topic, Fill,
                             lambda fs: len(fs) >= len(wanted_fills))
    assert len(fills) == len({f.fill_id for f in fills}) == len(wanted_fills), "a fill published twice"
    assert {f.fill_id: (f.quantity, f.price, f.fee) for f in fills} == wanted_fills

    listed = (await client.get("/v1/orders", params={"account_id": account})).json()
    assert {o["client_order_id"]: o["status"] for o in listed} == wanted
    for o in listed:
        theirs = fake.order_by_client_id(o["client_order_id"])
        if theirs is not None:
            before = sum((t.qty for t in theirs.trades if t.trade_id in history), D(0))
            assert D(o["filled_quantity"]) == theirs.executed - before, o
    stored, since = [], None  # pages of 1000, oldest first from the newest read (inclusive: deduped)
    while True:
        page = (await client.get("/v1/fills", params={"account_id": account, "limit": 1000,
                                                      **({"since": since} if since else {})})).json()
        stored += page
        if len(page) < 1000:
            break
        since = page[-1]["ts"]
    assert {f["fill_id"] for f in stored} == set(wanted_fills)
    positions = (await client.get("/v1/positions", params={"account_id": account})).json()
    balances = fake.balances()
    held = {p["symbol"]: D(p["quantity"]) for p in positions}
    assert held.get("BTC/USDT", D(0)) == balances.get("BTC", D(0))
    (mine,) = [a for a in (await client.get("/v1/accounts")).json() if a["id"] == account]
    assert {c: D(a) for c, a in mine["balances"].items() if D(a) != 0} == {c: a for c, a in balances.items() if a != 0}


async def test_live_orders_fill_partially_cancel_race_and_refusals_match_the_exchange_books(settings, fake):
    o = lambda name, **kw: order(settings, name, **kw)  # noqa: E731
    C = lambda name: f"{name}-{tag(settings)}"  # noqa: E731, N806
    async with running(settings) as client, risk_producer(settings) as producer:
        health = (await client.get("/readyz")).json()
        assert "live-accounts" in str(health)
        send = lambda *orders: asyncio.gather(*(producer.send(settings.orders_topic, x.account_id, x)  # noqa: E731
                                                for x in orders))
        await send(o("p1"), o("c1"), o("race1"), o("m1", order_type="market", limit_price=None, quantity=D("0.2")))
        await wait_for(client, C("p1"), "accepted")
        await wait_for(client, C("m1"), "filled")

        # Partial fills, then the rest: one transition and one fill each.
        fake.fill(C("p1"), "0.2", "90")
        await wait_for(client, C("p1"), "partially_filled")
        fake.fill(C("p1"), "0.3", "89.5")
        detail = await wait_for(client, C("p1"), "filled")
        assert [t["status"] for t in detail["transitions"]] == ["submitted", "accepted", "partially_filled", "filled"]
        assert D(detail["average_price"]) == (D("0.2") * 90 + D("0.3") * D("89.5")) / D("0.5")
        # Slippage: against the decision price (90.5) and the book's mid when it was sent (100).
        assert detail["slippage"]["mid_at_submission"] == "100.00"
        assert D(detail["slippage"]["vs_decision_bps"]) < 0 and D(detail["slippage"]["vs_mid_bps"]) < 0

        # Cancel: canceled at the exchange; cancel racing a fill ends filled, as the exchange says.
        canceled = await client.delete(f"/v1/orders/{C('c1')}")
        assert (canceled.status_code, canceled.json()["status"]) == (200, "canceled"), canceled.text
        await wait_for(client, C("race1"), "accepted")
        fake.fill_on_next_cancel()
        raced = await client.delete(f"/v1/orders/{C('race1')}")
        assert (raced.status_code, raced.json()["status"]) == (200, "filled"), raced.text

        # Refusals map to stable reasons; nothing is left in flight.
        fake.reject_next_create(-2010, "Account has insufficient balance for requested action.")
        await send(o("poor", quantity=D("1000")))
        poor = await wait_for(client, C("poor"), "rejected")
        fake.reject_next_create(-1013, "Market is closed.")
        await send(o("closed"))
        closed = await wait_for(client, C("closed"), "rejected")
        await send(o("offtick", limit_price=D("90.001")))
        offtick = await wait_for(client, C("offtick"), "rejected")
        await send(o("offlot", quantity=D("0.000001")))
        offlot = await wait_for(client, C("offlot"), "rejected")
        fake.reject_next_create(-1013, "Filter failure: PRICE_FILTER")
        await send(o("filter"))
        filtered = await wait_for(client, C("filter"), "rejected")
        fake.fail_requests(1000)  # 429 with Retry-After: 1 s; every request waits for it (the request hold)
        await send(o("throttled"))
        throttled = await wait_for(client, C("throttled"), "rejected")
        assert throttled["reason"].startswith("rate_limited"), throttled
        fake.heal()
        reasons = [r["reason"].split(":")[0] for r in (poor, closed, offtick, offlot, filtered)]
        assert reasons == ["insufficient_funds", "market_closed", "invalid_price", "invalid_quantity", "invalid_price"]

        # Time in force: an order past expires_at is canceled by execution (expired here).
        await send(o("gtd", time_in_force="GTD", expires_at=time.time_ns() + 1_500_000_000))
        await wait_for(client, C("gtd"), "expired", timeout_s=15)
        assert fake.order_by_client_id(C("gtd")).status == "CANCELED"

        # Every create reached the exchange once.
        creates = [r.rsplit(" ", 1)[1] for r in fake.requests if r.startswith("POST /api/v3/order")]
        sent = [C(n) for n in ("p1", "c1", "race1", "m1", "poor", "closed", "filter", "gtd")]
        assert sorted(c for c in creates if c != C("throttled")) == sorted(sent)  # once each; off-step ones never
        assert creates.count(C("throttled")) <= 1  # refused by the exchange (429) or held back before sending
        local = {C(n): "rejected" for n in ("poor", "closed", "filter", "offtick", "offlot", "throttled")}
        await assert_books_agree(settings, client, fake, local=local, renamed={C("gtd"): "expired"})
        metrics = (await client.get("/metrics")).text
        assert 'tradeflow_execution_live_slippage_vs_mid_bps_count{strategy="s1",symbol="BTC/USDT"}' in metrics
        assert fake.bad_signatures == 0


async def test_unknown_outcomes_stay_in_flight_until_the_exchange_answers_and_are_never_resent(settings, fake):
    o = lambda name, **kw: order(settings, name, **kw)  # noqa: E731
    C = lambda name: f"{name}-{tag(settings)}"  # noqa: E731, N806
    async with running(settings) as client, risk_producer(settings) as producer:
        # A create that timed out but was placed, one that timed out and was not, and the same
        # with the connection dropped mid-order.
        for cid, fault, placed in (("to-placed", "timeout", True), ("to-lost", "timeout", False),
                                   ("drop-placed", "drop", True), ("drop-lost", "drop", False)):
            getattr(fake, f"{'time_out' if fault == 'timeout' else 'drop'}_next_create")(placed=placed)
            await producer.send(settings.orders_topic, settings.accounts[0].id, o(cid))
            await wait_for(client, C(cid), "submitted")
        placed = await wait_for(client, C("to-placed"), "accepted")
        await wait_for(client, C("drop-placed"), "accepted")
        lost = await wait_for(client, C("to-lost"), "rejected")
        await wait_for(client, C("drop-lost"), "rejected")
        assert lost["reason"].startswith("not_found_at_exchange")
        assert [t["status"] for t in placed["transitions"]] == ["submitted", "accepted"]
        creates = [r.rsplit(" ", 1)[1] for r in fake.requests if r.startswith("POST /api/v3/order")]
        assert sorted(creates) == sorted(C(n) for n in ("to-placed", "to-lost", "drop-placed", "drop-lost"))  # once
        # Malformed exchange messages are logged, counted and skipped; a fill of a resolved order
        # still arrives through the polling like any other.
        placed_id = fake.order_by_client_id(C("to-placed")).order_id
        fake.garbage_trades.append({"symbol": "BTCUSDT", "id": 999_999, "orderId": placed_id, "price": "90",
                                    "qty": "0.1", "commission": "0", "commissionAsset": "USDT", "isBuyer": True,
                                    "isMaker": True})  # no time
        fake.garbage_orders.append({"symbol": "BTCUSDT", "status": "NEW", "side": "BUY", "type": "LIMIT"})  # no ids
        deadline = time.monotonic() + 10
        while "tradeflow_execution_malformed_exchange_messages_total{" not in (await client.get("/metrics")).text:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        fake.fill(C("to-placed"), "0.5", "90")
        await wait_for(client, C("to-placed"), "filled")
        fake.garbage_trades.clear()
        fake.garbage_orders.clear()
        local = {C("to-lost"): "rejected", C("drop-lost"): "rejected"}
        await assert_books_agree(settings, client, fake, local=local)
        metrics = (await client.get("/metrics")).text
        assert "tradeflow_execution_unknown_outcomes_total 4.0" in metrics


async def test_restart_reconciles_missed_fills_and_adopts_external_orders(settings, fake):
    o = lambda name, **kw: order(settings, name, **kw)  # noqa: E731
    C = lambda name: f"{name}-{tag(settings)}"  # noqa: E731, N806
    # Before Tradeflow ever ran the account, an order on the exchange's website executed partly a
    # day ago (the configured balances are those after that trade): adopted as its rest.
    fake.free["USDT"] += D("14.014")
    fake.free["BTC"] = D("-0.2")
    fake.place_external("BTCUSDT", "buy", "0.5", "70", C("web_early"))
    early_trade = fake.fill(C("web_early"), "0.2", "70")
    early_trade.ts_ms -= 86_400_000
    assert fake.balances()["USDT"] == D("10000") and fake.balances()["BTC"] == 0
    async with running(settings) as client, risk_producer(settings) as producer:
        await producer.send(settings.orders_topic, settings.accounts[0].id, o("r1"))
        await producer.send(settings.orders_topic, settings.accounts[0].id, o("r2", quantity=D("0.3")))
        await wait_for(client, C("r1"), "accepted")
        await wait_for(client, C("r2"), "accepted")
        # Stopped with a create in flight (placed at the exchange, its answer never came).
        fake.time_out_next_create(placed=True)
        await producer.send(settings.orders_topic, settings.accounts[0].id, o("r3"))
        await wait_for(client, C("r3"), "submitted")
        deadline = time.monotonic() + 10
        while "unknown_outcomes_total 1.0" not in (await client.get("/metrics")).text:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
    # Execution is down: r1 fills partly, r2 fully, an order is placed on the exchange's website
    # (one resting, one already filled).
    fake.fill(C("r1"), "0.1", "90")
    fake.fill(C("r2"))
    fake.place_external("BTCUSDT", "buy", "0.4", "80", C("web_resting"))
    fake.place_external("BTCUSDT", "buy", "0.2", "85", C("web_filled"))
    fake.fill(C("web_filled"))

    async with running(settings) as client:  # ready only once reconciled
        for cid, status in (("r1", "partially_filled"), ("r2", "filled"), ("web_resting", "accepted"),
                            ("web_filled", "filled"), ("r3", "accepted"), ("web_early", "accepted")):
            await wait_for(client, C(cid), status, timeout_s=2)
        creates = [r.rsplit(" ", 1)[1] for r in fake.requests if r.startswith("POST /api/v3/order")]
        assert sorted(creates) == sorted(C(n) for n in ("r1", "r2", "r3"))  # r3 asked for, never re-sent
        adopted = (await client.get(f"/v1/orders/{C('web_resting')}")).json()
        assert adopted["signal_id"].startswith("external:") and adopted["origin"] == "manual"
        fake.fill(C("web_resting"), "0.4", "80")
        await wait_for(client, C("web_resting"), "filled")
        early = (await client.get(f"/v1/orders/{C('web_early')}")).json()
        assert (early["quantity"], early["filled_quantity"]) == ("0.3", "0")
        fake.fill(C("web_early"), "0.3", "70")
        await wait_for(client, C("web_early"), "filled")
        reconcile = (await client.post(f"/v1/accounts/{settings.accounts[0].id}/reconcile")).json()
        assert reconcile["agreed"], reconcile
        await assert_books_agree(settings, client, fake, local={}, history={early_trade.trade_id})
        alerts = await read_topic(settings.kafka_bootstrap, settings.alerts_topic, Alert, lambda a: len(a) >= 3)
        assert sorted(a.labels["client_order_id"] for a in alerts if a.kind == "external_order_adopted") == \
            [C("web_early"), C("web_filled"), C("web_resting")]
        metrics = (await client.get("/metrics")).text
        assert "tradeflow_execution_illegal_updates_total 0.0" in metrics


async def test_a_balance_difference_that_fills_cannot_explain_halts_the_account(settings, fake):
    o = lambda name, **kw: order(settings, name, **kw)  # noqa: E731
    C = lambda name: f"{name}-{tag(settings)}"  # noqa: E731, N806
    async with running(settings) as client, risk_producer(settings) as producer:
        fake.free["USDT"] += D("5")  # a deposit, or a fill execution cannot see
        alerts = await read_topic(settings.kafka_bootstrap, settings.alerts_topic, Alert,
                                  lambda a: any(x.kind == "position_mismatch" for x in a))
        (alert,) = [a for a in alerts if a.kind == "position_mismatch"]
        assert alert.severity == "critical" and "USDT" in alert.message
        await producer.send(settings.orders_topic, settings.accounts[0].id, o("after-halt"))
        refused = await wait_for(client, C("after-halt"), "rejected")
        assert refused["reason"].startswith("reconcile_halt")
        await producer.send(settings.orders_topic, settings.accounts[0].id,
                            o("exit", side="sell", reduce_only=True, quantity=D("0.1"), limit_price=D("120")))
        exit_order = await wait_for(client, C("exit"), "rejected")  # reduce-only passes the halt; the exchange
        assert exit_order["reason"].startswith("insufficient_funds")  # has no BTC to sell
        ready = (await client.get("/readyz")).json()
        assert "halted" in str(ready)
        (mine,) = [a for a in (await client.get("/v1/accounts")).json() if a["id"] == settings.accounts[0].id]
        assert mine["reconcile_halt"] and "USDT" in mine["reconcile_halt"][0]
        # The difference goes away (the deposit is withdrawn): the halt is lifted, orders pass again.
        fake.free["USDT"] -= D("5")
        alerts = await read_topic(settings.kafka_bootstrap, settings.alerts_topic, Alert,
                                  lambda a: any(x.kind == "position_mismatch_resolved" for x in a))
        await producer.send(settings.orders_topic, settings.accounts[0].id, o("after-resume"))
        await wait_for(client, C("after-resume"), "accepted")


async def test_risk_approves_nothing_for_the_live_account_until_reconciled_and_halts_it_on_a_mismatch(settings, fake):
    account_id = settings.accounts[0].id

    def manual(n: int) -> dict:
        return {"account_id": account_id, "exchange": "binance", "symbol": "BTC/USDT", "side": "buy",
                "order_type": "limit", "quantity": "0.1", "limit_price": "90"}

    async with running_risk(settings) as risk:
        # Execution has never reconciled the account: risk holds it.
        view = (await risk.get(f"/v1/accounts/{account_id}/risk")).json()
        assert (view["state"], view["reconciliation"]["status"]) == ("halted", "pending")
        held = await risk.post("/v1/orders", json=manual(0), headers={"Idempotency-Key": f"m0-{tag(settings)}"})
        assert (held.status_code, held.json()["detail"]["reason"]) == (422, "account_not_reconciled")
        async with running(settings) as client:
            await risk_state(risk, account_id, "agreed")
            approved = await risk.post("/v1/orders", json=manual(1), headers={"Idempotency-Key": f"m1-{tag(settings)}"})
            assert approved.status_code == 201, approved.text
            await wait_for(client, approved.json()["client_order_id"], "accepted")
            # A balance difference the fills cannot explain: risk halts the account (critical) and refuses.
            fake.free["USDT"] += D("5")
            view = await risk_state(risk, account_id, "mismatch")
            assert view["state"] == "halted" and view["reasons"][0].startswith("reconciliation_mismatch: balance USDT")
            refused = await risk.post("/v1/orders", json=manual(2), headers={"Idempotency-Key": f"m2-{tag(settings)}"})
            assert (refused.status_code, refused.json()["detail"]["reason"]) == (422, "account_not_reconciled")
            # Agreement again lifts it; the order passes and execution places it.
            fake.free["USDT"] -= D("5")
            view = await risk_state(risk, account_id, "agreed")
            assert view["state"] == "active"
            again = await risk.post("/v1/orders", json=manual(3), headers={"Idempotency-Key": f"m3-{tag(settings)}"})
            assert again.status_code == 201, again.text
            await wait_for(client, again.json()["client_order_id"], "accepted")
        statuses = await read_topic(settings.kafka_bootstrap, settings.accounts_topic, AccountStatus,
                                    lambda s: [x.reconciliation for x in s][-1:] == ["agreed"] and len(s) >= 4)
        assert [s.reconciliation for s in statuses] == ["pending", "agreed", "mismatch", "agreed"]
        assert all(s.account_id == account_id for s in statuses) and "USDT" in statuses[2].differences[0]
        # Execution restarts: pending until its first reconciliation, then agreed.
        async with running(settings):
            statuses = await read_topic(settings.kafka_bootstrap, settings.accounts_topic, AccountStatus,
                                        lambda s: len(s) >= 6)
            assert [s.reconciliation for s in statuses][4:] == ["pending", "agreed"]
            await risk_state(risk, account_id, "agreed")


async def test_an_outage_of_more_than_a_day_loses_no_fill_every_window_and_page_of_the_trades_is_read(settings, fake):
    """Binance's myTrades answers 1000 trades of 24 hours at most (the fake enforces both): an
    order resting since 50 h ago that traded 1500 times while execution was down, from 20 h ago to
    a minute ago, is reconciled whole at the restart."""
    settings = settings.model_copy(update={"fills_lookback_s": 3 * 86_400.0})
    o = lambda name, **kw: order(settings, name, **kw)  # noqa: E731
    C = lambda name: f"{name}-{tag(settings)}"  # noqa: E731, N806
    hour, now_ms = 3_600_000, int(time.time() * 1000)
    async with running(settings) as client, risk_producer(settings) as producer:
        await producer.send(settings.orders_topic, settings.accounts[0].id,
                            o("old", quantity=D("2"), ts_event=(now_ms - 50 * hour) * 1_000_000))
        await wait_for(client, C("old"), "accepted")
    count = 1500
    for i in range(count):
        fake.fill(C("old"), "0.001", at_ms=now_ms - 20 * hour + i * (20 * hour - 60_000) // count)
    fake.my_trades_requests.clear()
    async with running(settings) as client:
        partly = await wait_for(client, C("old"), "partially_filled")
        assert D(partly["filled_quantity"]) == D("1.5")
        await assert_books_agree(settings, client, fake, local={})  # every trade once, in the database and on the topic
    # The first window (50 h to 26 h ago) is empty, the next one's page is full, the rest by id.
    windows = [r for r in fake.my_trades_requests if "startTime" in r]
    by_id = [r for r in fake.my_trades_requests if "fromId" in r and "orderId" not in r]
    assert any(int(r["endTime"]) - int(r["startTime"]) == 86_400_000 - 1 for r in windows)
    assert by_id and all(int(r["limit"]) == 1000 for r in windows + by_id)


async def test_the_user_data_stream_wakes_the_polling_and_a_lost_stream_is_reconciled(settings, fake):
    # Polling and periodic reconciliation too slow to matter here: what arrives comes by the stream,
    # or by the reconciliation that follows losing it.
    settings = settings.model_copy(update={"live_poll_interval_s": 60.0, "live_stream_poll_interval_s": 60.0,
                                           "reconcile_interval_s": 600.0})
    o = lambda name, **kw: order(settings, name, **kw)  # noqa: E731
    C = lambda name: f"{name}-{tag(settings)}"  # noqa: E731, N806

    async def streams(count: int) -> None:
        deadline = time.monotonic() + 15
        while fake.user_streams != count:
            assert time.monotonic() < deadline, fake.user_streams
            await asyncio.sleep(0.05)

    async with running(settings) as client, risk_producer(settings) as producer:
        await streams(1)
        for name in ("w1", "w2"):
            await producer.send(settings.orders_topic, settings.accounts[0].id, o(name))
            await wait_for(client, C(name), "accepted")
        fake.fill(C("w1"), "0.5", "90")  # pushed: wakes a round
        await wait_for(client, C("w1"), "filled")
        fake.mute_user_stream = True
        fake.fill(C("w2"), "0.2", "90")  # not pushed: found by the reconciliation after the stream is lost
        await fake.drop_websockets()
        await wait_for(client, C("w2"), "partially_filled")
        fake.mute_user_stream = False
        await streams(1)  # reconnected within the reconnect budget
        fake.fill(C("w2"), "0.3", "90")
        await wait_for(client, C("w2"), "filled")
        # The kill switch cancels the account's open orders at the exchange, one in flight too (once
        # the exchange has answered for it).
        await producer.send(settings.orders_topic, settings.accounts[0].id, o("w3"))
        await wait_for(client, C("w3"), "accepted")
        fake.time_out_next_create(placed=True)
        await producer.send(settings.orders_topic, settings.accounts[0].id, o("w4"))
        await wait_for(client, C("w4"), "submitted")
        deadline = time.monotonic() + 10
        while "unknown_outcomes_total 1.0" not in (await client.get("/metrics")).text:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        kill = RiskEvent(event_id=f"ks-{tag(settings)}", account_id=settings.accounts[0].id, kind="kill_switch",
                         reason="kill_switch", message="manual", details={"engaged": "true"}, ts_event=time.time_ns())
        await producer.send(settings.risk_events_topic, settings.accounts[0].id, kill)
        killed = await wait_for(client, C("w3"), "canceled")
        assert killed["reason"] == "kill_switch: manual" and fake.order_by_client_id(C("w3")).status == "CANCELED"
        killed = await wait_for(client, C("w4"), "canceled")
        assert [t["status"] for t in killed["transitions"]] == ["submitted", "accepted", "canceled"]
        assert killed["reason"] == "kill_switch: manual" and fake.order_by_client_id(C("w4")).status == "CANCELED"
        await assert_books_agree(settings, client, fake, local={})
        metrics = (await client.get("/metrics")).text
        assert 'tradeflow_execution_user_stream_losses_total{account="' in metrics
        assert fake.bad_signatures == 0


def amendment(settings: ExecutionSettings, name: str, number: int, **fields) -> OrderAmendment:
    cid = f"{name}-{tag(settings)}"
    return OrderAmendment(amendment_id=f"{cid}:{number}", client_order_id=cid, account_id=settings.accounts[0].id,
                          exchange="binance", symbol="BTC/USDT", ts_event=time.time_ns(), **fields)


async def wait_for_reason(client: httpx.AsyncClient, cid: str, prefix: str, timeout_s: float = 20) -> dict:
    """The order once one of its transitions has a reason starting with ``prefix``."""
    deadline = time.monotonic() + timeout_s
    while True:
        detail = (await client.get(f"/v1/orders/{cid}")).json()
        if any(t["reason"].startswith(prefix) for t in detail.get("transitions", [])):
            return detail
        assert time.monotonic() < deadline, f"{cid}: no transition with reason {prefix!r}: {detail}"
        await asyncio.sleep(0.1)


def cancel_replaces(fake: FakeBinanceAccount) -> list[str]:
    return [r.rsplit(" ", 1)[1] for r in fake.requests if r.startswith("POST /api/v3/order/cancelReplace")]


async def test_an_amendment_through_risk_replaces_the_order_at_the_exchange_under_its_client_order_id(settings, fake):
    account_id = settings.accounts[0].id
    async with running_risk(settings) as risk, running(settings) as client:
        await risk_state(risk, account_id, "agreed")
        placed = await risk.post("/v1/orders", headers={"Idempotency-Key": f"p-{tag(settings)}"}, json={
            "account_id": account_id, "exchange": "binance", "symbol": "BTC/USDT", "side": "buy",
            "order_type": "limit", "quantity": "0.5", "limit_price": "90"})
        assert placed.status_code == 201, placed.text
        cid = placed.json()["client_order_id"]
        await wait_for(client, cid, "accepted")
        first_id = fake.order_by_client_id(cid).order_id

        amend = {"quantity": "0.3", "limit_price": "91", "reason": "closer to the market"}
        approved = await risk.patch(f"/v1/orders/{cid}", json=amend, headers={"Idempotency-Key": f"a-{tag(settings)}"})
        assert (approved.status_code, approved.json()["amendment_id"]) == (200, f"{cid}:1"), approved.text
        retried = await risk.patch(f"/v1/orders/{cid}", json=amend, headers={"Idempotency-Key": f"a-{tag(settings)}"})
        assert retried.json()["replayed"] is True  # published again: execution applies it once all the same
        deadline = time.monotonic() + 20
        while (detail := (await client.get(f"/v1/orders/{cid}")).json())["quantity"] != "0.3":
            assert time.monotonic() < deadline, detail
            await asyncio.sleep(0.1)
        assert (detail["status"], detail["limit_price"], detail["transitions"][-1]["reason"]) == (
            "accepted", "91", "amended")

        # At the exchange: the order was canceled and replaced under the same client order id.
        old, new = fake.orders_by_client_id(cid)
        assert (old.order_id, old.status, new.status, new.qty, new.price) == (
            first_id, "CANCELED", "NEW", D("0.3"), D("91"))
        assert detail["exchange_order_id"] == str(new.order_id)
        assert cancel_replaces(fake) == [cid]
        # Risk's view of the open order is the amended one.
        deadline = time.monotonic() + 20
        while [(o["quantity"], o["limit_price"]) for o in (await risk.get(
                f"/v1/accounts/{account_id}/risk")).json()["open_orders"]] != [("0.3", "91")]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)

        fake.fill(cid)  # the replacement fills: the amended quantity, no more
        filled = await wait_for(client, cid, "filled")
        assert D(filled["filled_quantity"]) == D("0.3")
        await assert_books_agree(settings, client, fake, local={})
        events = [e for e in await read_topic(settings.kafka_bootstrap, settings.order_events_topic, OrderEvent,
                                              lambda es: any(e.status == "filled" for e in es)) if e.client_order_id == cid]
        assert [(e.seq, e.status, e.reason, e.quantity, e.limit_price) for e in events] == [
            (1, "submitted", "", D("0.5"), D("90")), (2, "accepted", "", D("0.5"), D("90")),
            (3, "accepted", "amended", D("0.3"), D("91")), (4, "filled", "amended", D("0.3"), D("91"))]


async def test_an_amendment_racing_a_fill_or_timing_out_ends_as_the_exchange_says_and_never_overfills(settings, fake):
    o = lambda name, **kw: order(settings, name, **kw)  # noqa: E731
    C = lambda name: f"{name}-{tag(settings)}"  # noqa: E731, N806
    async with running(settings) as client, risk_producer(settings) as producer:
        send = lambda *messages: asyncio.gather(*(producer.send(settings.orders_topic, m.account_id, m)  # noqa: E731
                                                  for m in messages))
        await send(o("race"), o("part"), o("slow"), o("poor"))
        for name in ("race", "part", "slow", "poor"):
            await wait_for(client, C(name), "accepted")

        # A fill of 0.2 reaches the exchange just before the amendment: ONLY_NEW refuses the cancel,
        # the order keeps its 0.5 (it can never fill beyond what was asked).
        fake.fill_on_next_amend(D("0.2"))
        await send(amendment(settings, "race", 1, quantity=D("0.8")))
        refused = await wait_for_reason(client, C("race"), "amend_refused")
        reason = next(t["reason"] for t in refused["transitions"] if t["reason"].startswith("amend_refused"))
        assert reason == "amend_refused: exchange_refused: -2011 Order was not canceled due to cancel restrictions."
        raced = await wait_for(client, C("race"), "partially_filled")
        assert (raced["quantity"], D(raced["filled_quantity"])) == ("0.5", D("0.2"))
        assert len(fake.orders_by_client_id(C("race"))) == 1
        fake.fill(C("race"))
        assert D((await wait_for(client, C("race"), "filled"))["filled_quantity"]) == D("0.5")

        # A partly filled order is not amended live: refused by execution, the exchange never asked.
        fake.fill(C("part"), "0.1")
        await wait_for(client, C("part"), "partially_filled")
        await send(amendment(settings, "part", 1, limit_price=D("89")))
        part = await wait_for_reason(client, C("part"), "amend_refused: partially_filled")
        assert part["limit_price"] == "90"

        # The answer to an amendment that was carried out never comes: resolved by asking, not resent.
        fake.time_out_next_amend(applied=True)
        await send(amendment(settings, "slow", 1, quantity=D("0.4"), limit_price=D("91")))
        slow = await wait_for_reason(client, C("slow"), "amended", timeout_s=30)
        assert "tradeflow_execution_unknown_outcomes_total 1.0" in (await client.get("/metrics")).text
        assert (slow["quantity"], slow["limit_price"], slow["status"]) == ("0.4", "91", "accepted")
        await send(amendment(settings, "slow", 1, quantity=D("0.4"), limit_price=D("91")))  # redelivered

        # The exchange cancels the order but refuses its replacement (-2021: the cash is not there):
        # the order ends canceled, as the exchange reports, after the refusal.
        await send(amendment(settings, "poor", 1, quantity=D("200")))
        poor = await wait_for(client, C("poor"), "canceled")
        assert [(t["status"], t["reason"].split(":")[0]) for t in poor["transitions"]][-2:] == [
            ("accepted", "amend_refused"), ("canceled", "canceled at the exchange by the amendment, whose replacement "
                                                        "was refused")]
        assert "insufficient balance" in poor["transitions"][-2]["reason"] and poor["quantity"] == "0.5"
        assert [o.status for o in fake.orders_by_client_id(C("poor"))] == ["CANCELED"]
        assert cancel_replaces(fake) == [C("race"), C("slow"), C("poor")]  # once each; never for the partly filled one
        old, new = fake.orders_by_client_id(C("slow"))
        assert (old.status, new.status, new.qty) == ("CANCELED", "NEW", D("0.4"))
        fake.fill(C("slow"))
        await wait_for(client, C("slow"), "filled")
        await assert_books_agree(settings, client, fake, local={})
        events = await read_topic(settings.kafka_bootstrap, settings.order_events_topic, OrderEvent,
                                  lambda es: any(e.client_order_id == C("slow") and e.status == "filled" for e in es))
        assert [e.reason for e in events if e.client_order_id == C("slow")].count("amended") == 2  # amended, filled
        metrics = (await client.get("/metrics")).text
        assert 'tradeflow_execution_amendments_total{outcome="applied"} 1.0' in metrics
        assert 'tradeflow_execution_amendments_total{outcome="refused"} 3.0' in metrics


async def test_an_amendment_on_an_exchange_without_order_editing_is_refused_with_a_reason_the_user_sees(
        settings, fake, monkeypatch):
    import tradeflow_execution.live_wiring as wiring

    real = wiring.create_ccxt_exchange

    def without_editing(feed):
        # The fake speaks Binance, whose ccxt client edits orders; the flag is what an exchange
        # without editOrder in ccxt has.
        exchange = real(feed)
        exchange.has = {**exchange.has, "editOrder": False}
        return exchange

    monkeypatch.setattr(wiring, "create_ccxt_exchange", without_editing)
    C = lambda name: f"{name}-{tag(settings)}"  # noqa: E731, N806
    async with running(settings) as client, risk_producer(settings) as producer:
        await producer.send(settings.orders_topic, settings.accounts[0].id, order(settings, "fixed"))
        await wait_for(client, C("fixed"), "accepted")
        await producer.send(settings.orders_topic, settings.accounts[0].id,
                            amendment(settings, "fixed", 1, quantity=D("0.3")))
        detail = await wait_for_reason(client, C("fixed"), "amend_refused: amend_not_supported")
        assert (detail["status"], detail["quantity"]) == ("accepted", "0.5")
        (refused,) = detail["amendments"]
        assert (refused["amendment_id"], refused["quantity"], refused["status"]) == (f"{C('fixed')}:1", "0.3", "refused")
        assert refused["reason"].startswith("amend_not_supported: binance has no order editing in ccxt")
        events = await read_topic(settings.kafka_bootstrap, settings.order_events_topic, OrderEvent,
                                  lambda es: any(e.reason.startswith("amend_refused") for e in es))
        refusal = events[-1]
        assert (refusal.client_order_id, refusal.status, refusal.quantity, refusal.seq) == (
            C("fixed"), "accepted", D("0.5"), 3)
        assert "cancel the order and place a new one" in refusal.reason
        assert cancel_replaces(fake) == []


async def test_an_amendment_whose_answer_never_came_is_resolved_after_a_restart_without_being_sent_again(
        settings, fake):
    C = lambda name: f"{name}-{tag(settings)}"  # noqa: E731, N806
    patient = settings.model_copy(update={"in_flight_threshold_s": 60.0})  # not asked before the stop
    async with running(patient) as client, risk_producer(settings) as producer:
        await producer.send(settings.orders_topic, settings.accounts[0].id, order(settings, "keep"))
        await wait_for(client, C("keep"), "accepted")
        fake.time_out_next_amend(applied=True)
        await producer.send(settings.orders_topic, settings.accounts[0].id,
                            amendment(settings, "keep", 1, quantity=D("0.4"), limit_price=D("91")))
        deadline = time.monotonic() + 20
        while "tradeflow_execution_unknown_outcomes_total 1.0" not in (await client.get("/metrics")).text:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        pending = (await client.get(f"/v1/orders/{C('keep')}")).json()
        assert (pending["quantity"], pending["limit_price"]) == ("0.5", "90")  # not applied without an answer
    with psycopg.connect(settings.database_url.get_secret_value()) as conn:
        assert conn.execute("SELECT status FROM execution_amendments WHERE amendment_id = %s",
                            (f"{C('keep')}:1",)).fetchone() == ("sent",)
    async with running(settings) as client:
        detail = await wait_for_reason(client, C("keep"), "amended")
        assert (detail["quantity"], detail["limit_price"], detail["status"]) == ("0.4", "91", "accepted")
        assert detail["exchange_order_id"] == str(fake.order_by_client_id(C("keep")).order_id)
        assert [(a["amendment_id"], a["status"]) for a in detail["amendments"]] == [(f"{C('keep')}:1", "applied")]
        assert cancel_replaces(fake) == [C("keep")]  # asked for after the restart, never sent again
        fake.fill(C("keep"))
        await wait_for(client, C("keep"), "filled")
        await assert_books_agree(settings, client, fake, local={})
    with psycopg.connect(settings.database_url.get_secret_value()) as conn:
        assert conn.execute("SELECT status FROM execution_amendments WHERE amendment_id = %s",
                            (f"{C('keep')}:1",)).fetchone() == ("applied",)
