"""Merging queued database jobs: what the single writer does with several consumed batches."""

from tradeflow.messages import Candle, Tick
from tradeflow_candle_builder.adapters.store_writer import WriteJob


def candle(trades: int) -> Candle:
    return Candle(exchange="binance", symbol="BTC/USDT", timeframe="1m", ts_start=0, ts_end=60_000_000_000,
                  open=1.0, high=2.0, low=1.0, close=2.0, volume=float(trades), trades=trades)


def tick(n: int) -> Tick:
    return Tick(exchange="binance", symbol="BTC/USDT", trade_id=str(n), price=1.0, amount=1.0, side="buy",
                ts_event=n, ts_recv=n)


def test_a_merged_job_keeps_every_tick_the_latest_candle_state_and_the_safe_offsets():
    key = ("binance", "BTC/USDT", 0)
    first = WriteJob(ticks=[tick(1), tick(2)], candles_1m={key: candle(2)}, next_offsets={0: 10, 1: 5},
                     holds={0: 3}, recompute={("binance", "ETH/USDT", 0)})
    later = WriteJob(ticks=[tick(3)], candles_1m={key: candle(3)}, next_offsets={0: 12, 2: 7}, holds={0: 1, 1: 4},
                     emit=[candle(2)])
    first.merge(later)
    assert [t.trade_id for t in first.ticks] == ["1", "2", "3"]
    assert first.candles_1m == {key: candle(3)}  # the later full state replaces the earlier one
    assert first.next_offsets == {0: 12, 1: 5, 2: 7}  # done up to the furthest record
    assert first.holds == {0: 1, 1: 4}  # held back to the earliest closed bucket
    assert first.recompute == {("binance", "ETH/USDT", 0)} and first.emit == [candle(2)]
