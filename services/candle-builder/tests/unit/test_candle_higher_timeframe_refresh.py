"""Which higher buckets a change of 1m candles re-aggregates, and in which order (pure)."""

from datetime import UTC, datetime

from tradeflow_candle_builder.adapters.higher_timeframes import (
    LEVELS,
    instrument_lock_keys,
    rebuild_statements,
    refresh_statements,
)
from tradeflow_candle_builder.domain.timeframes import MINUTE_NS, TIMEFRAMES, bucket_runs, datetime_to_ns


def ns(*args) -> int:
    return datetime_to_ns(datetime(*args, tzinfo=UTC))


def dt(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_adjacent_buckets_merge_into_one_run_and_distant_ones_stay_apart():
    spans = [("x", "A", ns(2026, 3, 5, 10, m), ns(2026, 3, 5, 10, m) + MINUTE_NS) for m in (3, 7, 9, 31)]
    spans.append(("x", "B", ns(2026, 3, 5, 10, 7), ns(2026, 3, 5, 10, 8)))
    assert bucket_runs(spans, TIMEFRAMES["5m"]) == [
        ("x", "A", ns(2026, 3, 5, 10, 0), ns(2026, 3, 5, 10, 10)),  # 10:00 and 10:05 buckets, adjacent
        ("x", "A", ns(2026, 3, 5, 10, 30), ns(2026, 3, 5, 10, 35)),
        ("x", "B", ns(2026, 3, 5, 10, 5), ns(2026, 3, 5, 10, 10)),
    ]
    assert bucket_runs(spans, TIMEFRAMES["1h"]) == [
        ("x", "A", ns(2026, 3, 5, 10), ns(2026, 3, 5, 11)), ("x", "B", ns(2026, 3, 5, 10), ns(2026, 3, 5, 11))]


def test_a_span_is_widened_to_whole_buckets_and_an_empty_span_is_nothing():
    # Sunday 23:59 .. Monday 00:01 touches two weeks; the end is exclusive.
    span = ("x", "A", ns(2026, 3, 1, 23, 59), ns(2026, 3, 2, 0, 1))
    assert bucket_runs([span], TIMEFRAMES["1w"]) == [("x", "A", ns(2026, 2, 23), ns(2026, 3, 9))]
    assert bucket_runs([("x", "A", ns(2026, 3, 2), ns(2026, 3, 2, 0, 1))], TIMEFRAMES["1w"]) == [
        ("x", "A", ns(2026, 3, 2), ns(2026, 3, 9))]
    assert bucket_runs([("x", "A", ns(2026, 3, 2), ns(2026, 3, 2))], TIMEFRAMES["1w"]) == []


def test_refresh_reaggregates_every_level_parents_first_from_the_touched_minutes_only():
    minutes = [("x", "A", ns(2026, 3, 5, 14, 37)), ("x", "A", ns(2026, 3, 5, 14, 38))]
    statements = refresh_statements(minutes)
    relations = [query.split()[2] for query, _ in statements]
    assert relations == ["candles_5m", "candles_15m", "candles_1h", "candles_4h", "candles_1d", "candles_1w"]
    expected = {
        "candles_5m": (dt(2026, 3, 5, 14, 35), dt(2026, 3, 5, 14, 40), "candles_1m"),
        "candles_15m": (dt(2026, 3, 5, 14, 30), dt(2026, 3, 5, 14, 45), "candles_5m"),
        "candles_1h": (dt(2026, 3, 5, 14), dt(2026, 3, 5, 15), "candles_15m"),
        "candles_4h": (dt(2026, 3, 5, 12), dt(2026, 3, 5, 16), "candles_1h"),
        "candles_1d": (dt(2026, 3, 5), dt(2026, 3, 6), "candles_1h"),
        "candles_1w": (dt(2026, 3, 2), dt(2026, 3, 9), "candles_1d"),
    }
    for relation, (query, params) in zip(relations, statements, strict=True):
        lo, hi, parent = expected[relation]
        assert params == {"exchange": ["x"], "symbol": ["A"], "lo": [lo], "hi": [hi]}, relation
        # Each run reads its parent by the key's range, inside a LATERAL aggregate.
        assert f"FROM {parent} p" in query and "CROSS JOIN LATERAL" in query
        assert "p.exchange = r.exchange AND p.symbol = r.symbol AND p.ts >= r.lo AND p.ts < r.hi" in query
        assert "ON CONFLICT (exchange, symbol, ts) DO UPDATE" in query and "IS DISTINCT FROM" in query
    assert refresh_statements([]) == []


def test_rebuild_clears_and_reaggregates_each_level_over_the_widened_range():
    statements = rebuild_statements("x", "A", ns(2026, 3, 4, 10, 1), ns(2026, 3, 4, 12, 1))
    assert len(statements) == 2 * len(LEVELS)
    clears = statements[0::2]
    assert [q.split()[2] for q, _ in clears] == [level.relation for level in LEVELS]
    assert all(q.startswith("DELETE FROM") and "ts >= %(lo)s AND ts < %(hi)s" in q for q, _ in clears)
    assert clears[0][1] == {"exchange": "x", "symbol": "A", "lo": dt(2026, 3, 4, 10), "hi": dt(2026, 3, 4, 12, 5)}
    assert clears[-1][1]["lo"] == dt(2026, 3, 2) and clears[-1][1]["hi"] == dt(2026, 3, 9)
    assert statements[1][1] == {"exchange": ["x"], "symbol": ["A"], "lo": [dt(2026, 3, 4, 10)],
                                "hi": [dt(2026, 3, 4, 12, 5)]}


def test_instrument_lock_keys_are_stable_sorted_and_distinct_per_instrument():
    keys = instrument_lock_keys({("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("kraken", "BTC/USDT")})
    assert keys == sorted(keys) and len(set(keys)) == 3
    assert all(-(2**63) <= k < 2**63 for k in keys)
    # The same in every process (another process, e.g. the backfill command, must agree).
    assert instrument_lock_keys([("binance", "BTC/USDT")]) == [-6117648172507323442]
    assert instrument_lock_keys([("binance", "BTC/USDT")]) == instrument_lock_keys([("binance", "BTC/USDT")] * 2)
