"""End to end: a replay file goes through `tradeflow replay`, the broker and a running
candle-builder process; every candle `/v1/candles` returns (1m, 5m, 1h) equals the one computed
independently from the file, and the closed 1m candles on md.candles.v1 equal them too."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from datetime import timedelta

import httpx
import pytest

from tests.e2e.candles_topic import emitted_candles, final_revisions
from tests.e2e.replay_scenario import START, expected_candles, write_replay_file
from tests.e2e.service_process import BIN

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _api_candles(base: str, exchange: str, symbol: str, timeframe: str) -> list[dict]:
    resp = httpx.get(f"{base}/v1/candles", params={
        "exchange": exchange, "symbol": symbol, "timeframe": timeframe,
        "start": START.isoformat(), "end": (START + timedelta(hours=4)).isoformat(), "limit": 10000,
    }, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _as_comparable(candles) -> list[tuple]:
    return [(c["ts"], c["open"], c["high"], c["low"], c["close"], round(c["volume"], 6), c["trades"])
            for c in candles]


def _expected_comparable(expected) -> list[tuple]:
    return [(e.ts.isoformat().replace("+00:00", "Z"), e.open, e.high, e.low, e.close, round(e.volume, 6), e.trades)
            for e in expected]


def _normalise_ts(candles: list[dict]) -> list[dict]:
    for c in candles:
        c["ts"] = c["ts"].replace("+00:00", "Z")
    return candles


def _ticks_seen(base: str) -> float:
    """Trades the candle-builder has taken in: on time plus late (from /metrics)."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    total = 0.0
    for name in ("tradeflow_candles_ticks_processed_total", "tradeflow_candles_late_ticks_total"):
        found = re.search(rf"^{name} (\S+)$", text, re.M)
        total += float(found.group(1)) if found else 0.0
    return total


async def _count_candle_records(bootstrap: str, exchanges: set[str]) -> int:
    """Records on md.candles.v1 for these exchanges, every timeframe and revision."""
    return len(await emitted_candles(bootstrap, exchanges, idle_s=3))


async def _consume_closed_1m(bootstrap: str, exchanges: set[str], wait_s: float) -> dict:
    """Every 1m candle of our exchanges on md.candles.v1, last revision wins."""
    final = final_revisions(await emitted_candles(bootstrap, exchanges, wait_s=wait_s))
    return {(ex, sym, ts): c for (ex, sym, tf, ts), c in final.items() if tf == "1m"}


def test_replayed_file_gives_exactly_the_independently_computed_candles(
        candle_builder, service_env, kafka_bootstrap, unique_name, tmp_path):
    base, log = candle_builder
    prefix = f"e2e{unique_name}"
    replay_file = tmp_path / "trades.csv"
    rows, bad_lines = write_replay_file(replay_file, prefix)

    result = subprocess.run([str(BIN / "tradeflow"), "replay", str(replay_file)],
                            env={**os.environ, **service_env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.stdout + result.stderr
    for line_no in bad_lines:
        assert f"line {line_no}" in report, f"replay did not report bad line {line_no}:\n{report}"
    assert f"{len(rows)}" in report  # the published count

    markets = sorted({(r.exchange, r.symbol) for r in rows})
    # Wait until the last trade of every market is visible through the API.
    deadline = time.monotonic() + 90
    while True:
        done = all(_normalise_ts(_api_candles(base, ex, sym, "1m"))[-1:] and
                   _as_comparable(_normalise_ts(_api_candles(base, ex, sym, "1m")))[-1]
                   == _expected_comparable(expected_candles(rows, ex, sym, "1m"))[-1]
                   for ex, sym in markets)
        if done:
            break
        assert time.monotonic() < deadline, f"candles did not catch up:\n{log.read_text()[-3000:]}"
        time.sleep(1)

    for exchange, symbol in markets:
        for timeframe in ("1m", "5m", "1h"):
            got = _as_comparable(_normalise_ts(_api_candles(base, exchange, symbol, timeframe)))
            want = _expected_comparable(expected_candles(rows, exchange, symbol, timeframe))
            assert got == want, f"{exchange} {symbol} {timeframe}: API differs from the file"

    # The stream: each 1m candle that closed (all but the last per market, whose bucket the
    # replay's own time never passed) was emitted with the same values.
    emitted = asyncio.run(_consume_closed_1m(kafka_bootstrap, {ex for ex, _ in markets}, wait_s=60))
    for exchange, symbol in markets:
        want = expected_candles(rows, exchange, symbol, "1m")[:-1]
        got = sorted((c for (ex, sym, _), c in emitted.items() if ex == exchange and sym == symbol),
                     key=lambda c: c.ts_start)
        got_cmp = [(c.open, c.high, c.low, c.close, round(c.volume, 6), c.trades) for c in got[: len(want)]]
        want_cmp = [(e.open, e.high, e.low, e.close, round(e.volume, 6), e.trades) for e in want]
        assert got_cmp == want_cmp, f"{exchange} {symbol}: md.candles.v1 differs from the file"

    # Replaying the same file again changes nothing: no stored candle, no new candle on the topic.
    timeframes = ("1m", "5m", "15m", "1h", "4h", "1d", "1w")
    stored = {(ex, sym, tf): _api_candles(base, ex, sym, tf) for ex, sym in markets for tf in timeframes}
    exchanges = {ex for ex, _ in markets}
    records_before = asyncio.run(_count_candle_records(kafka_bootstrap, exchanges))
    seen_before = _ticks_seen(base)
    again = subprocess.run([str(BIN / "tradeflow"), "replay", str(replay_file)],
                           env={**os.environ, **service_env}, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    deadline = time.monotonic() + 60
    while _ticks_seen(base) < seen_before + len(rows):
        assert time.monotonic() < deadline, f"the second replay was not consumed:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    for (ex, sym, tf), before in stored.items():
        assert _api_candles(base, ex, sym, tf) == before, f"{ex} {sym} {tf} changed after the same trades again"
    assert asyncio.run(_count_candle_records(kafka_bootstrap, exchanges)) == records_before
