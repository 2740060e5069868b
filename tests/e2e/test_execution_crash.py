"""Execution as a process, SIGKILLed in the middle of a burst of orders and started again.

Trades of three symbols are on the ticks topic; orders of two paper accounts (market, quote-sized
and limit) arrive in waves; execution is killed once the first transitions are out, then started
again, and more trades follow (orders resting since before the crash fill then). Afterwards every
order has exactly the transitions and every fill exactly the price and fee that design.md's fill
rule gives (tests/paper_fill_oracle.py): nothing lost, nothing doubled (a message published
again after the crash is identical to the first), and the positions are the fold of the fills.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import signal
import subprocess
from decimal import Decimal as D

import httpx
import pytest
from tradeflow.admin import ensure_topics
from tradeflow.bus import Producer
from tradeflow.messages import Fill, Order, OrderEvent, Tick
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import EXEC_FILLS, EXEC_ORDERS, MD_TICKS, RISK_ORDERS, market_key
from tradeflow_trading.positions import Position

from tests.e2e.service_process import BIN, ServiceProcess, free_port
from tests.paper_fill_oracle import expected_fill
from tests.trading_topics import checked_by_key, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

S = 1_000_000_000
T0 = 1_772_445_600 * S
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
FEES = {"maker": D("0.0002"), "taker": D("0.001")}
SLIPPAGE_BPS = D("3")
ORDERS, WAVES = 240, 8


def make_trades(exchange: str, start: int, count: int, seed: int) -> list[Tick]:
    rng = random.Random(seed)
    prices = {"BTC/USDT": 100.0, "ETH/USDT": 50.0, "SOL/USDT": 10.0}
    trades = []
    for n in range(start, start + count):
        symbol = SYMBOLS[n % 3]
        prices[symbol] = round(prices[symbol] * (1 + rng.gauss(0, 0.003)), 2)
        trades.append(Tick(exchange=exchange, symbol=symbol, trade_id=f"t{n}", price=prices[symbol],
                           amount=round(rng.uniform(0.1, 5), 3), side="buy", ts_event=T0 + n * S // 2,
                           ts_recv=T0 + n * S // 2))
    return trades


def make_orders(accounts: list[str], exchange: str) -> list[Order]:
    rng = random.Random(3)
    orders = []
    for n in range(ORDERS):
        symbol = rng.choice(SYMBOLS)
        reference = {"BTC/USDT": 100, "ETH/USDT": 50, "SOL/USDT": 10}[symbol]
        fields = dict(client_order_id=f"o{n:03d}", account_id=accounts[n % 2], exchange=exchange, symbol=symbol,
                      side=rng.choice(["buy", "sell"]), order_type="market", quantity=D(rng.randint(1, 30)) / 10,
                      # most within the trades before the crash (to 300 s), some in those after it
                      ts_event=T0 + rng.randint(0, 660) * S // 2 + 1)
        kind = rng.random()
        if kind < 0.2:
            fields.update(side="buy", quantity=None, quote_quantity=D(rng.randint(20, 300)))
        elif kind < 0.55:
            fields.update(order_type="limit",
                          limit_price=D(str(round(reference * rng.uniform(0.98, 1.02), 2))))
        orders.append(Order(**fields))
    return orders


async def test_sigkill_mid_burst_and_restart_gives_the_fill_rules_orders_and_fills(service_env, api_key, unique_name,
                                                                                     tmp_path):
    bootstrap = service_env["TRADEFLOW_KAFKA_BOOTSTRAP"]
    u = unique_name[-8:]
    exchange, accounts = f"x{u}", [f"crash-a-{u}", f"crash-b-{u}"]
    topics = {"ORDERS": f"orders-{unique_name}", "TICKS": f"ticks-{unique_name}",
              "ORDER_EVENTS": f"exec-orders-{unique_name}", "FILLS": f"exec-fills-{unique_name}",
              "RISK_EVENTS": f"risk-events-{unique_name}"}
    await ensure_topics(bootstrap, [dataclasses.replace(spec, name=topics[name]) for name, spec in (
        ("ORDERS", RISK_ORDERS), ("TICKS", MD_TICKS), ("ORDER_EVENTS", EXEC_ORDERS), ("FILLS", EXEC_FILLS))])
    port = free_port()
    env = {**os.environ, **service_env, "TRADEFLOW_HTTP_PORT": str(port), "TRADEFLOW_LOG_FORMAT": "text",
           "TRADEFLOW_EXECUTION_CONSUMER_GROUP": f"ex-{unique_name}",
           # small batches and a small window: the burst spans many transactions and some orders read back
           "TRADEFLOW_EXECUTION_CONSUMER_MAX_BATCH": "40", "TRADEFLOW_EXECUTION_TRADE_WINDOW": "30",
           "TRADEFLOW_ACCOUNTS": json.dumps([{"id": a, "exchange": exchange, "balances": {"USDT": "100000"},
                                              "fees": {k: str(v) for k, v in FEES.items()},
                                              "slippage_bps": str(SLIPPAGE_BPS)} for a in accounts]),
           **{f"TRADEFLOW_EXECUTION_{name}_TOPIC": topic for name, topic in topics.items()}}
    before, after = make_trades(exchange, 0, 600, seed=1), make_trades(exchange, 600, 90, seed=2)
    orders = make_orders(accounts, exchange)

    settings = CommonSettings(kafka_bootstrap=bootstrap)
    producer = Producer(settings, Telemetry("test-crash", settings), client_id="test-crash")
    await producer.start()
    execution = ServiceProcess("execution", env, port, tmp_path / "execution.log")
    execution.start()
    try:
        await asyncio.gather(*(producer.send(topics["TICKS"], market_key(t.exchange, t.symbol), t) for t in before))
        async with httpx.AsyncClient() as client:
            await execution.wait_ready(client, 60)
            per_wave = ORDERS // WAVES
            await asyncio.gather(*(producer.send(topics["ORDERS"], o.account_id, o) for o in orders[:per_wave]))
            # The first wave is placed and partly filled (positions exist) before the crash.
            await read_topic(bootstrap, topics["ORDER_EVENTS"], OrderEvent, lambda es: len(es) >= 60)

            def wave(w: int):
                return asyncio.gather(*(producer.send(topics["ORDERS"], o.account_id, o)
                                        for o in orders[w * per_wave:(w + 1) * per_wave]))

            await wave(1)
            execution.kill()  # mid-burst: wave 1 is being handled; the other waves go out while it is down
            assert execution.proc.returncode == -signal.SIGKILL
            await asyncio.gather(*(wave(w) for w in range(2, WAVES)))
            execution.start()
            await execution.wait_ready(client, 60)
            await asyncio.gather(*(producer.send(topics["TICKS"], market_key(t.exchange, t.symbol), t) for t in after))

            trades = before + after
            oracle = {o.client_order_id: expected_fill(o, trades, maker=FEES["maker"], taker=FEES["taker"],
                                                       slippage_bps=SLIPPAGE_BPS, price_step=D("1e-8"),
                                                       lot=D("1e-8")) for o in orders}
            wanted = {cid: "filled" if fill else "accepted" for cid, fill in oracle.items()}

            def settled(events: list[OrderEvent]) -> bool:
                latest: dict[str, OrderEvent] = {}
                for e in events:
                    if e.client_order_id not in latest or latest[e.client_order_id].seq < e.seq:
                        latest[e.client_order_id] = e
                return {c: e.status for c, e in latest.items()} == wanted

            events = await read_topic(bootstrap, topics["ORDER_EVENTS"], OrderEvent, settled, timeout_s=90)
            transitions = checked_by_key(events, lambda e: (e.client_order_id, e.seq))
            for order in orders:
                statuses = [transitions[(order.client_order_id, seq)].status
                            for seq in range(1, 1 + sum(1 for k in transitions if k[0] == order.client_order_id))]
                done = ["filled"] if oracle[order.client_order_id] else []
                assert statuses == ["submitted", "accepted", *done], (order.client_order_id, statuses)

            expected_fills = {v[0]: v for v in oracle.values() if v}
            fills = await read_topic(bootstrap, topics["FILLS"], Fill,
                                     lambda fs: {f.fill_id for f in fs} >= set(expected_fills), timeout_s=30)
            unique_fills = checked_by_key(fills, lambda f: f.fill_id)
            assert {i: (i, f.quantity, f.price, f.fee, f.liquidity) for i, f in unique_fills.items()} == expected_fills
            assert sum(1 for v in expected_fills.values() if v[4] == "maker") > 0  # some rested across the crash

            base = execution.base
            stored = (await client.get(f"{base}/v1/orders", params={"limit": 1000})).json()
            mine = {o["client_order_id"]: o["status"] for o in stored if o["account_id"] in accounts}
            assert mine == wanted
            for account in accounts:
                positions = (await client.get(f"{base}/v1/positions", params={"account_id": account})).json()
                for symbol in SYMBOLS:
                    folded = Position.fold(account, exchange, symbol,
                                           [f for f in unique_fills.values() if (f.account_id, f.symbol) == (account, symbol)])
                    (got,) = [p for p in positions if p["symbol"] == symbol]
                    assert (D(got["quantity"]), D(got["average_price"]), D(got["realized_pnl"])) == \
                        (folded.quantity, folded.average_price, folded.realized_pnl), (account, symbol)
                reconcile = (await client.post(f"{base}/v1/accounts/{account}/reconcile",
                                               headers={"Authorization": f"Bearer {api_key}"})).json()
                assert reconcile["agreed"], reconcile

            # The operator commands on the same API.
            def tradeflow(*args: str) -> subprocess.CompletedProcess:
                return subprocess.run([str(BIN / "tradeflow"), *args, "--url", base], capture_output=True, text=True,
                                      timeout=60, env={**os.environ, "TRADEFLOW_API_KEYS": api_key})

            listed = tradeflow("orders", "list", "--account", accounts[0], "--limit", "1000", "--json")
            assert {o["client_order_id"]: o["status"] for o in json.loads(listed.stdout)} == \
                {o.client_order_id: wanted[o.client_order_id] for o in orders if o.account_id == accounts[0]}
            resting = next(cid for cid, status in sorted(wanted.items()) if status == "accepted")
            canceled = tradeflow("orders", "cancel", resting)
            assert (canceled.returncode, canceled.stdout.strip()) == (0, f"order {resting}: canceled (filled 0)")
            again = tradeflow("orders", "cancel", resting)
            assert again.returncode == 1 and "409" in again.stderr and "is canceled" in again.stderr
            table = tradeflow("positions", "--account", accounts[1]).stdout.splitlines()
            assert table[0].split()[:4] == ["account_id", "exchange", "symbol", "quantity"]
            assert sorted(line.split()[2] for line in table[1:]) == sorted(SYMBOLS)
    finally:
        await producer.stop()
        code = execution.stop()
    assert code in (0, -signal.SIGTERM), f"execution did not stop cleanly:\n{execution.log_tail()}"
