"""End to end: the risk process is killed (SIGKILL) in the middle of a burst of signals and started
again; the orders it approved must be exactly those of a run without the crash, each once.

The burst is, per account, cycles of: enter 1, enter 2 (which the cash cannot pay for while the
first is held), exit. Each decision depends on the fills of the one before, which a stand-in
for execution sends back; the determinism rule (a signal waits while a market order of its
account is in flight) makes the outcome independent of timing, and the stored decisions make it
independent of the crash. Afterwards ``tradeflow kill-switch on --all`` (the command, through
the API) puts a kill-switch event per account on the events topic.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from tradeflow.bus import Producer
from tradeflow.messages import Order, RiskEvent
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow_trading.ids import client_order_id_for_signal

from tests.e2e.service_process import ServiceProcess, free_port
from tests.risk_support import EXCHANGE, PaperExecution, decoded, read_all, read_topic, signal

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ACCOUNTS = 4
CYCLES = 6
BIN = Path(sys.executable).parent


def burst(tag: str) -> tuple[list, dict[str, tuple[str, Decimal]]]:
    """The signals, and the orders a run without a crash approves: client order id -> (side, quantity)."""
    signals, expected = [], {}
    for a in range(ACCOUNTS):
        account_id = f"crash{a}-{tag}"
        for cycle in range(CYCLES):
            enter = signal(account_id, 3 * cycle, quantity="1")
            too_big = signal(account_id, 3 * cycle + 1, quantity="2")  # 250 cash, 100 held: 200 does not fit
            leave = signal(account_id, 3 * cycle + 2, "exit")
            signals += [enter, too_big, leave]
            expected[client_order_id_for_signal(enter.signal_id)] = ("buy", Decimal(1))
            expected[client_order_id_for_signal(leave.signal_id)] = ("sell", Decimal(1))
    return signals, expected


async def test_a_sigkill_mid_burst_and_a_restart_give_the_orders_of_a_run_without_the_crash(
        service_env, unique_name, tmp_path, kafka_bootstrap, database_url):
    tag = unique_name[-8:]
    topics = {name: f"{name}-{unique_name}" for name in ("signals", "orders", "events", "exec-orders", "exec-fills",
                                                         "candles", "ticks")}
    port = free_port()
    env = {**os.environ, **service_env, "TRADEFLOW_HTTP_PORT": str(port), "TRADEFLOW_LOG_FORMAT": "text",
           "TRADEFLOW_INSTANCE_ID": "crash-test",
           "TRADEFLOW_ACCOUNTS": json.dumps([{"id": f"crash{a}-{tag}", "exchange": EXCHANGE,
                                              "balances": {"USDT": "250"}, "fees": {"maker": "0", "taker": "0"}}
                                             for a in range(ACCOUNTS)]),
           "TRADEFLOW_RISK_CONSUMER_GROUP": f"risk-{unique_name}",
           "TRADEFLOW_RISK_MARKET_DATA_GROUP": f"risk-md-{unique_name}",
           **{f"TRADEFLOW_RISK_{name.replace('-', '_').upper()}_TOPIC": topic for name, topic in topics.items()}}
    signals, expected = burst(tag)
    settings = CommonSettings(kafka_bootstrap=kafka_bootstrap)
    producer = Producer(settings, Telemetry("crash-feed", settings), client_id="crash-feed")
    risk = ServiceProcess("risk", env, port, tmp_path / "risk.log")
    risk.start()
    try:
        risk.wait_ready_blocking(60)
        await producer.start()
        async with PaperExecution(kafka_bootstrap, orders_topic=topics["orders"], events_topic=topics["exec-orders"],
                                  fills_topic=topics["exec-fills"]) as execution:
            for s in signals:
                producer.send(topics["signals"], s.account_id, s)
            await producer.flush()
            await read_topic(kafka_bootstrap, topics["orders"], lambda rs: len(rs) >= len(expected) // 3, 60)
            risk.kill()
            before_crash = await read_all(kafka_bootstrap, topics["orders"])
            assert len(before_crash) < len(expected), "the burst was over before the crash"
            risk.start()
            risk.wait_ready_blocking(60)
            records = await read_topic(kafka_bootstrap, topics["orders"],
                                       lambda rs: {o.client_order_id for o in decoded(rs, Order)} >= set(expected), 90)
            await asyncio.sleep(1.0)  # anything decided twice would show up now
            orders = decoded(await read_all(kafka_bootstrap, topics["orders"]), Order)
            assert len(orders) >= len(records)
            assert {o.client_order_id: (o.side, o.quantity) for o in orders} == expected
            assert set(execution.orders) == set(expected)  # execution saw no other order

            # Every signal decided once: the rejections are the too-big entries.
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                rows = await (await conn.execute(
                    "SELECT outcome, count(*) FROM risk_decisions WHERE account_id LIKE %s GROUP BY outcome",
                    (f"crash%-{tag}",))).fetchall()
            assert dict(rows) == {"approved": len(expected), "rejected": ACCOUNTS * CYCLES}

            # The operator's command, through the API: a kill-switch event per account.
            command = await asyncio.to_thread(
                subprocess.run, [str(BIN / "tradeflow"), "kill-switch", "on", "--all", "--reason", "drill"],
                env={**env, "TRADEFLOW_RISK_URL": risk.base}, capture_output=True, text=True, timeout=30)
            assert command.returncode == 0, command.stderr
            assert command.stdout.count("kill switch engaged, state halted") == ACCOUNTS
            events = decoded(await read_topic(kafka_bootstrap, topics["events"], lambda rs: sum(
                e.kind == "kill_switch" for e in decoded(rs, RiskEvent)) >= ACCOUNTS), RiskEvent)
            assert sorted(e.account_id for e in events if e.kind == "kill_switch") == sorted(
                f"crash{a}-{tag}" for a in range(ACCOUNTS))
    finally:
        await producer.stop()
        code = risk.stop()
    assert code in (0, -15), f"risk did not stop cleanly:\n{risk.log_tail()}"
