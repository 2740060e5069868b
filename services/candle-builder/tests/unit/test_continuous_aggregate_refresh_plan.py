"""Which continuous-aggregate refreshes a write plans, in which order (pure; licensed mode).

The same plans run against a real licensed TimescaleDB in
tests/integration/test_db_continuous_aggregates.py; these pin the decisions case by case.
"""

from datetime import UTC, datetime

from tradeflow_candle_builder.adapters.continuous_aggregates import (
    MAX_WINDOWS_PER_LEVEL,
    RELATIONS,
    RefreshWindow,
    correction_plan,
    merge_windows,
    range_plan,
    watermark_ns,
)
from tradeflow_candle_builder.domain.timeframes import MINUTE_NS, datetime_to_ns


def ns(*args) -> int:
    return datetime_to_ns(datetime(*args, tzinfo=UTC))


NOW = ns(2026, 3, 18, 12, 7, 30)  # a Wednesday


def marks(**by_timeframe) -> dict[str, int | None]:
    return {relation: by_timeframe.get(relation.removeprefix("candles_"), None) for relation in RELATIONS}


def everywhere(watermark: int | None) -> dict[str, int | None]:
    return dict.fromkeys(RELATIONS, watermark)


def test_a_minute_above_every_watermark_needs_no_refresh():
    assert correction_plan([ns(2026, 3, 18, 11, 58)], everywhere(ns(2026, 3, 18, 11, 55)), NOW) == []
    assert correction_plan([ns(2026, 3, 18, 11, 58)], everywhere(None), NOW) == []  # nothing materialized


def test_a_minute_below_every_watermark_refreshes_its_bucket_at_every_level_parents_first():
    minute = ns(2026, 3, 9, 0, 3)  # the first hour of Monday 9 March
    plan = correction_plan([minute], everywhere(ns(2026, 3, 18)), NOW)
    assert plan == [
        RefreshWindow("candles_5m", ns(2026, 3, 9), ns(2026, 3, 9, 0, 5)),
        RefreshWindow("candles_15m", ns(2026, 3, 9), ns(2026, 3, 9, 0, 15)),
        RefreshWindow("candles_1h", ns(2026, 3, 9), ns(2026, 3, 9, 1)),
        RefreshWindow("candles_4h", ns(2026, 3, 9), ns(2026, 3, 9, 4)),
        RefreshWindow("candles_1d", ns(2026, 3, 9), ns(2026, 3, 10)),
        RefreshWindow("candles_1w", ns(2026, 3, 9), ns(2026, 3, 16)),
    ]


def test_only_the_levels_whose_bucket_lies_below_their_watermark_are_refreshed():
    # 5m, 15m and 1h are materialized past the minute's buckets; 4h, 1d and 1w are not (real-time).
    minute = ns(2026, 3, 18, 9, 3)
    plan = correction_plan([minute], marks(**{"5m": ns(2026, 3, 18, 11), "15m": ns(2026, 3, 18, 11),
                                             "1h": ns(2026, 3, 18, 11), "4h": ns(2026, 3, 18, 8),
                                             "1d": ns(2026, 3, 18), "1w": ns(2026, 3, 16)}), NOW)
    assert [w.relation for w in plan] == ["candles_5m", "candles_15m", "candles_1h"]


def test_a_burst_of_adjacent_minutes_of_many_instruments_is_one_window_per_level():
    minutes = [ns(2026, 3, 10, 14, 0) + i * MINUTE_NS for i in range(40)]  # 14:00-14:39, any instrument
    plan = correction_plan(minutes * 3, everywhere(ns(2026, 3, 18)), NOW)
    assert [w.relation for w in plan] == list(RELATIONS)
    assert plan[0] == RefreshWindow("candles_5m", ns(2026, 3, 10, 14), ns(2026, 3, 10, 14, 40))
    assert plan[1] == RefreshWindow("candles_15m", ns(2026, 3, 10, 14), ns(2026, 3, 10, 14, 45))


def test_scattered_corrections_are_joined_across_the_smallest_gaps_into_a_bounded_number_of_calls():
    minutes = [ns(2026, 3, 2) + day * 86_400 * 10**9 for day in range(12)]  # one a day for 12 days
    plan = correction_plan(minutes, everywhere(ns(2026, 3, 18)), NOW)
    per_level = {relation: [w for w in plan if w.relation == relation] for relation in RELATIONS}
    assert len(per_level["candles_5m"]) == MAX_WINDOWS_PER_LEVEL
    assert len(per_level["candles_1d"]) == 1  # 12 adjacent days
    covered = per_level["candles_5m"]
    assert all(any(w.start_ns <= m < w.end_ns for w in covered) for m in minutes)


def test_a_parent_is_materialized_up_to_the_end_of_a_child_window_from_its_own_watermark():
    # 15m materialized to 07:30 while 5m stopped at 07:20 (a lagging 5m policy): correcting
    # 07:16 refreshes 15m's 07:15 bucket, which reads 5m's 07:15, 07:20 and 07:25.
    plan = correction_plan([ns(2026, 3, 12, 7, 16)],
                           marks(**{"5m": ns(2026, 3, 12, 7, 20), "15m": ns(2026, 3, 12, 7, 30)}), NOW)
    assert plan == [RefreshWindow("candles_5m", ns(2026, 3, 12, 7, 15), ns(2026, 3, 12, 7, 30)),
                    RefreshWindow("candles_15m", ns(2026, 3, 12, 7, 15), ns(2026, 3, 12, 7, 30))]


def test_a_parent_with_nothing_materialized_is_refreshed_from_the_beginning():
    plan = correction_plan([ns(2026, 3, 12, 7, 16)], marks(**{"15m": ns(2026, 3, 12, 7, 30)}), NOW)
    assert plan[0] == RefreshWindow("candles_5m", None, ns(2026, 3, 12, 7, 30))


def test_a_range_refresh_stops_before_the_forming_bucket_of_each_level():
    # A backfill of the last two hours, up to now (Wednesday 12:07:30).
    plan = range_plan(ns(2026, 3, 18, 10), NOW + MINUTE_NS, everywhere(ns(2026, 3, 18, 10)), NOW)
    assert {w.relation: (w.start_ns, w.end_ns) for w in plan} == {
        "candles_5m": (ns(2026, 3, 18, 10), ns(2026, 3, 18, 12, 5)),
        "candles_15m": (ns(2026, 3, 18, 10), ns(2026, 3, 18, 12)),
        "candles_1h": (ns(2026, 3, 18, 10), ns(2026, 3, 18, 12)),
        "candles_4h": (ns(2026, 3, 18, 8), ns(2026, 3, 18, 12)),  # 08:00-12:00 is complete at 12:07
    }  # 1d and 1w: today and this week are still forming, left to real-time aggregation


def test_a_range_above_the_watermark_is_refreshed_from_the_watermark():
    # Materialized up to 1 March; a backfill of 10-11 March must not leave 1-10 March hidden.
    plan = range_plan(ns(2026, 3, 10), ns(2026, 3, 11), everywhere(ns(2026, 3, 1)), NOW)
    assert {w.relation: w.start_ns for w in plan} == dict.fromkeys(RELATIONS, ns(2026, 3, 1))
    nothing = range_plan(ns(2026, 3, 10), ns(2026, 3, 11), everywhere(None), NOW)
    assert {w.start_ns for w in nothing} == {None}


def test_a_range_below_the_watermark_is_refreshed_as_given_widened_to_whole_buckets():
    plan = range_plan(ns(2026, 3, 10, 9, 7), ns(2026, 3, 10, 9, 8), everywhere(ns(2026, 3, 18)), NOW)
    # Below every watermark nothing is extended: each window is the range in whole buckets.
    assert [(w.relation, w.start_ns, w.end_ns) for w in plan] == [
        ("candles_5m", ns(2026, 3, 10, 9, 5), ns(2026, 3, 10, 9, 10)),
        ("candles_15m", ns(2026, 3, 10, 9), ns(2026, 3, 10, 9, 15)),
        ("candles_1h", ns(2026, 3, 10, 9), ns(2026, 3, 10, 10)),
        ("candles_4h", ns(2026, 3, 10, 8), ns(2026, 3, 10, 12)),
        ("candles_1d", ns(2026, 3, 10), ns(2026, 3, 11)),
        ("candles_1w", ns(2026, 3, 9), ns(2026, 3, 16)),
    ]
    assert range_plan(ns(2026, 3, 10), ns(2026, 3, 10), everywhere(None), NOW) == []


def test_windows_merge_when_they_touch_and_a_start_from_the_beginning_absorbs_the_rest():
    assert merge_windows([(30, 40), (10, 20), (20, 25)], 8) == [(10, 25), (30, 40)]
    assert merge_windows([(30, 40), (None, 20)], 8) == [(None, 20), (30, 40)]
    assert merge_windows([(None, 35), (30, 40)], 8) == [(None, 40)]
    assert merge_windows([(0, 1), (10, 11), (12, 13)], 2) == [(0, 1), (10, 13)]


def test_a_watermark_before_1970_means_nothing_is_materialized():
    assert watermark_ns(-210_866_803_200_000_000) is None
    assert watermark_ns(1_700_000_000_000_000) == 1_700_000_000_000_000_000
