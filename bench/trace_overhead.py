"""What tracing costs on the hot paths (docs/adr/0023), in process, no broker or database.

1. The candle-builder's per-trade work for traces: ``TraceIndex.note`` of every consumed record
   (its traceparent, in runs of one ingest batch) plus the close-trade lookups when buckets close,
   on top of ``CandleAggregator.add_batch`` + ``advance``. Baseline, same run, same trades: the
   aggregator alone. Figures in trades/s; the overhead in percent.
2. Ingest's span per published batch (tracing on, sampled, exporter-less provider): microseconds per
   batch, and per trade for batches of 200 (a busy feed's wake-up).

Times are CPU time of this process (``time.process_time``), best of several interleaved rounds:
on a shared machine wall time mostly measures the neighbours.

Prints JSON lines ``{"name", "value", "unit", "baseline"}``; progress goes to stderr.
Run: ``.venv/bin/python bench/trace_overhead.py [--trades N]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, log  # noqa: E402
from tradeflow.messages import Tick  # noqa: E402
from tradeflow.settings import CommonSettings  # noqa: E402
from tradeflow.telemetry import Telemetry  # noqa: E402
from tradeflow_candle_builder.adapters.candle_traces import TraceIndex  # noqa: E402
from tradeflow_candle_builder.domain.aggregator import CandleAggregator  # noqa: E402
from tradeflow_candle_builder.domain.timeframes import NS_PER_SECOND, datetime_to_ns  # noqa: E402

T0 = datetime_to_ns(datetime(2026, 3, 2, tzinfo=UTC))
BATCH = 5000  # the candle-builder's consumer batch
INGEST_BATCH = 200  # trades per ingest span (one traceparent run)


def make_trades(n: int, symbols: int, partitions: int) -> list[tuple[int, int, Tick, bytes]]:
    rng = random.Random(7)
    offsets = [0] * partitions
    out = []
    price = [100.0] * symbols
    for i in range(n):
        s = i % symbols
        p = s % partitions
        price[s] *= 1 + rng.gauss(0, 0.0005)
        ts = T0 + i * (NS_PER_SECOND // 50)  # 50 trades/s of stream time: a minute closes every 3,000 trades
        tick = Tick(exchange="bench", symbol=f"S{s}/USDT", trade_id=str(i), price=price[s], amount=1.0, side="buy",
                    ts_event=ts, ts_recv=ts)
        traceparent = f"00-{i // INGEST_BATCH:032x}-{1:016x}-01".encode()
        out.append((p, offsets[p], tick, traceparent))
        offsets[p] += 1
    return out


def run(trades, with_traces: bool) -> float:
    aggregator = CandleAggregator(grace_ns=2 * NS_PER_SECOND, idle_close_ns=3600 * NS_PER_SECOND)
    aggregator.assign(range(4))
    index = TraceIndex()
    found = 0
    started = time.process_time()  # CPU time of this process: the box is shared, wall time is noise
    for start in range(0, len(trades), BATCH):
        batch = trades[start:start + BATCH]
        if with_traces:
            note = index.note
            for p, o, _, tp in batch:
                note(p, o, tp)
        aggregator.add_batch([(p, o, t) for p, o, t, _ in batch], 0.0)
        closings = aggregator.advance(0.0)
        if with_traces:
            lookup = index.lookup
            for p, o in closings.close_trades.values():
                found += lookup(p, o) is not None
            for p, first in aggregator.committable_offsets().items():
                index.forget_below(p, first)
    elapsed = time.process_time() - started
    if with_traces:
        assert found > 0
    return len(trades) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=600_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    trades = make_trades(args.trades, args.symbols, 4)
    log(f"{len(trades)} trades of {args.symbols} symbols on 4 partitions, batches of {BATCH}")
    plain, traced = [], []
    for _ in range(args.rounds):  # interleaved, best of each: the machine is shared
        plain.append(run(trades, False))
        traced.append(run(trades, True))
    best_plain, best_traced = max(plain), max(traced)
    emit("candles_aggregate_traced", round(best_traced), "trades/s", round(best_plain))
    emit("candles_trace_overhead", round(100 * (best_plain / best_traced - 1), 1), "% of the aggregation")
    emit("candles_trace_overhead_per_trade", round((1 / best_traced - 1 / best_plain) * 1e9, 1), "ns/trade")

    settings = CommonSettings(otlp_endpoint=None)
    telemetry = Telemetry("bench", settings)
    n = 20_000
    started = time.process_time()
    for _ in range(n):
        with telemetry.tracer.start_as_current_span("ingest publish", attributes={"messaging.batch.message_count": 200}):
            pass
    per_span_us = (time.process_time() - started) / n * 1e6
    emit("ingest_publish_span", round(per_span_us, 2), "us/batch")
    emit("ingest_publish_span_per_trade", round(per_span_us / INGEST_BATCH * 1000, 1), "ns/trade")


if __name__ == "__main__":
    main()
