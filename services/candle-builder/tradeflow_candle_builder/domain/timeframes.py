"""Timeframes (re-exported from :mod:`tradeflow.timeframes`, shared with the strategy SDK and
the backtest) and the candle-builder's own use of them: runs of buckets to re-aggregate."""

from __future__ import annotations

from collections.abc import Iterable

from tradeflow.timeframes import (
    DAY_NS,
    EPOCH,
    HIGHER_TIMEFRAMES,
    HOUR_NS,
    MINUTE_NS,
    MONDAY_ORIGIN_NS,
    NS_PER_SECOND,
    ONE_MINUTE,
    TIMEFRAMES,
    WEEK_NS,
    Timeframe,
    datetime_to_ns,
    ns_to_datetime,
    timeframe,
)

__all__ = [
    "DAY_NS", "EPOCH", "HIGHER_TIMEFRAMES", "HOUR_NS", "MINUTE_NS", "MONDAY_ORIGIN_NS", "NS_PER_SECOND",
    "ONE_MINUTE", "TIMEFRAMES", "WEEK_NS", "BucketRun", "Timeframe", "bucket_runs", "datetime_to_ns",
    "ns_to_datetime", "timeframe",
]

BucketRun = tuple[str, str, int, int]  # (exchange, symbol, first bucket start, last bucket end)


def bucket_runs(spans: Iterable[BucketRun], tf: Timeframe) -> list[BucketRun]:
    """The buckets of ``tf`` that overlap the ``[start, end)`` spans, as contiguous runs.

    Per instrument, overlapping or adjacent runs are merged, so each run is one time range
    ``[lo, hi)`` made of whole buckets: what a maintained higher-timeframe table re-aggregates
    when the 1m candles in the spans changed. Empty spans are ignored. Sorted by instrument
    and time.
    """
    ranges = sorted(
        (exchange, symbol, tf.bucket_start(start), tf.bucket_end(tf.bucket_start(end - 1)))
        for exchange, symbol, start, end in spans if end > start)
    runs: list[BucketRun] = []
    for exchange, symbol, lo, hi in ranges:
        if runs and runs[-1][:2] == (exchange, symbol) and lo <= runs[-1][3]:
            if hi > runs[-1][3]:
                runs[-1] = (exchange, symbol, runs[-1][2], hi)
        else:
            runs.append((exchange, symbol, lo, hi))
    return runs
