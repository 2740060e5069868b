"""End to end: a replay file goes through `tradeflow replay`, the broker and a running
candle-builder process; every candle `/v1/candles` returns (1m, 5m, 1h) equals the one computed
independently from the file, and the closed 1m candles on md.candles.v1 equal them too.

Then the candle-builder and the broker are restarted (Tansu keeps everything in memory: the new
broker has no trades, no candles and no committed offsets) and the same file is replayed again.
Every trade is already stored, so nothing may change (docs/adr/0005): while the second replay
runs, the stored candles of every timeframe are read in a loop and none may ever differ from its
value before (revisions included), and nothing may be emitted on md.candles.v1. In both local
database modes.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from datetime import timedelta

import httpx
import psycopg
import pytest
from tradeflow_db.engine import libpq_url

from tests.e2e.candles_topic import emitted_candles, final_revisions
from tests.e2e.replay_scenario import START, expected_candles, write_replay_file
from tests.e2e.service_process import BIN, candle_builder_env, running_candle_builder

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

HIGHER_RELATIONS = ("candles_5m", "candles_15m", "candles_1h", "candles_4h", "candles_1d", "candles_1w")


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


async def _consume_closed_1m(bootstrap: str, exchanges: set[str], wait_s: float) -> dict:
    """Every 1m candle of our exchanges on md.candles.v1, last revision wins."""
    final = final_revisions(await emitted_candles(bootstrap, exchanges, wait_s=wait_s))
    return {(ex, sym, ts): c for (ex, sym, tf, ts), c in final.items() if tf == "1m"}


def _writer_queue_depth(base: str) -> float:
    found = re.search(r"^tradeflow_candles_writer_queue_depth (\S+)$", httpx.get(f"{base}/metrics", timeout=5).text,
                      re.M)
    return float(found.group(1)) if found else 0.0


def _stored_candles(conn: psycopg.Connection, exchanges: list[str]) -> dict[tuple, tuple]:
    """Every stored candle of these exchanges, each timeframe's relation read directly:
    {(relation, exchange, symbol, ts): values}, 1m rows with their revision."""
    found = {}
    for relation in ("candles_1m", *HIGHER_RELATIONS):
        revision = ", revision" if relation == "candles_1m" else ""
        rows = conn.execute(f"SELECT exchange, symbol, ts, open, high, low, close, volume, trades{revision} "
                            f"FROM {relation} WHERE exchange = ANY(%s)", (exchanges,)).fetchall()
        found.update({(relation, *row[:3]): tuple(row[3:]) for row in rows})
    return found


def _differences(before: dict[tuple, tuple], now: dict[tuple, tuple]) -> list[tuple]:
    return [(key, before.get(key), now.get(key)) for key in sorted(set(before) | set(now), key=str)
            if before.get(key) != now.get(key)]


@pytest.mark.parametrize("database", ["database_url", "plain_postgres_url"])
def test_replayed_file_gives_exactly_the_independently_computed_candles_and_again_after_restarts_changes_nothing(
        database, request, private_broker, unique_name, tmp_path):
    database_url = request.getfixturevalue(database)
    env = candle_builder_env({
        "TRADEFLOW_ENVIRONMENT": "test",
        "TRADEFLOW_KAFKA_BOOTSTRAP": private_broker.kafka_bootstrap,
        "TRADEFLOW_DATABASE_URL": database_url,
        "TRADEFLOW_CONSUMER_SESSION_TIMEOUT_MS": "6000",  # Tansu joins a group in about half of it
        # Small batches, written one by one: minutes are consumed and stored in several parts,
        # as with many busy markets (so a partial state of a minute is stored for a while).
        "TRADEFLOW_CANDLE_BUILDER_CONSUMER_MAX_BATCH": "100",
        "TRADEFLOW_CANDLE_BUILDER_DB_BATCH_ROWS": "1",
    }, f"candle-builder-{unique_name}")
    with running_candle_builder(env, tmp_path / "candle-builder.log") as (base, log):
        rows, replay_file = _first_replay_gives_the_computed_candles(
            base, log, env, private_broker.kafka_bootstrap, unique_name, tmp_path)

    # Restart the broker (everything on it is gone) and the candle-builder, and replay the same file.
    private_broker.down(components=["kafka"])
    private_broker.up(postgres=False)
    exchanges = sorted({r.exchange for r in rows})
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        before = _stored_candles(conn, exchanges)
        assert sum(1 for key in before if key[0] == "candles_1m") == sum(
            len(expected_candles(rows, ex, sym, "1m")) for ex, sym in {(r.exchange, r.symbol) for r in rows})
        with running_candle_builder(env, tmp_path / "candle-builder-restarted.log") as (base, log):
            replay_log = tmp_path / "replay-again.log"
            with replay_log.open("w") as out:
                replay = subprocess.Popen([str(BIN / "tradeflow"), "replay", str(replay_file)], env=env,
                                          stdout=out, stderr=subprocess.STDOUT)
            try:
                changes: list[tuple] = []
                reads = 0
                deadline = time.monotonic() + 90
                # Read while the service takes the trades in and writes, then a little longer
                # for what it may still do with them.
                settled_at = None
                while settled_at is None or time.monotonic() < settled_at:
                    changes.extend(_differences(before, _stored_candles(conn, exchanges)))
                    reads += 1
                    if settled_at is None and _ticks_seen(base) >= len(rows) and _writer_queue_depth(base) == 0:
                        settled_at = time.monotonic() + 3
                    assert time.monotonic() < deadline, f"the second replay was not consumed:\n{log.read_text()[-3000:]}"
                    time.sleep(0.05)
            finally:
                replay.wait(timeout=60)
            assert replay.returncode == 0, replay_log.read_text()
            changed_values = [c for c in changes if c[1] is None or c[2] is None or c[1][:6] != c[2][:6]]
            smaller = [c for c in changed_values if c[1] is not None and (c[2] is None or c[2][5] < c[1][5])]
            assert not changes, (
                f"{len(changes)} changes of stored candles seen in {reads} reads: {len(changed_values)} of their "
                f"values ({len(smaller)} with fewer trades), the others of revisions; e.g. (candle, before, then): "
                f"{(smaller or changed_values or changes)[:5]}")
            assert _stored_candles(conn, exchanges) == before
    emitted = asyncio.run(emitted_candles(private_broker.kafka_bootstrap, set(exchanges), wait_s=10, idle_s=3))
    assert emitted == [], f"{len(emitted)} candles emitted for trades already stored, e.g. {emitted[:3]}"


def _first_replay_gives_the_computed_candles(base: str, log, env: dict[str, str], bootstrap: str, unique_name: str,
                                             tmp_path) -> tuple[list, object]:
    prefix = f"e2e{unique_name}"
    replay_file = tmp_path / "trades.csv"
    rows, bad_lines = write_replay_file(replay_file, prefix)

    result = subprocess.run([str(BIN / "tradeflow"), "replay", str(replay_file)],
                            env=env, capture_output=True, text=True, timeout=120)
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
    emitted = asyncio.run(_consume_closed_1m(bootstrap, {ex for ex, _ in markets}, wait_s=60))
    for exchange, symbol in markets:
        want = expected_candles(rows, exchange, symbol, "1m")[:-1]
        got = sorted((c for (ex, sym, _), c in emitted.items() if ex == exchange and sym == symbol),
                     key=lambda c: c.ts_start)
        got_cmp = [(c.open, c.high, c.low, c.close, round(c.volume, 6), c.trades) for c in got[: len(want)]]
        want_cmp = [(e.open, e.high, e.low, e.close, round(e.volume, 6), e.trades) for e in want]
        assert got_cmp == want_cmp, f"{exchange} {symbol}: md.candles.v1 differs from the file"
    return rows, replay_file
