"""Which trace a candle continues: the one of the trade that closed it (docs/adr/0023).

A candle aggregates many trades, each published inside some ingest span. Its emission is made
a child of the trace of its *close* trade: the last trade by event time, the one whose price
is the candle's close (for a higher timeframe, the close trade of its last 1m candle). That
trade is a fixed fact of the data, so a replay gives the same parent, and the trace from that
trade runs on through the signal the candle makes to the order, its fill and the notification.

The aggregator remembers the close trade as (partition, offset) (one integer store per trade on
its hot path); :class:`TraceIndex` turns that into the trade's ``traceparent``. It keeps, per
partition, runs of consecutive offsets that came with the same traceparent (ingest publishes a
whole batch under one span, so a run is usually a feed batch): one comparison per record and a
few entries per open minute. Runs wholly below every open bucket's first offset are dropped.
"""

from __future__ import annotations

from bisect import bisect_right

MAX_RUNS_PER_PARTITION = 200_000  # a bound for pathological inputs (every trade its own trace)


class _Runs:
    __slots__ = ("starts", "values")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.values: list[bytes | None] = []


class TraceIndex:
    """offset -> traceparent of the consumed records, per partition, as runs."""

    def __init__(self) -> None:
        self._partitions: dict[int, _Runs] = {}

    def note(self, partition: int, offset: int, traceparent: bytes | None) -> None:
        runs = self._partitions.get(partition)
        if runs is None:
            runs = self._partitions[partition] = _Runs()
        starts, values = runs.starts, runs.values
        if starts and offset <= starts[-1]:
            # Read again from an earlier offset (a redelivered batch, a seek): what came after
            # is read again too, so keep only the runs before it.
            at = bisect_right(starts, offset) - 1
            if at >= 0 and (values[at] == traceparent or starts[at] == offset):
                del starts[at + 1:], values[at + 1:]
                values[at] = traceparent
                return
            del starts[at + 1:], values[at + 1:]
        elif values and values[-1] == traceparent:
            return
        starts.append(offset)
        values.append(traceparent)
        if len(starts) > MAX_RUNS_PER_PARTITION:
            del starts[: MAX_RUNS_PER_PARTITION // 2], values[: MAX_RUNS_PER_PARTITION // 2]

    def lookup(self, partition: int, offset: int) -> bytes | None:
        """The traceparent the record at ``offset`` came with (None: none, or no longer known)."""
        runs = self._partitions.get(partition)
        if runs is None:
            return None
        at = bisect_right(runs.starts, offset) - 1
        return runs.values[at] if at >= 0 else None

    def forget_below(self, partition: int, offset: int | None) -> None:
        """Drop the runs that end before ``offset`` (None: nothing of the partition is needed)."""
        runs = self._partitions.get(partition)
        if runs is None:
            return
        if offset is None:
            keep_from = len(runs.starts) - 1  # the last run: the next record may continue it
        else:
            keep_from = bisect_right(runs.starts, offset) - 1
        if keep_from > 0:
            del runs.starts[:keep_from]
            del runs.values[:keep_from]

    def forget_partitions(self, partitions: set[int]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)

    def size(self, partition: int) -> int:
        runs = self._partitions.get(partition)
        return 0 if runs is None else len(runs.starts)
