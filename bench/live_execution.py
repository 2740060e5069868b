"""Live execution against the fake Binance account on loopback (ADR 0022): how long orders take.

On a private broker and database, the execution service (in this process) with one live account
whose exchange is ``tests/fakes/fake_binance_account.py``. Figures:

* ``live_orders_accepted_per_s``: a burst of N resting limit orders on the orders topic, from the
  first send until every one is ``accepted`` (each is stored, sent with a signed create after an
  order book read, and its answer stored and published);
* ``live_fills_applied_s``: the fake fills all N at once; seconds until all are ``filled`` in the
  database (the user data stream wakes a poll round; its REST reads apply them);
* ``live_reconcile_s``: ``POST /v1/accounts/{id}/reconcile`` with those N orders and fills known.

No target in issue 15; the figures say what one live account costs over loopback (the fake answers
in well under a millisecond, a real exchange in tens). Prints JSON lines. Run:
``.venv/bin/python bench/live_execution.py [--orders N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from _common import emit, free_port, log  # noqa: E402

API_KEY = "bench-live-execution-key-0123456789"


async def run(bootstrap: str, database_url: str, count: int) -> None:
    import httpx
    from tradeflow.bus import Producer
    from tradeflow.messages import Order
    from tradeflow.settings import CommonSettings
    from tradeflow.telemetry import Telemetry
    from tradeflow_execution.bootstrap import SERVICE
    from tradeflow_execution.settings import ExecutionSettings

    from tests.fakes.fake_binance_account import FakeBinanceAccount

    fake = FakeBinanceAccount(api_key="k", secret="s", balances={"USDT": "100000000"})
    fake.market_price["BTCUSDT"] = Decimal("100")
    await fake.start()
    run_id = str(int(time.time()))
    settings = ExecutionSettings(
        kafka_bootstrap=bootstrap, database_url=database_url, environment="test", api_keys=API_KEY,
        consumer_session_timeout_ms=6000, consumer_group=f"bench-live-{run_id}",
        orders_topic=f"bench.live.{run_id}.orders", risk_events_topic=f"bench.live.{run_id}.risk",
        ticks_topic=f"bench.live.{run_id}.ticks", order_events_topic=f"bench.live.{run_id}.events",
        fills_topic=f"bench.live.{run_id}.fills", alerts_topic=f"bench.live.{run_id}.alerts",
        accounts=[{"id": "live-bench", "exchange": "binance", "mode": "live", "balances": {"USDT": "100000000"}}],
        exchanges=[{"id": "binance", "symbols": ["BTC/USDT"], "api_key": "k", "secret": "s",
                    "urls": {"public": fake.rest_url, "private": fake.rest_url, "ws.ws-api.spot": fake.ws_api_url}}])
    app = SERVICE.create_app(settings)
    common = CommonSettings(kafka_bootstrap=bootstrap)
    producer = Producer(common, Telemetry("bench", common), client_id="bench-live")
    orders = [Order(client_order_id=f"b{run_id}-{n}", account_id="live-bench", exchange="binance", symbol="BTC/USDT",
                    side="buy", order_type="limit", quantity=Decimal("0.01"), limit_price=Decimal("90"),
                    ts_event=time.time_ns()) for n in range(count)]
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://execution",
                                     headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120) as client:
            async with app.router.lifespan_context(app):
                deadline = time.monotonic() + 60
                while (await client.get("/readyz")).status_code != 200:
                    assert time.monotonic() < deadline, "execution not ready"
                    await asyncio.sleep(0.2)
                await producer.start()

                async def count_status(status: str) -> int:
                    listed = (await client.get("/v1/orders", params={"account_id": "live-bench", "status": status,
                                                                     "limit": 1000})).json()
                    return len(listed)

                async def until(status: str) -> None:
                    deadline = time.monotonic() + 600
                    while await count_status(status) < count:
                        assert time.monotonic() < deadline, f"not every order became {status}"
                        await asyncio.sleep(0.05)

                started = time.perf_counter()
                await asyncio.gather(*(producer.send(settings.orders_topic, o.account_id, o) for o in orders))
                await until("accepted")
                elapsed = time.perf_counter() - started
                emit("live_orders_accepted_per_s", round(count / elapsed, 1), "orders/s")

                started = time.perf_counter()
                for o in orders:
                    fake.fill(o.client_order_id)
                await until("filled")
                emit("live_fills_applied_s", round(time.perf_counter() - started, 3), "s")

                started = time.perf_counter()
                result = (await client.post("/v1/accounts/live-bench/reconcile")).json()
                emit("live_reconcile_s", round(time.perf_counter() - started, 3), "s")
                assert result["agreed"], result
                log(f"{len(fake.requests)} requests reached the fake")
    finally:
        await producer.stop()
        await fake.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=200)
    args = parser.parse_args()
    from tradeflow_db.migrate import upgrade
    from tradeflow_ops.infra import LocalInfra

    with tempfile.TemporaryDirectory() as tmp:
        infra = LocalInfra(Path(tmp), kafka_port=free_port(), db_port=free_port())
        try:
            infra.up()
            upgrade(infra.database_url)
            asyncio.run(run(infra.kafka_bootstrap, infra.database_url, args.orders))
        finally:
            infra.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
