"""The running risk service against the real broker and database (a stand-in answers for execution).

Signals go in on the signals topic; orders, risk events and dead letters come out on theirs.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import httpx
import psycopg
import pytest
from tradeflow.bus import Producer
from tradeflow.codec import decode, header_value
from tradeflow.messages import Candle, Order, OrderAmendment, OrderEvent, RiskEvent, Signal, Tick
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import market_key
from tradeflow_risk.bootstrap import SERVICE
from tradeflow_risk.settings import RiskSettings
from tradeflow_trading.ids import client_order_id_for_signal

from tests.risk_support import EXCHANGE, MINUTE, NS, T0, PaperExecution, decoded, read_topic, signal

pytestmark = pytest.mark.integration


API_KEY = "risk-test-api-key-0123456789"


def settings_for(kafka_bootstrap: str, database_url: str, unique: str, accounts: list[dict],
                 profiles: dict | None = None, strategies: dict | None = None) -> RiskSettings:
    return RiskSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, environment="test", api_keys=API_KEY,
        consumer_session_timeout_ms=6000, accounts=json.dumps(accounts),
        account_profiles=json.dumps(profiles or {}), strategy_profiles=json.dumps(strategies or {}),
        consumer_group=f"risk-{unique}", market_data_group=f"risk-md-{unique}",
        signals_topic=f"signals-{unique}", exec_orders_topic=f"exec-orders-{unique}",
        exec_fills_topic=f"exec-fills-{unique}", candles_topic=f"candles-{unique}",
        ticks_topic=f"ticks-{unique}", orders_topic=f"orders-{unique}", events_topic=f"events-{unique}",
        market_timeframe="1m", volatility_period=3)


def paper_account(account_id: str, cash: str = "100000", exchange: str = EXCHANGE) -> dict:
    return {"id": account_id, "exchange": exchange, "balances": {"USDT": cash}, "fees": {"maker": "0", "taker": "0"}}


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = 40) -> dict:
    deadline = time.monotonic() + timeout_s
    while (resp := await client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, resp.text
        await asyncio.sleep(0.2)
    return resp.json()


async def position_known(client: httpx.AsyncClient, account_id: str, timeout_s: float = 20) -> None:
    """Until risk has applied the fill of the account's order (execution answers asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while not (await client.get(f"/v1/accounts/{account_id}/risk")).json()["positions"]:
        assert time.monotonic() < deadline, f"no position of {account_id} after {timeout_s}s"
        await asyncio.sleep(0.1)


class Running:
    """The risk app in this process, its settings, an HTTP client and a producer for its inputs."""

    def __init__(self, settings: RiskSettings) -> None:
        self.settings = settings
        self.app = SERVICE.create_app(settings)
        common = CommonSettings(kafka_bootstrap=settings.kafka_bootstrap)
        self.producer = Producer(common, Telemetry("risk-test-feed", common), client_id="risk-test-feed")

    async def __aenter__(self) -> Running:
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://risk",
                                        headers={"Authorization": f"Bearer {API_KEY}"})
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.ready = await wait_ready(self.client)
        await self.producer.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.producer.stop()
        await self._lifespan.__aexit__(*exc_info)
        await self.client.aclose()

    def execution(self) -> PaperExecution:
        s = self.settings
        return PaperExecution(s.kafka_bootstrap, orders_topic=s.orders_topic, events_topic=s.exec_orders_topic,
                              fills_topic=s.exec_fills_topic)

    async def send_signals(self, signals: list[Signal]) -> None:
        await asyncio.gather(*(self.producer.send(self.settings.signals_topic, s.account_id, s) for s in signals))

    async def orders(self, until) -> list[Order]:
        return decoded(await read_topic(self.settings.kafka_bootstrap, self.settings.orders_topic,
                                        lambda rs: until(decoded(rs, Order))), Order)

    async def events(self, until) -> list[RiskEvent]:
        return decoded(await read_topic(self.settings.kafka_bootstrap, self.settings.events_topic,
                                        lambda rs: until(decoded(rs, RiskEvent))), RiskEvent)


async def test_bursts_are_cut_exactly_at_each_limit_and_bad_input_is_rejected_not_dropped(
        kafka_bootstrap, database_url, unique_name):
    tag = unique_name[-8:]
    ids = {name: f"{name}-{tag}" for name in ("rate", "position", "gross", "cash", "order", "open")}
    limits = {"rate": {"max_orders_per_minute": 3}, "position": {"max_position_notional": "500"},
              "gross": {"max_gross_exposure": "700"}, "order": {"max_order_notional": "250"},
              "open": {"max_open_orders": 4}}
    accounts = [paper_account(i, cash="450" if name == "cash" else "100000") for name, i in ids.items()]
    settings = settings_for(kafka_bootstrap, database_url, unique_name, accounts,
                            {ids[name]: {"limits": value} for name, value in limits.items()})
    same_minute = T0 + 30 * MINUTE
    bursts = {
        "rate": [signal(ids["rate"], n, quantity="1", ts_event=same_minute) for n in range(6)],
        "position": [signal(ids["position"], n, quantity="1") for n in range(8)],
        "gross": [signal(ids["gross"], n, quantity="1", symbol=("BTC/USDT", "ETH/USDT")[n % 2]) for n in range(10)],
        "cash": [signal(ids["cash"], n, quantity="1") for n in range(8)],
        "order": [signal(ids["order"], n, quantity=q) for n, q in enumerate(["1", "2", "2", "3"])],
    }
    expected = {"rate": (3, "max_orders_per_minute"), "position": (5, "max_position_notional"),
                "gross": (7, "max_gross_exposure"), "cash": (4, "insufficient_balance"),
                "order": (3, "max_order_notional")}
    bad = [signal(f"nobody-{tag}", 0, quantity="1"), signal(ids["cash"], 50, quantity="1", symbol="BTCUSDT"),
           signal(ids["cash"], 51, quantity="-2")]
    async with Running(settings) as risk, risk.execution():
        assert {"broker", "database", "state", "markets", "instruments"} <= set(risk.ready["checks"])
        everything = [s for burst in bursts.values() for s in burst] + bad
        await risk.send_signals(everything)
        # Manual limit orders race the consumer: only max_open_orders of them (they stay open) pass.
        manual = [risk.client.post("/v1/orders", json={
            "account_id": ids["open"], "exchange": EXCHANGE, "symbol": "BTC/USDT", "side": "buy",
            "order_type": "limit", "quantity": "1", "limit_price": "90"}) for _ in range(10)]
        answers = await asyncio.gather(*manual)
        assert sorted(a.status_code for a in answers) == [201] * 4 + [422] * 6
        assert {a.json()["detail"]["reason"] for a in answers if a.status_code == 422} == {"max_open_orders"}
        await risk.producer.send_raw(settings.signals_topic, ids["cash"].encode(), b"\xc1 not msgpack",
                                     [("schema", b"Signal/1")])
        # The same signal once more (a redelivery): its stored decision again, no second order.
        await risk.send_signals([bursts["cash"][0]])

        approved = sum(n for n, _ in expected.values()) + 4  # the manual ones included
        orders = await risk.orders(lambda os: len(os) >= approved + 1)  # and the redelivered one
        undecided = {s.signal_id for s in everything} - {o.signal_id for o in orders}
        events = await risk.events(lambda es: undecided <= {e.signal_id for e in es})
        dlq = await read_topic(kafka_bootstrap, settings.signals_topic + ".dlq", lambda rs: len(rs) >= 1)
        metrics = (await risk.client.get("/metrics")).text

    by_signal = {o.signal_id: o for o in orders if o.signal_id}
    rejections = {e.signal_id: e for e in events if e.kind == "rejection" and e.signal_id}
    for name, (count, reason) in expected.items():
        burst = bursts[name]
        assert [s.signal_id in by_signal for s in burst] == [True] * count + [False] * (len(burst) - count), name
        assert {rejections[s.signal_id].reason for s in burst[count:]} == {reason}, name
    assert rejections[bursts["position"][5].signal_id].details == {"exposure": "500", "notional": "100", "limit": "500"}
    assert rejections[bursts["rate"][3].signal_id].details == {"orders": "4", "limit": "3"}
    assert [rejections[s.signal_id].reason for s in bad] == ["unknown_account", "unknown_symbol", "invalid_quantity"]
    assert rejections[bad[0].signal_id].account_id == f"nobody-{tag}"
    redelivered = [o for o in orders if o.signal_id == bursts["cash"][0].signal_id]
    assert len(redelivered) == 2 and redelivered[0] == redelivered[1]
    assert redelivered[0].client_order_id == client_order_id_for_signal(bursts["cash"][0].signal_id)
    assert (dlq[0].value, header_value(dlq[0].headers, "error-reason").split(":")[0]) == (b"\xc1 not msgpack", "undecodable")
    assert 'tradeflow_risk_decisions_total{origin="signal",outcome="rejected",reason="max_orders_per_minute"} 3.0' \
        in metrics
    assert 'tradeflow_risk_decisions_total{origin="manual",outcome="approved",reason=""} 4.0' in metrics
    assert f'tradeflow_risk_gross_exposure{{account="{ids["position"]}"}} 500.0' in metrics
    assert f'tradeflow_risk_account_state{{account="{ids["rate"]}",state="active"}} 1.0' in metrics
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        stored = (await (await conn.execute(
            "SELECT count(*) FROM risk_decisions WHERE decision_id = %s", (f"signal:{bursts['cash'][0].signal_id}",)
        )).fetchone())[0]
    assert stored == 1


async def test_kill_switch_api_limits_api_and_the_account_view(kafka_bootstrap, database_url, unique_name):
    tag = unique_name[-8:]
    first, second, exchange = f"ks1-{tag}", f"ks2-{tag}", f"ks-{tag}"  # no trade of this exchange anywhere
    settings = settings_for(kafka_bootstrap, database_url, unique_name,
                            [paper_account(first, exchange=exchange), paper_account(second, exchange=exchange)])
    async with Running(settings) as risk, risk.execution():
        client = risk.client
        resp = await client.put(f"/v1/accounts/{first}/limits", json={"max_order_notional": "-5", "max_open_orders": 3})
        assert resp.status_code == 422 and "max_order_notional" in resp.text
        resp = await client.put(f"/v1/accounts/{first}/limits", json={"max_order_notional": "1000", "nonsense": 1})
        assert resp.status_code == 422 and "nonsense" in resp.text
        resp = await client.put(f"/v1/accounts/{first}/limits", json={"max_order_notional": "1000"},
                                headers={"X-Tradeflow-Actor": "alice"})
        assert resp.status_code == 200 and resp.json()["version"] == 1
        current = (await client.get(f"/v1/accounts/{first}/limits")).json()
        assert (current["version"], current["changed_by"], current["limits"]["max_order_notional"]) == (1, "alice", "1000")
        assert (await client.get("/v1/accounts/nobody/limits")).status_code == 404

        # A signal sent inside the strategy's span: its order continues the same trace.
        feed = Telemetry("strategy-stand-in", CommonSettings(kafka_bootstrap=kafka_bootstrap))
        with feed.tracer.start_as_current_span("strategy decide") as span:
            await risk.send_signals([signal(first, 0, quantity="2", exchange=exchange)])
        (record,) = await read_topic(kafka_bootstrap, settings.orders_topic, lambda rs: len(rs) >= 1)
        assert header_value(record.headers, "traceparent").split("-")[1] == \
            format(span.get_span_context().trace_id, "032x")
        await position_known(client, first)

        called = time.monotonic()
        resp = await client.post("/v1/kill-switch", json={"account_id": "*", "engaged": True, "reason": "drill"})
        assert resp.status_code == 200 and sorted(resp.json()["accounts"]) == [first, second]
        events = await risk.events(lambda es: len([e for e in es if e.kind == "kill_switch"]) >= 2)
        seen = time.monotonic() - called
        assert seen < 1.0, f"the kill switch events took {seen:.2f}s to reach the topic"
        switches = {e.account_id: e for e in events if e.kind == "kill_switch"}
        assert {a: e.details for a, e in switches.items()} == {first: {"engaged": "true"}, second: {"engaged": "true"}}

        view = (await client.get(f"/v1/accounts/{first}/risk")).json()
        assert (view["state"], view["kill_switch"]["engaged"]) == ("halted", True)
        assert view["positions"][0]["quantity"] == "2" and view["exposure"] == {"BTC/USDT": "200"}
        metrics = (await client.get("/metrics")).text  # what the alert rules read (deploy/prometheus/rules)
        assert f'tradeflow_risk_kill_switch_engaged{{account="{first}"}} 1.0' in metrics
        assert f'tradeflow_risk_account_state{{account="{first}",state="halted"}} 1.0' in metrics
        assert f'tradeflow_risk_daily_pnl{{account="{first}"}} ' in metrics
        resp = await client.post("/v1/orders", json={"account_id": first, "exchange": exchange, "symbol": "BTC/USDT",
                                                     "side": "buy", "quantity": "1"})
        assert resp.status_code == 422 and resp.json()["detail"]["reason"] == "kill_switch"
        resp = await client.post("/v1/kill-switch", json={"account_id": first, "engaged": False})
        assert resp.json()["states"] == {first: "active"}
        metrics = (await client.get("/metrics")).text
        assert f'tradeflow_risk_kill_switch_engaged{{account="{first}"}} 0.0' in metrics
        assert f'tradeflow_risk_kill_switch_engaged{{account="{second}"}} 1.0' in metrics
        # No trade of the symbol seen yet: a market order has no price to be valued at.
        resp = await client.post("/v1/orders", json={"account_id": first, "exchange": exchange, "symbol": "BTC/USDT",
                                                     "side": "buy", "quantity": "1"})
        assert resp.status_code == 422 and resp.json()["detail"]["reason"] == "no_price"
        order = {"account_id": first, "exchange": exchange, "symbol": "BTC/USDT", "side": "buy",
                 "order_type": "limit", "quantity": "1", "limit_price": "99.5"}
        resp = await client.post("/v1/orders", headers={"Idempotency-Key": "k-1"}, json=order)
        again = await client.post("/v1/orders", headers={"Idempotency-Key": "k-1"}, json=order)
        assert (resp.status_code, again.status_code) == (201, 201), resp.text
        assert resp.json()["client_order_id"] == again.json()["client_order_id"] and again.json()["replayed"]
        assert (await client.post("/v1/kill-switch", json={"account_id": "nobody", "engaged": True})).status_code == 404


async def test_a_stop_triggers_on_a_trade_inside_a_candle_not_at_its_close(kafka_bootstrap, database_url, unique_name):
    account_id, exchange = f"stop-{unique_name[-8:]}", f"marks-{unique_name[-8:]}"
    settings = settings_for(kafka_bootstrap, database_url, unique_name, [paper_account(account_id, exchange=exchange)],
                            strategies={"inst": {"protective": {"stop_loss": {"pct": "5"}}}})
    key = market_key(exchange, "BTC/USDT")
    async with Running(settings) as risk, risk.execution():
        entry = signal(account_id, 0, quantity="3", exchange=exchange)
        await risk.send_signals([entry])
        await risk.orders(lambda os: len(os) >= 1)
        await position_known(risk.client, account_id)
        minute = T0 + 5 * MINUTE
        prices = [99.0, 96.0, 94.5, 97.0, 98.0]  # the 1m candle closes at 98, above the stop at 95
        ticks = [Tick(exchange=exchange, symbol="BTC/USDT", trade_id=f"s{i}", price=p, amount=0.5, side="sell",
                      ts_event=minute + i * 10 * NS, ts_recv=minute + i * 10 * NS) for i, p in enumerate(prices)]
        for tick in ticks:
            await risk.producer.send(settings.ticks_topic, key, tick)
        await risk.producer.send(settings.candles_topic, key, Candle(
            exchange=exchange, symbol="BTC/USDT", timeframe="1m", ts_start=minute, ts_end=minute + MINUTE,
            open=99.0, high=99.0, low=94.5, close=98.0, volume=2.5, trades=5))
        orders = await risk.orders(lambda os: len(os) >= 2)
        events = await risk.events(lambda es: any(e.kind == "protective_exit" for e in es))
    exit_order = orders[1]
    assert (exit_order.origin, exit_order.side, exit_order.quantity, exit_order.reduce_only) == (
        "protective", "sell", Decimal(3), True)
    assert exit_order.ts_event == ticks[2].ts_event  # the trade at 94.5, not the candle's close
    (announced,) = [e for e in events if e.kind == "protective_exit"]
    assert (announced.reason, announced.details["price"], announced.client_order_id) == (
        "stop_loss", "94.5", exit_order.client_order_id)
    assert decode(Order, (await read_topic(kafka_bootstrap, settings.orders_topic, lambda rs: len(rs) >= 2))[1].value) \
        == exit_order


async def test_amending_an_open_order_passes_the_gate_again_and_is_published_once(
        kafka_bootstrap, database_url, unique_name):
    account_id = f"amend-{unique_name[-8:]}"
    settings = settings_for(kafka_bootstrap, database_url, unique_name, [paper_account(account_id)],
                            {account_id: {"limits": {"max_order_notional": "250"}}})
    manual = {"account_id": account_id, "exchange": EXCHANGE, "symbol": "BTC/USDT", "side": "buy",
              "order_type": "limit", "quantity": "1", "limit_price": "100"}
    async with Running(settings) as risk:
        client = risk.client
        placed = await client.post("/v1/orders", json=manual, headers={"Idempotency-Key": "place-1"})
        assert placed.status_code == 201, placed.text
        cid = placed.json()["client_order_id"]

        missing = await client.patch("/v1/orders/no-such-order", json={"quantity": "2"})
        assert missing.status_code == 404 and "no-such-order" in missing.text
        empty = await client.patch(f"/v1/orders/{cid}", json={"reason": "nothing"})
        assert empty.status_code == 422 and "quantity or limit_price" in empty.text
        unauthorized = await client.patch(f"/v1/orders/{cid}", json={"quantity": "2"}, headers={"Authorization": ""})
        assert unauthorized.status_code == 401

        # The amended order meets the limits a new order of that size would: 5 x 100 > 250.
        too_big = await client.patch(f"/v1/orders/{cid}", json={"quantity": "5"}, headers={"Idempotency-Key": "a0"})
        assert too_big.status_code == 422, too_big.text
        detail = too_big.json()["detail"]
        assert (detail["reason"], detail["details"]["notional"], detail["details"]["limit"]) == (
            "max_order_notional", "500", "250")

        approved = await client.patch(f"/v1/orders/{cid}", json={"quantity": "2", "reason": "bigger"},
                                      headers={"Idempotency-Key": "a1"})
        assert approved.status_code == 200, approved.text
        assert (approved.json()["amendment_id"], approved.json()["replayed"]) == (f"{cid}:1", False)
        retried = await client.patch(f"/v1/orders/{cid}", json={"quantity": "2", "reason": "bigger"},
                                     headers={"Idempotency-Key": "a1"})
        assert (retried.status_code, retried.json()["amendment_id"], retried.json()["replayed"]) == (
            200, f"{cid}:1", True)
        price = await client.patch(f"/v1/orders/{cid}", json={"limit_price": "110"}, headers={"Idempotency-Key": "a2"})
        assert (price.status_code, price.json()["amendment_id"]) == (200, f"{cid}:2"), price.text
        view = (await client.get(f"/v1/accounts/{account_id}/risk")).json()
        (open_order,) = view["open_orders"]
        assert (open_order["quantity"], open_order["limit_price"]) == ("2", "110")  # counted at once: it grew

        # Execution refuses the first one (exec.orders.v1): risk's view follows what execution says.
        await risk.producer.send(settings.exec_orders_topic, account_id, OrderEvent(
            client_order_id=cid, account_id=account_id, exchange=EXCHANGE, symbol="BTC/USDT", side="buy",
            status="accepted", seq=2, quantity=Decimal("1"), limit_price=Decimal("110"),
            reason="amend_refused: exchange_refused", ts_event=T0))
        deadline = time.monotonic() + 20
        while (view := (await client.get(f"/v1/accounts/{account_id}/risk")).json())["open_orders"][0]["quantity"] != "1":
            assert time.monotonic() < deadline, view
            await asyncio.sleep(0.1)

        # A finished order cannot be amended (409, its state said); a retry still gets its decision.
        await risk.producer.send(settings.exec_orders_topic, account_id, OrderEvent(
            client_order_id=cid, account_id=account_id, exchange=EXCHANGE, symbol="BTC/USDT", side="buy",
            status="canceled", seq=3, quantity=Decimal("1"), limit_price=Decimal("110"), ts_event=T0))
        deadline = time.monotonic() + 20
        while (await client.get(f"/v1/accounts/{account_id}/risk")).json()["open_orders"]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        finished = await client.patch(f"/v1/orders/{cid}", json={"quantity": "1.5"}, headers={"Idempotency-Key": "a3"})
        assert finished.status_code == 409 and "is canceled" in finished.json()["detail"], finished.text
        late_retry = await client.patch(f"/v1/orders/{cid}", json={"quantity": "2"}, headers={"Idempotency-Key": "a1"})
        assert (late_retry.status_code, late_retry.json()["replayed"]) == (200, True)

        records = await read_topic(kafka_bootstrap, settings.orders_topic, lambda rs: len(rs) >= 5)
        events = await risk.events(lambda es: any(e.kind == "rejection" for e in es))
    schemas = [header_value(r.headers, "schema") for r in records]
    assert schemas == ["Order/1"] + ["OrderAmendment/1"] * 4  # the order; amendment 1, its replay, 2, a late replay
    amendments = [decode(OrderAmendment, r.value) for r in records[1:]]
    assert [(a.amendment_id, a.quantity, a.limit_price) for a in amendments] == [
        (f"{cid}:1", Decimal(2), None), (f"{cid}:1", Decimal(2), None), (f"{cid}:2", None, Decimal(110)),
        (f"{cid}:1", Decimal(2), None)]
    (rejection,) = [e for e in events if e.kind == "rejection"]
    assert (rejection.reason, rejection.client_order_id) == ("max_order_notional", cid)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT amendment_id, outcome, reason FROM risk_amendments WHERE client_order_id = %s "
                            "ORDER BY decided_at, decision_id", (cid,)).fetchall()
    assert rows == [(None, "rejected", "max_order_notional"), (f"{cid}:1", "approved", ""), (f"{cid}:2", "approved", "")]
