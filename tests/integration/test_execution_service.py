"""The execution service against the real broker and database.

Trades go to the service's ticks topic and orders to its orders topic, as ingest and risk publish
them; what a user sees must follow: exec.orders.v1 transitions with their seq, exec.fills.v1 fills
with exactly the prices and fees of the fill rule, the API's orders, fills, positions, balances
and reconciliation, a redelivered order that changes nothing, bad input rejected with its reason,
undecodable bytes in the DLQ, and a kill switch that cancels the account's open orders.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

import httpx
import pytest
from tradeflow.bus import Producer
from tradeflow.codec import header_value
from tradeflow.messages import Fill, Order, OrderEvent, RiskEvent, Tick
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import market_key
from tradeflow_execution.bootstrap import SERVICE
from tradeflow_execution.settings import ExecutionSettings
from tradeflow_trading.positions import Position

from tests.paper_fill_oracle import expected_fill
from tests.trading_topics import read_topic

pytestmark = pytest.mark.integration

S = 1_000_000_000
T0 = 1_772_445_600 * S  # 2026-03-02 10:00 UTC
FEES = {"maker": D("0.0002"), "taker": D("0.001")}
SLIPPAGE_BPS = D("5")


API_KEY = "execution-test-api-key-0123456789"


@pytest.fixture
def settings(kafka_bootstrap, database_url, unique_name) -> ExecutionSettings:
    u = unique_name
    return ExecutionSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, environment="test", api_keys=API_KEY,
        consumer_session_timeout_ms=6000, consumer_group=f"ex-{u}",
        orders_topic=f"orders-{u}", risk_events_topic=f"risk-events-{u}",
        ticks_topic=f"ticks-{u}", order_events_topic=f"exec-orders-{u}",
        fills_topic=f"exec-fills-{u}",
        accounts=[{"id": f"p-{u[-8:]}", "exchange": f"x{u[-8:]}", "balances": {"USDT": "10000"}, "fees": FEES,
                   "slippage_bps": str(SLIPPAGE_BPS)}],
        markets=[{"exchange": f"x{u[-8:]}", "symbol": "BTC/USDT", "price_step": "0.01",
                            "quantity_step": "0.0001"}])


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while (resp := await client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, resp.text
        await asyncio.sleep(0.2)


def final_events(events: list[OrderEvent]) -> dict[str, OrderEvent]:
    latest: dict[str, OrderEvent] = {}
    for event in events:
        if event.client_order_id not in latest or latest[event.client_order_id].seq < event.seq:
            latest[event.client_order_id] = event
    return latest


async def test_orders_become_transitions_and_fills_by_the_fill_rule_and_the_api_shows_them(settings):
    account = settings.accounts[0]
    exchange, key = account.exchange, market_key(account.exchange, "BTC/USDT")
    prices = [100.0, 100.4, 99.8, 101.2, 100.9, 101.5, 99.1, 98.7, 100.2, 100.6]
    ticks = [Tick(exchange=exchange, symbol="BTC/USDT", trade_id=f"t{n}", price=p, amount=2.0, side="buy",
                  ts_event=T0 + n * S, ts_recv=T0 + n * S) for n, p in enumerate(prices)]

    def order(cid: str, **fields) -> Order:
        base = dict(client_order_id=cid, account_id=account.id, exchange=exchange, symbol="BTC/USDT", side="buy",
                    order_type="market", quantity=D("0.5"), ts_event=T0 + 2 * S + S // 2)
        return Order(**{**base, **fields})

    market = order("m1", decision_price=D("99.8"))
    quote_sized = order("q1", quantity=None, quote_quantity=D("1000"), ts_event=T0 + 4 * S + 1)
    resting_buy = order("l-buy", order_type="limit", limit_price=D("90"), quantity=D("0.3"))
    resting_sell = order("l-sell", side="sell", order_type="limit", limit_price=D("150"), quantity=D("0.2"))
    bad = order("bad", quantity=D("0"))
    off_tick = order("off-tick", order_type="limit", limit_price=D("100.005"))
    wanted_final = {"m1": "filled", "q1": "filled", "l-buy": "accepted", "l-sell": "accepted", "bad": "rejected",
                    "off-tick": "rejected"}

    app = SERVICE.create_app(settings)
    producer_settings = CommonSettings(kafka_bootstrap=settings.kafka_bootstrap)
    producer = Producer(producer_settings, Telemetry("test-risk", producer_settings), client_id="test-risk")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://execution",
                                 headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        async with app.router.lifespan_context(app):
            await wait_ready(client)
            await producer.start()
            try:
                await asyncio.gather(*(producer.send(settings.ticks_topic, key, t) for t in ticks))
                sends = [producer.send(settings.orders_topic, account.id, o)
                         for o in (market, quote_sized, resting_buy, resting_sell, bad, off_tick, market)]
                sends.append(producer.send_raw(settings.orders_topic, account.id.encode(), b"\xc1 not an order",
                                               [("schema", b"Order/1")]))
                await asyncio.gather(*sends)

                events = await read_topic(settings.kafka_bootstrap, settings.order_events_topic, OrderEvent,
                                          lambda es: {c: e.status for c, e in final_events(es).items()} == wanted_final)
                by_order: dict[str, list] = {}
                for e in events:
                    by_order.setdefault(e.client_order_id, []).append((e.seq, e.status))
                assert by_order["m1"] == [(1, "submitted"), (2, "accepted"), (3, "filled")]  # once, though sent twice
                assert by_order["bad"] == [(1, "submitted"), (2, "rejected")]
                reasons = {c: e.reason.split(":")[0] for c, e in final_events(events).items() if e.status == "rejected"}
                assert reasons == {"bad": "invalid_quantity", "off-tick": "invalid_price"}

                fills = await read_topic(settings.kafka_bootstrap, settings.fills_topic, Fill,
                                         lambda fs: len(fs) >= 2)
                oracle = {o.client_order_id: expected_fill(o, ticks, maker=FEES["maker"], taker=FEES["taker"],
                                                           slippage_bps=SLIPPAGE_BPS, price_step=D("0.01"),
                                                           lot=D("0.0001")) for o in (market, quote_sized)}
                assert {f.client_order_id: (f.fill_id, f.quantity, f.price, f.fee, f.liquidity) for f in fills} == oracle
                assert oracle["m1"][:3] == ("m1:t3", D("0.5"), D("101.25"))  # 101.2 x 1.0005 = 101.2506 -> tick

                # The API: orders with transitions, cancel (404, 409), fills, positions, balances, reconcile.
                listed = (await client.get("/v1/orders", params={"account_id": account.id})).json()
                assert {o["client_order_id"]: o["status"] for o in listed} == wanted_final
                detail = (await client.get("/v1/orders/m1")).json()
                assert [t["status"] for t in detail["transitions"]] == ["submitted", "accepted", "filled"]
                assert D(detail["average_price"]) == D("101.25") and D(detail["fills"][0]["fee"]) == oracle["m1"][3]
                assert (await client.get("/v1/orders/nope")).status_code == 404
                canceled = await client.delete("/v1/orders/l-sell")
                assert (canceled.status_code, canceled.json()["status"]) == (200, "canceled"), canceled.text
                again = await client.delete("/v1/orders/l-sell")
                assert again.status_code == 409 and "is canceled" in again.json()["detail"]
                assert (await client.delete("/v1/orders/nope")).status_code == 404
                assert (await client.delete("/v1/orders/m1")).status_code == 409

                since = (await client.get("/v1/fills", params={"account_id": account.id,
                                                               "since": "2026-03-02T10:00:04Z"})).json()
                assert [f["fill_id"] for f in since] == [oracle["q1"][0]]
                assert (await client.get("/v1/fills", params={"since": "yesterday"})).status_code == 422
                (position,) = (await client.get("/v1/positions", params={"account_id": account.id})).json()
                folded = Position.fold(account.id, exchange, "BTC/USDT", fills)
                assert (D(position["quantity"]), D(position["average_price"])) == (folded.quantity, folded.average_price)
                assert D(position["unrealized_pnl"]) == folded.unrealized_pnl(D("100.6"))  # the last trade's price
                (balances,) = [a for a in (await client.get("/v1/accounts")).json() if a["id"] == account.id]
                spent = sum(f.quantity * f.price + f.fee for f in fills)
                assert {c: D(a) for c, a in balances["balances"].items()} == {"BTC": folded.quantity,
                                                                             "USDT": D("10000") - spent}
                reconcile = (await client.post(f"/v1/accounts/{account.id}/reconcile")).json()
                assert (reconcile["agreed"], reconcile["fills"]) == (True, 2), reconcile
                assert (await client.post("/v1/accounts/nobody/reconcile")).status_code == 404

                # The kill switch cancels what is still open, once.
                kill = RiskEvent(event_id=f"ks-{account.id}", account_id=account.id, kind="kill_switch",
                                 reason="kill_switch", message="manual", details={"engaged": "true"}, ts_event=T0)
                await producer.send(settings.risk_events_topic, account.id, kill)
                await producer.send(settings.risk_events_topic, account.id, kill)
                events = await read_topic(settings.kafka_bootstrap, settings.order_events_topic, OrderEvent,
                                          lambda es: getattr(final_events(es).get("l-buy"), "status", "") == "canceled")
                assert [(e.seq, e.status, e.reason) for e in events if e.client_order_id == "l-buy"][-1] == \
                    (3, "canceled", "kill_switch: manual")
                assert (await client.get("/v1/accounts")).json()[0]["halted"] is True

                dlq = await read_topic(settings.kafka_bootstrap, settings.orders_topic + ".dlq", bytes,
                                       lambda rs: len(rs) >= 1)
                assert dlq[0].value == b"\xc1 not an order"
                assert header_value(dlq[0].headers, "error-reason").startswith("undecodable")
                metrics = (await client.get("/metrics")).text
                assert 'tradeflow_execution_fills_total{liquidity="taker"} 2.0' in metrics
                assert 'tradeflow_execution_rejections_total{reason="invalid_price"} 1.0' in metrics
                assert "tradeflow_execution_slippage_bps_count 1.0" in metrics
            finally:
                await producer.stop()
