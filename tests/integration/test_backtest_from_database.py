"""``tradeflow backtest`` without ``--candles``: the candles come from the database through the
running candle-builder's GET /v1/candles, paged, and give the same run as the same candles in a file."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import uvicorn
from tradeflow.messages import Candle
from tradeflow_backtest.data import write_candles_csv
from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_candle_builder.bootstrap import SERVICE
from tradeflow_candle_builder.settings import CandleBuilderSettings
from tradeflow_ops.cli.main import main

from tests.strategy_candles import random_walk

MINUTES = 12_345  # more than one page of 10,000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_backtest_on_stored_candles_equals_the_same_candles_from_a_file(
        database_url, kafka_bootstrap, unique_name, tmp_path, monkeypatch, capsys):
    exchange = f"bt-{unique_name[-8:]}"
    frame = random_walk(MINUTES, 51)
    store = CandleStore(database_url)
    await store.start()
    try:
        await store.upsert_candles_1m([
            Candle(exchange=exchange, symbol="BTC/USDT", timeframe="1m", ts_start=int(frame.ts_start[i]),
                   ts_end=int(frame.ts_end[i]), open=float(frame.open[i]), high=float(frame.high[i]),
                   low=float(frame.low[i]), close=float(frame.close[i]), volume=float(frame.volume[i]), trades=1)
            for i in range(MINUTES)])
    finally:
        await store.stop()
    settings = CandleBuilderSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, environment="test",
        ticks_topic=f"ticks-{unique_name}", candles_topic=f"candles-{unique_name}", consumer_group=f"cb-{unique_name}",
        consumer_session_timeout_ms=6000, tick_retention_days=36_500, http_host="127.0.0.1", http_port=free_port())
    server = uvicorn.Server(uvicorn.Config(SERVICE.create_app(settings), host="127.0.0.1", port=settings.http_port,
                                           log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{settings.http_port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            deadline = time.monotonic() + 30
            while True:
                assert not task.done(), "the candle-builder stopped at start"
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "candle-builder not ready in 30 s"
                await asyncio.sleep(0.2)
        monkeypatch.setenv("TRADEFLOW_CANDLE_BUILDER_URL", url)
        argv = ["backtest", "--strategy", "sma_cross", "--params", '{"fast": 10, "slow": 30}', "--exchange", exchange,
                "--symbol", "BTC/USDT", "--timeframe", "1m", "--since", "2026-01-05T00:00Z", "--until",
                "2026-01-15T00:00Z", "--json", "--no-store", "--no-progress", "--slippage-bps", "2"]
        code = await asyncio.to_thread(main, argv)
        from_database = capsys.readouterr().out
        assert code == 0
        candles = tmp_path / "same.csv"
        with candles.open("w") as out:
            write_candles_csv(frame, out)
        code = await asyncio.to_thread(main, [*argv, "--candles", str(candles)])
        from_file = capsys.readouterr().out
        assert code == 0
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
    result = json.loads(from_database)
    assert len(result["equity"]) == MINUTES and result["metrics"]["trades"] > 50
    assert from_database == from_file
