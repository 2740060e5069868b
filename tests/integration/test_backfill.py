"""`tradeflow backfill` as a process, against the local fake Binance and the real database.

The fake holds a few thousand trades over a few hours (more than one page per hour, so the
paging crosses page and window boundaries); after the backfill every timeframe read from the
database must equal the independent computation of tests/candle_oracle.py for those trades.
For an instrument registered with the XNYS calendar, every timeframe served by the
candle-builder's /v1/candles must equal tests/session_oracle.py's session bars instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
from datetime import UTC, date, datetime

import psycopg
import pytest
from tradeflow.messages import Tick
from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_ops.infra.processes import free_port

from tests.candle_oracle import ALL_TIMEFRAMES, expected_candles
from tests.fakes.fake_binance import FakeBinance, FakeTrade
from tests.session_oracle import TIMEFRAMES as SESSION_TIMEFRAMES
from tests.session_oracle import CalendarBars, Trade, expected_bars, iso

pytestmark = pytest.mark.integration

NS_PER_MS = 1_000_000
SINCE = datetime(2024, 3, 4, 1, 0, tzinfo=UTC)  # a Monday, 01:00
SINCE_MS = int(SINCE.timestamp() * 1000)
UNTIL_MS = SINCE_MS + 3 * 3_600_000
SYMBOL = "BTC/USDT"
SINCE_ARG, UNTIL_ARG = "2024-03-04T01:00:00Z", str(UNTIL_MS)


@pytest.fixture
async def fake_binance():
    fake = FakeBinance()
    await fake.start()
    yield fake
    await fake.stop()


def make_history(fake: FakeBinance, count: int = 4000, seed: int = 7) -> list[FakeTrade]:
    """``count`` trades from 10 minutes before the range to 10 minutes after it, plus a burst of
    40 trades in one millisecond; the fake numbers them in time order."""
    rng = random.Random(seed)
    price = 30_000.0
    rows = []
    for _ in range(count):
        price = max(1.0, price * (1 + rng.gauss(0, 0.001)))
        ts_ms = rng.randrange(SINCE_MS - 600_000, UNTIL_MS + 600_000)
        rows.append((ts_ms, price, rng.uniform(0.001, 2.0), rng.choice(("buy", "sell"))))
    burst_ms = SINCE_MS + 3_600_000 - 1  # the last millisecond of the first hour window
    rows += [(burst_ms, 30_000 + i, 0.5, "buy") for i in range(40)]
    return fake.record_trades("BTCUSDT", rows)


def ticks_in_range(exchange: str, trades: list[FakeTrade]) -> list[Tick]:
    return [
        Tick(exchange=exchange, symbol=SYMBOL, trade_id=str(t.trade_id), price=float(t.price), amount=float(t.amount),
             side="sell" if t.buyer_is_maker else "buy", ts_event=t.ts_ms * NS_PER_MS, ts_recv=t.trade_id)
        for t in trades if SINCE_MS <= t.ts_ms < UNTIL_MS
    ]


def exchanges_setting(name: str, fake: FakeBinance) -> str:
    return json.dumps([{"id": "binance", "name": name, "urls": {"public": fake.rest_url, "ws.spot": fake.ws_url}}])


async def backfill(database_url: str, exchanges: str, *args: str) -> tuple[int, str, str]:
    """Run `tradeflow backfill ARGS` as a process; (exit status, stdout, stderr)."""
    env = {**os.environ, "TRADEFLOW_DATABASE_URL": database_url, "TRADEFLOW_EXCHANGES": exchanges}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradeflow_ops.cli", "backfill", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 180)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode, stdout.decode(), stderr.decode()


def range_args(name: str, *extra: str) -> list[str]:
    return ["--exchange", name, "--symbol", SYMBOL, "--since", SINCE_ARG, "--until", UNTIL_ARG, *extra]


async def stored_candles(database_url: str, exchange: str, timeframe: str) -> dict[int, tuple]:
    store = CandleStore(database_url)
    await store.start()
    try:
        rows = await store.fetch_candles(exchange, SYMBOL, timeframe, datetime(2024, 1, 1, tzinfo=UTC), None, 100_000)
    finally:
        await store.stop()
    return {int(r.ts.timestamp()) * 1_000_000_000: (r.open, r.high, r.low, r.close, round(r.volume, 6), r.trades)
            for r in rows}


async def assert_candles_match(database_url: str, exchange: str, ticks: list[Tick], *, trade_counts: bool = True):
    for timeframe in ALL_TIMEFRAMES:
        want = {key[2]: values for key, values in expected_candles(ticks, timeframe).items()}
        got = await stored_candles(database_url, exchange, timeframe)
        if not trade_counts:  # candles from an exchange's klines carry no trade count
            want = {ts: (*values[:5], 0) for ts, values in want.items()}
        assert got == want, f"{timeframe}: {len(got)} stored vs {len(want)} expected candles differ"


def snapshot(database_url: str, exchange: str) -> tuple[list, list]:
    """Every stored 1m candle (revision and updated_at included) and every tick of ``exchange``."""
    with psycopg.connect(database_url) as conn:
        candles = conn.execute("SELECT ts, open, high, low, close, volume, trades, revision, updated_at FROM candles_1m "
                               "WHERE exchange = %s ORDER BY ts", (exchange,)).fetchall()
        ticks = conn.execute("SELECT ts, trade_id, price, amount, side, ts_recv FROM ticks WHERE exchange = %s "
                             "ORDER BY ts, trade_id", (exchange,)).fetchall()
    return candles, ticks


async def test_backfill_stores_the_trades_of_the_range_and_every_timeframe_matches_them(
    mode_url, fake_binance, unique_name
):
    """In every storage mode (with continuous aggregates the range is materialized at the end)."""
    database_url = mode_url
    name = f"bf-{unique_name}"
    ticks = ticks_in_range(name, make_history(fake_binance))
    code, out, err = await backfill(database_url, exchanges_setting(name, fake_binance), *range_args(name))

    assert code == 0, err
    assert f"trades fetched {len(ticks)}, new {len(ticks)}, minutes recomputed 180" in out
    assert "min of the range" in err  # the progress bar
    candles, stored_ticks = snapshot(database_url, name)
    assert len(stored_ticks) == len(ticks)  # nothing outside the range
    assert {revision for *_, revision, _updated in candles} == {0}  # each minute built once, like the live path
    await assert_candles_match(database_url, name, ticks)
    requests = [r for r in fake_binance.requests if "aggTrades" in r]
    assert len(requests) > 6, requests  # several pages per hour window


async def test_a_second_run_of_the_same_backfill_changes_nothing(database_url, fake_binance, unique_name):
    name = f"bf-{unique_name}"
    ticks = ticks_in_range(name, make_history(fake_binance, count=1500))
    exchanges = exchanges_setting(name, fake_binance)
    code, _, err = await backfill(database_url, exchanges, *range_args(name, "--no-progress"))
    assert code == 0, err
    before = snapshot(database_url, name)

    code, out, err = await backfill(database_url, exchanges, *range_args(name, "--no-progress"))

    assert code == 0, err
    assert f"trades fetched {len(ticks)}, new 0, minutes recomputed 0" in out
    assert snapshot(database_url, name) == before  # rows, revisions and updated_at untouched


async def test_a_backfill_that_overlaps_stored_trades_rebuilds_only_the_minutes_that_got_new_ones(
    database_url, fake_binance, unique_name
):
    name = f"bf-{unique_name}"
    ticks = ticks_in_range(name, make_history(fake_binance, count=1500))
    exchanges = exchanges_setting(name, fake_binance)
    first_hour_end = str(SINCE_MS + 3_600_000)
    code, _, err = await backfill(database_url, exchanges, "--exchange", name, "--symbol", SYMBOL, "--since",
                                  SINCE_ARG, "--until", first_hour_end, "--no-progress")
    assert code == 0, err
    first_hour = snapshot(database_url, name)[0]

    code, out, err = await backfill(database_url, exchanges, *range_args(name, "--no-progress"))

    assert code == 0, err
    assert "minutes recomputed 120" in out
    assert snapshot(database_url, name)[0][:60] == first_hour  # the first hour was not touched again
    await assert_candles_match(database_url, name, ticks)


async def test_a_rate_limited_backfill_waits_for_retry_after_and_completes(database_url, fake_binance, unique_name):
    name = f"bf-{unique_name}"
    ticks = ticks_in_range(name, make_history(fake_binance, count=1500))
    fake_binance.fail_rest(429, retry_after_s=1, times=2)

    code, out, err = await backfill(database_url, exchanges_setting(name, fake_binance), *range_args(name))

    assert code == 0, err
    assert len(fake_binance.refused_at) == 2
    assert err.count("429 Too Many Requests") == 2 and "retrying in 1.0s" in err, err  # the operator is told
    for refused in fake_binance.refused_at:
        next_request = min(t for t, _ in fake_binance.request_times if t > refused)
        assert next_request - refused >= 1.0, "asked again during Retry-After"
    assert f"new {len(ticks)}" in out
    await assert_candles_match(database_url, name, ticks)


async def test_a_backfill_stopped_by_a_failure_has_candles_for_all_it_stored_and_a_rerun_completes(
    database_url, fake_binance, unique_name
):
    name = f"bf-{unique_name}"
    ticks = ticks_in_range(name, make_history(fake_binance))
    exchanges = exchanges_setting(name, fake_binance)
    fake_binance.fail_rest(422, times=1, after=1)  # the second page is refused (ccxt ExchangeError: no retry)

    code, out, err = await backfill(database_url, exchanges, *range_args(name, "--no-progress"))

    assert code == 1 and "ExchangeError" in err, (out, err)
    stored_ids = {trade_id for _ts, trade_id, *_ in snapshot(database_url, name)[1]}
    assert 0 < len(stored_ids) < len(ticks)
    stored = [t for t in ticks if t.trade_id in stored_ids]
    # Even the minute the first page ended in has its candle (of the trades stored so far).
    want = {key[2]: values for key, values in expected_candles(stored, "1m").items()}
    assert await stored_candles(database_url, name, "1m") == want

    code, out, err = await backfill(database_url, exchanges, *range_args(name, "--no-progress"))

    assert code == 0, err
    await assert_candles_match(database_url, name, ticks)


@pytest.mark.parametrize("how", ["--source ohlcv", "auto, no trade history"])
async def test_without_trade_history_the_1m_candles_come_from_the_exchange(
    database_url, fake_binance, unique_name, how
):
    name = f"bf-{unique_name}"
    ticks = ticks_in_range(name, make_history(fake_binance, count=2500))
    args = range_args(name, "--source", "ohlcv") if how == "--source ohlcv" else range_args(name)
    fake_binance.serve_trade_history = how == "--source ohlcv"  # auto must notice on its own
    exchanges = exchanges_setting(name, fake_binance)

    code, out, err = await backfill(database_url, exchanges, *args)

    assert code == 0, err
    assert "from ohlcv: 1m candles fetched 180, written 180" in out
    assert snapshot(database_url, name)[1] == []  # no ticks: none were fetched
    await assert_candles_match(database_url, name, ticks, trade_counts=False)
    before = snapshot(database_url, name)
    code, out, err = await backfill(database_url, exchanges, *args)
    assert code == 0 and "written 0" in out, (out, err)
    assert snapshot(database_url, name) == before


async def test_a_replay_file_backfills_its_trades_of_that_market_and_range(database_url, tmp_path, unique_name):
    name = f"bf-{unique_name}"
    fake = FakeBinance()  # not started: only its trade generator is used
    trades = make_history(fake, count=2000)
    ticks = ticks_in_range(name, trades)
    path = tmp_path / "replay.csv"
    lines = ["ts,exchange,symbol,price,amount,side,trade_id"]
    lines += [f"{t.ts_ms},{name},{SYMBOL},{t.price},{t.amount},{'sell' if t.buyer_is_maker else 'buy'},{t.trade_id}"
              for t in trades]
    lines += [f"{SINCE_MS + 5},{name},ETH/USDT,2000,1,buy,x1", "not,a,valid,line"]
    path.write_text("\n".join(lines) + "\n")

    code, out, err = await backfill(database_url, "[]", *range_args(name, "--file", str(path)))

    assert code == 0, err
    outside = len(trades) - len(ticks)
    assert f"trades fetched {len(ticks)}, new {len(ticks)}" in out
    assert f"rejected 1, skipped {outside + 1}" in out
    await assert_candles_match(database_url, name, ticks)


@pytest.mark.parametrize(
    ("args", "option", "reason"),
    [
        (["--since", "yesterday"], "--since", "ISO 8601"),
        (["--until", "2024-03-04T00:00Z"], "--until", "must be after --since"),
        (["--until", "2999-01-01"], "--until", "in the future"),
        (["--exchange", "no-such-exchange"], "--exchange", "no-such-exchange"),
        (["--symbol", "NOPE/USDT"], "--symbol", "NOPE/USDT"),
        (["--file", "/nonexistent/replay.csv"], "--file", "no such file"),
    ],
)
async def test_bad_arguments_exit_2_naming_the_option(database_url, fake_binance, unique_name, args, option, reason):
    name = f"bf-{unique_name}"
    base = {"--exchange": name, "--symbol": SYMBOL, "--since": SINCE_ARG, "--until": UNTIL_ARG}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = [part for pair in base.items() for part in pair]

    code, out, err = await backfill(database_url, exchanges_setting(name, fake_binance), *argv)

    assert code == 2, (out, err)
    assert option in err and reason in err, err
    assert snapshot(database_url, name) == ([], [])


async def test_an_unreachable_database_is_named_and_fails(fake_binance, unique_name):
    name = f"bf-{unique_name}"
    make_history(fake_binance, count=10)
    url = f"postgresql://tradeflow@127.0.0.1:{free_port()}/tradeflow"

    code, out, err = await backfill(url, exchanges_setting(name, fake_binance), *range_args(name))

    assert code == 1, (out, err)
    assert "cannot reach the database" in err and "TRADEFLOW_DATABASE_URL" in err, err


async def test_an_exchange_that_keeps_failing_is_given_up_on_with_the_last_error(fake_binance):
    from tradeflow_candle_builder.backfill.exchange_history import ExchangeHistory, ExchangeUnavailable
    from tradeflow_exchanges.ccxt_client import ExchangeFeedSettings

    feed = ExchangeFeedSettings(id="binance", urls={"public": fake_binance.rest_url})
    notes: list[str] = []
    history = ExchangeHistory(feed, max_attempts=3, backoff_s=0.05, notify=notes.append)
    try:
        await history.check_symbol(SYMBOL)
        fake_binance.fail_rest(503, times=10)
        with pytest.raises(ExchangeUnavailable, match="fetch trades failed 3 times in a row; last: ExchangeNotAvailable"):
            await history.trades(SYMBOL, SINCE_MS, SINCE_MS + 1000)
    finally:
        await history.close()
    assert len(fake_binance.refused_at) == 3
    assert [note.split("retrying in ")[1] for note in notes] == ["0.1s", "0.1s"]  # 0.05 then 0.1 (capped backoff grows)


# --- an instrument with trading sessions (docs/adr/0008) -------------------------------------------

SESSION_SYMBOL = "AAPL/USD"
# Wednesday 2025-11-26 (regular session 14:30-21:00 UTC), Thanksgiving (closed) and Friday
# 2025-11-28 (early close at 13:00 New York, 18:00 UTC), with pre-market, after-hours and night trades.
SESSION_SINCE = datetime(2025, 11, 26, 8, 0, tzinfo=UTC)
SESSION_UNTIL = datetime(2025, 11, 29, 2, 0, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def make_session_history(fake: FakeBinance, seed: int = 11) -> list[FakeTrade]:
    """Trades all over the range (most of them outside the regular sessions), denser inside the
    two regular sessions, and one on each side of every regular and extended session bound."""
    rng = random.Random(seed)
    since, until = ms(SESSION_SINCE), ms(SESSION_UNTIL)
    sessions = [(ms(datetime(2025, 11, 26, 14, 30, tzinfo=UTC)), ms(datetime(2025, 11, 26, 21, 0, tzinfo=UTC))),
                (ms(datetime(2025, 11, 28, 14, 30, tzinfo=UTC)), ms(datetime(2025, 11, 28, 18, 0, tzinfo=UTC)))]
    times = [rng.randrange(since, until) for _ in range(1500)]
    times += [rng.randrange(start, end) for start, end in sessions for _ in range(900)]
    extended = [(ms(datetime(2025, 11, 26, 9, 0, tzinfo=UTC)), ms(datetime(2025, 11, 27, 1, 0, tzinfo=UTC))),
                (ms(datetime(2025, 11, 28, 9, 0, tzinfo=UTC)), ms(datetime(2025, 11, 28, 22, 0, tzinfo=UTC)))]
    times += [bound + delta for bounds in sessions + extended for bound in bounds for delta in (-1, 0)]
    price = 230.0
    rows = []
    for ts_ms in sorted(times):
        price = max(1.0, price * (1 + rng.gauss(0, 0.002)))
        rows.append((ts_ms, price, rng.uniform(1, 100), rng.choice(("buy", "sell"))))
    return fake.record_trades("AAPLUSD", rows)


@pytest.fixture
async def fake_stock_exchange():
    fake = FakeBinance(markets={"AAPLUSD": ("AAPL", "USD")})
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def candle_builder_settings(kafka_bootstrap, database_url, unique_name, api_key):
    from tradeflow_candle_builder.settings import CandleBuilderSettings

    return CandleBuilderSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, environment="test", api_keys=api_key,
        ticks_topic=f"ticks-{unique_name}", candles_topic=f"candles-{unique_name}",
        consumer_group=f"cb-{unique_name}", consumer_session_timeout_ms=6000, tick_retention_days=36_500)


@contextlib.asynccontextmanager
async def candle_builder_api(settings):
    """The candle-builder app in this process (its lifespan: registry, pipeline, API)."""
    import httpx
    from tradeflow_candle_builder.bootstrap import SERVICE

    app = SERVICE.create_app(settings)
    key = settings.api_keys.get_secret_value()  # POST /v1/instruments needs it
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cb",
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        async with app.router.lifespan_context(app):
            deadline = time.monotonic() + 30
            while (resp := await client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, resp.text
                await asyncio.sleep(0.2)
            yield client


def session_snapshot(database_url: str, exchange: str) -> tuple[list, list, list]:
    """Every 1m candle, session candle (revision and updated_at included) and tick of ``exchange``."""
    with psycopg.connect(database_url) as conn:
        session_rows = conn.execute(
            "SELECT timeframe, ts, ts_end, open, high, low, close, volume, trades, revision, updated_at "
            "FROM session_candles WHERE exchange = %s ORDER BY timeframe, ts", (exchange,)).fetchall()
    candles, ticks = snapshot(database_url, exchange)
    return candles, session_rows, ticks


async def assert_session_candles_match(client, database_url: str, exchange: str, trades: list[FakeTrade],
                                       calendar: CalendarBars, *, trade_counts: bool = True) -> None:
    """Every timeframe served by GET /v1/candles, and every stored session bar's cut end, equals
    tests/session_oracle.py's computation for ``trades``."""
    oracle_trades = [Trade(t.ts_ms, exchange, SESSION_SYMBOL, float(t.price), float(t.amount), str(t.trade_id))
                     for t in trades]  # in id order, which is the order the backfill reads them
    with psycopg.connect(database_url) as conn:
        stored_ends = {(tf, int(ts.timestamp() * 1000)): int(end.timestamp() * 1000) for tf, ts, end in conn.execute(
            "SELECT timeframe, ts, ts_end FROM session_candles WHERE exchange = %s", (exchange,))}
    for timeframe in SESSION_TIMEFRAMES:
        bars = expected_bars(oracle_trades, timeframe, calendar)
        want = [(iso(b.start_ms), *b.values()[:5], b.trades if trade_counts else 0) for b in bars]
        resp = await client.get("/v1/candles", params={
            "exchange": exchange, "symbol": SESSION_SYMBOL, "timeframe": timeframe,
            "start": "2025-11-20T00:00:00Z", "limit": "10000"})
        assert resp.status_code == 200, resp.text
        got = [(c["ts"], c["open"], c["high"], c["low"], c["close"], round(c["volume"], 6), c["trades"])
               for c in resp.json()]
        assert got == want, f"{timeframe}: {len(got)} served vs {len(want)} expected candles differ"
        if timeframe != "1m":
            assert {start: stored_ends[(timeframe, start)] for start, _ in
                    ((b.start_ms, b.end_ms) for b in bars)} == {b.start_ms: b.end_ms for b in bars}, timeframe


@pytest.mark.parametrize(("source", "extended_hours"), [("trades", False), ("ohlcv", False), ("trades", True)])
async def test_a_session_instrument_gets_session_candles_only_for_its_sessions(
    database_url, candle_builder_settings, fake_stock_exchange, unique_name, source, extended_hours
):
    name = f"ses-{unique_name[-8:]}"
    trades = [t for t in make_session_history(fake_stock_exchange)
              if ms(SESSION_SINCE) <= t.ts_ms < ms(SESSION_UNTIL)]
    exchanges = exchanges_setting(name, fake_stock_exchange)
    args = ["--exchange", name, "--symbol", SESSION_SYMBOL, "--since", SESSION_SINCE.isoformat(),
            "--until", SESSION_UNTIL.isoformat(), "--source", source, "--no-progress"]
    async with candle_builder_api(candle_builder_settings) as client:
        resp = await client.post("/v1/instruments", json={"exchange": name, "symbol": SESSION_SYMBOL,
                                                          "calendar": "XNYS", "extended_hours": extended_hours})
        assert resp.status_code == 201, resp.text

        code, out, err = await backfill(database_url, exchanges, *args)

        assert code == 0, (out, err)
        calendar = CalendarBars("XNYS", date(2025, 11, 17), date(2025, 12, 5), extended_hours=extended_hours)
        in_session = [t for t in trades if calendar.bar_of("1d", t.ts_ms) is not None]
        assert 0 < len(in_session) < len(trades) - 500  # many trades outside, pre/after-market or night
        candles, session_rows, ticks = session_snapshot(database_url, name)
        if source == "trades":
            assert f"trades fetched {len(trades)}, new {len(trades)}" in out, out
            assert f"outside sessions {len(trades) - len(in_session)}" in out, out
            assert len(ticks) == len(trades)  # trades outside the sessions are stored all the same
        else:
            assert ticks == []
        assert "session candles rebuilt" in out, out
        assert {revision for *_, revision, _updated in candles} == {0}
        assert {row[-2] for row in session_rows} == {0}  # each session bar built once, like the live path
        await assert_session_candles_match(client, database_url, name, in_session, calendar,
                                           trade_counts=source == "trades")

        code, out, err = await backfill(database_url, exchanges, *args)

        assert code == 0, (out, err)
        assert "session candles rebuilt 0" in out, out
        assert session_snapshot(database_url, name) == (candles, session_rows, ticks)  # nothing changed
