"""End to end: trading sessions. Three instruments are registered through ``POST /v1/instruments``
of a running candle-builder (one 24/7, one XNYS, one XNYS with extended hours), then a replay
file goes through ``tradeflow replay`` and the broker into it: nine trading days in two stretches
(a three-week gap between them) around the US daylight-saving change of 2025-11-02 and around
Thanksgiving (2025-11-27, a holiday) with the early close of 2025-11-28, trades around the clock
(nights, weekends, the holiday, pre-market and after-hours), out-of-order trades within the grace
period and late trades after it (minutes to a day late, some outside the session).

Every timeframe from ``/v1/candles`` and the final (highest revision) candles on md.candles.v1,
with their cut ends, must equal the independent computation of tests/session_oracle.py.
"""

from __future__ import annotations

import asyncio
import csv
import os
import random
import subprocess
import time
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest

from tests.e2e.candles_topic import emitted_candles, final_revisions
from tests.e2e.service_process import BIN
from tests.session_oracle import TIMEFRAMES, CalendarBars, Trade, expected_bars, iso

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

GRACE_MS = 2_000  # the service's default candle grace period
WINDOWS = [  # (from, to) UTC: DST change on Sunday 11-02; Thanksgiving 11-27 + early close 11-28
    (datetime(2025, 10, 30, 12, 0, tzinfo=UTC), datetime(2025, 11, 4, 2, 0, tzinfo=UTC)),
    (datetime(2025, 11, 25, 12, 0, tzinfo=UTC), datetime(2025, 12, 2, 2, 0, tzinfo=UTC)),
]
# Trades exactly on and next to session bounds (UTC), for both XNYS instruments.
BOUNDARY_TRADES = [
    "2025-10-31T13:30:00", "2025-10-31T19:59:59.500", "2025-10-31T20:00:00",  # EDT open / close
    "2025-10-31T08:00:00", "2025-10-31T07:59:59",  # EDT pre-market start
    "2025-11-03T14:29:59", "2025-11-03T14:30:00", "2025-11-03T20:59:00", "2025-11-03T21:00:00",  # EST
    "2025-11-27T15:00:00", "2025-11-27T18:30:00",  # Thanksgiving
    "2025-11-28T08:59:59", "2025-11-28T09:00:00", "2025-11-28T14:30:00", "2025-11-28T17:59:59",
    "2025-11-28T18:00:00", "2025-11-28T21:59:00", "2025-11-28T22:00:00",  # early close, after-hours to 17:00
]
# Late trades after the grace period, (arrival, event time) UTC, for every market. The replay is cut
# into several files at these arrivals (and at each UTC midnight), each replayed once the service
# has consumed the previous ones, so these are late for the service too.
LATE_TRADES = [
    ("2025-10-31T15:10:00", "2025-10-31T15:05:30"),  # 1m, 5m closed; 15m, 1h still open
    ("2025-10-31T17:00:00", "2025-10-31T14:40:00"),  # 1m .. 1h closed; 4h open
    ("2025-11-03T15:00:00", "2025-10-31T19:00:00"),  # the previous session and week closed
    ("2025-11-26T16:00:00", "2025-11-26T03:00:00"),  # a night: outside every session
    ("2025-11-28T16:00:00", "2025-11-27T16:00:00"),  # Thanksgiving: outside every session
    ("2025-11-28T19:00:00", "2025-11-28T17:59:30"),  # the last (cut) bars of the early close
    ("2025-12-01T15:00:00", "2025-11-28T20:00:00"),  # after-hours of the early close: counts only when extended
]
TRAILING = datetime(2025, 12, 8, 15, 0, tzinfo=UTC)  # a Monday in session: closes every earlier bar


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _utc_ms(text: str) -> int:
    return _ms(datetime.fromisoformat(text).replace(tzinfo=UTC))


class MarketFeed:
    """One market's trades: a random walk of prices, numbered trade ids."""

    def __init__(self, exchange: str, symbol: str, price: float, rng: random.Random) -> None:
        self.exchange, self.symbol, self.price, self.rng, self.n = exchange, symbol, price, rng, 0

    def trade(self, ts_ms: int) -> Trade:
        self.n += 1
        self.price = round(max(1.0, self.price * (1 + self.rng.gauss(0, 0.002))), 2)
        return Trade(ts_ms, self.exchange, self.symbol, self.price, round(self.rng.uniform(0.1, 5.0), 3),
                     f"{self.symbol}-{self.n}")


def make_trades(markets: list[tuple[str, str]], seed: int = 3) -> list[tuple[int, Trade]]:
    """(arrival ms, trade) in arrival order: a few per hour per market, with out-of-order and late ones."""
    rng = random.Random(seed)
    rows: list[tuple[int, int, Trade]] = []  # (arrival time, tie-break, trade)
    for m, (exchange, symbol) in enumerate(markets):
        feed = MarketFeed(exchange, symbol, 100.0 + 50 * m, rng)
        for first, last in WINDOWS:
            t = _ms(first)
            while t < _ms(last):
                rows.append((t, len(rows), feed.trade(t)))
                if rng.random() < 0.12:  # out of order within the grace period (may cross a minute)
                    rows.append((t, len(rows), feed.trade(t - rng.randint(200, 1_500))))
                if rng.random() < 0.04:  # late, after the grace period: 3 minutes to a day
                    late_by = rng.choice([3 * 60_000, 20 * 60_000, 2 * 3_600_000, 26 * 3_600_000])
                    rows.append((t, len(rows), feed.trade(t - late_by)))
                t += rng.randint(2, 20) * 60_000 + rng.randint(0, 59_999)
        for arrival, event in LATE_TRADES:
            rows.append((_utc_ms(arrival), len(rows), feed.trade(_utc_ms(event))))
        if exchange.endswith("nyse"):
            for text in BOUNDARY_TRADES:
                ts = _ms(datetime.fromisoformat(text).replace(tzinfo=UTC))
                rows.append((ts, len(rows), feed.trade(ts)))
        ts = _ms(TRAILING)
        rows.append((ts, len(rows), feed.trade(ts)))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [(r[0], r[2]) for r in rows]


def replay_parts(arrivals: list[tuple[int, Trade]]) -> list[list[Trade]]:
    """The trades cut at each UTC midnight and before each planned late trade (arrival order kept)."""
    cuts = {_utc_ms(arrival) for arrival, _ in LATE_TRADES}
    parts: list[list[Trade]] = [[]]
    previous = None
    for arrival, trade in arrivals:
        if parts[-1] and (arrival in cuts and arrival != previous or arrival // 86_400_000 != previous // 86_400_000):
            parts.append([])
        parts[-1].append(trade)
        previous = arrival
    return parts


def write_replay(path: Path, trades: list[Trade]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ts", "exchange", "symbol", "price", "amount", "side", "trade_id"])
        for i, t in enumerate(trades):
            w.writerow([t.ts_ms, t.exchange, t.symbol, t.price, t.amount, "buy" if i % 2 else "sell", t.trade_id])


def _api(base: str, exchange: str, symbol: str, timeframe: str) -> list[tuple]:
    resp = httpx.get(f"{base}/v1/candles", params={
        "exchange": exchange, "symbol": symbol, "timeframe": timeframe,
        "start": "2025-10-27T00:00:00Z", "end": "2025-12-31T00:00:00Z", "limit": 10000}, timeout=30)
    assert resp.status_code == 200, resp.text
    return [(c["ts"].replace("+00:00", "Z"), c["open"], c["high"], c["low"], c["close"], round(c["volume"], 6),
             c["trades"]) for c in resp.json()]


async def _final_candles(bootstrap: str, exchanges: set[str], wait_s: float) -> dict:
    """Every candle of our exchanges on md.candles.v1, highest revision per bucket."""
    return final_revisions(await emitted_candles(bootstrap, exchanges, wait_s=wait_s))


def _counter(metrics: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def _consumed(base: str) -> float:
    """Trades the service has folded (on time or late) or set aside (outside a session)."""
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(_counter(metrics, name) for name in (
        "tradeflow_candles_ticks_processed_total", "tradeflow_candles_late_ticks_total",
        "tradeflow_candles_ticks_outside_session_total"))


def _settled(base: str, quiet_s: float = 3.0, timeout_s: float = 60) -> float:
    """The consumed count once it stops moving: md.ticks.v1 may hold other tests' trades, which a
    new consumer group reads first."""
    deadline = time.monotonic() + timeout_s
    last, since = _consumed(base), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, "the candle-builder kept consuming older trades"
        time.sleep(0.3)
        now = _consumed(base)
        if now != last:
            last, since = now, time.monotonic()
    return last


def _wait_consumed(base: str, count: float, log: Path, timeout_s: float = 60) -> None:
    """Until the service has consumed ``count`` trades in all (see _consumed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = _consumed(base)
        if done >= count:
            return
        assert time.monotonic() < deadline, f"{done} of {count} trades consumed:\n{log.read_text()[-3000:]}"
        time.sleep(0.3)


def test_session_instruments_follow_their_calendar_through_dst_holiday_and_early_close(
        candle_builder, service_env, kafka_bootstrap, unique_name, tmp_path, api_key):
    base, log = candle_builder
    crypto = (f"s{unique_name[-8:]}-crypto", "BTC/USDT")
    stock = (f"s{unique_name[-8:]}-nyse", "AAPL")
    stock_ext = (f"s{unique_name[-8:]}-nyse", "MSFT")
    registrations = [(crypto, "24/7", False), (stock, "XNYS", False), (stock_ext, "XNYS", True)]
    for (exchange, symbol), calendar, extended in registrations:
        resp = httpx.post(f"{base}/v1/instruments", json={
            "exchange": exchange, "symbol": symbol, "calendar": calendar, "extended_hours": extended},
            headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
        assert resp.status_code == 201, resp.text
    listed = httpx.get(f"{base}/v1/instruments", timeout=10).json()
    for (exchange, symbol), calendar, extended in registrations:
        assert {"exchange": exchange, "symbol": symbol, "calendar": calendar, "extended_hours": extended} in listed

    markets = [crypto, stock, stock_ext]
    arrivals = make_trades(markets)
    trades = [t for _, t in arrivals]
    sent = _settled(base)
    for i, part in enumerate(replay_parts(arrivals)):
        replay = tmp_path / f"trades-{i}.csv"
        write_replay(replay, part)
        result = subprocess.run([str(BIN / "tradeflow"), "replay", str(replay)],
                                env={**os.environ, **service_env}, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        sent += len(part)
        _wait_consumed(base, sent, log)

    calendars = {crypto: None,
                 stock: CalendarBars("XNYS", date(2025, 10, 27), date(2025, 12, 12), extended_hours=False),
                 stock_ext: CalendarBars("XNYS", date(2025, 10, 27), date(2025, 12, 12), extended_hours=True)}
    expected = {(m, tf): expected_bars([t for t in trades if (t.exchange, t.symbol) == m], tf, calendars[m])
                for m in markets for tf in TIMEFRAMES}

    def want(m, tf) -> list[tuple]:
        return [(iso(b.start_ms), *b.values()) for b in expected[(m, tf)]]

    # The scenario covers what it claims to (so the comparison below cannot pass vacuously).
    assert [iso(b.start_ms) for b in expected[(stock, "1d")]] == [  # no Thanksgiving; 13:30 -> 14:30 after DST
        "2025-10-30T13:30:00Z", "2025-10-31T13:30:00Z", "2025-11-03T14:30:00Z", "2025-11-25T14:30:00Z",
        "2025-11-26T14:30:00Z", "2025-11-28T14:30:00Z", "2025-12-01T14:30:00Z", "2025-12-08T14:30:00Z"]
    assert any(b.end_ms - b.start_ms == 3.5 * 3_600_000 for b in expected[(stock, "1d")])  # the early close
    outside = [t for t in trades if (t.exchange, t.symbol) == stock and calendars[stock].bar_of("1d", t.ts_ms) is None]
    assert len(outside) > 100
    assert sum(b.trades for b in expected[(stock_ext, "1d")]) > sum(b.trades for b in expected[(stock, "1d")])

    deadline = time.monotonic() + 180
    while True:
        pending = [(m, tf) for m in markets for tf in TIMEFRAMES if _api(base, *m, tf) != want(m, tf)]
        if not pending:
            break
        if time.monotonic() > deadline:
            m, tf = pending[0]
            got = _api(base, *m, tf)
            diff = [(g, w) for g, w in zip(got, want(m, tf), strict=False) if g != w][:5]
            raise AssertionError(f"{len(pending)} (market, timeframe) pairs differ, e.g. {m} {tf}: "
                                 f"{len(got)} vs {len(want(m, tf))} candles, first differences {diff}\n"
                                 f"{log.read_text()[-3000:]}")
        time.sleep(2)

    # The stream: every bucket that ends before the trailing trades closed, with its final values
    # and its cut end.
    final = asyncio.run(_final_candles(kafka_bootstrap, {m[0] for m in markets}, wait_s=90))
    horizon = _ms(TRAILING) - GRACE_MS
    for m in markets:
        for tf in TIMEFRAMES:
            closed = [b for b in expected[(m, tf)] if b.end_ms <= horizon]
            got = sorted((c for (ex, sym, ctf, _), c in final.items() if (ex, sym) == m and ctf == tf),
                         key=lambda c: c.ts_start)
            got = [c for c in got if c.ts_end <= horizon * 1_000_000]
            assert [(c.ts_start // 1_000_000, c.ts_end // 1_000_000, c.open, c.high, c.low, c.close,
                     round(c.volume, 6), c.trades) for c in got] == \
                   [(b.start_ms, b.end_ms, *b.values()) for b in closed], f"{m} {tf}: md.candles.v1 differs"

    # The late trades did correct closed candles (emitted again with a higher revision): 1m and
    # session-aligned ones up to the week of 10-27; and the trades outside the sessions were set aside.
    for m in markets:
        corrected = {tf for (ex, sym, tf, _), c in final.items() if (ex, sym) == m and c.revision > 0}
        assert {"1m", "5m", "1h", "1d"} <= corrected, (m, corrected)
    assert (stock[0], stock[1], "1w", _utc_ms("2025-10-27T13:30:00") * 1_000_000) in {
        k for k, c in final.items() if c.revision > 0}
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    assert _counter(metrics, "tradeflow_candles_late_ticks_total") >= 3 * 4
    assert _counter(metrics, "tradeflow_candles_ticks_outside_session_total") >= len(outside)
