"""The candle pipeline's storage ports (tradeflow_candle_builder.ports): the same scenarios against
the real store (CandleStore, EmissionMarks, SessionCandleStore on the session's migrated database)
and the in-memory one the pipeline's unit tests use (adapters/memory_store.py), so the fake cannot
drift from the database. Each test writes under its own exchange name. Amounts and prices add up
exactly in binary floating point: the order of the database's sums is not part of the contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from tradeflow.messages import Candle, Tick
from tradeflow_candle_builder.adapters.candle_store import CandleRow, CandleStore
from tradeflow_candle_builder.adapters.emission_marks import EmissionMarks, ResumePoint
from tradeflow_candle_builder.adapters.memory_store import MemoryCandleStore
from tradeflow_candle_builder.adapters.session_candle_store import SessionCandleStore

NS = 1_000_000_000
MINUTE = 60 * NS
T0 = int(datetime(2024, 5, 6, 10, 0, tzinfo=UTC).timestamp()) * NS  # a Monday, 10:00 UTC
SYMBOL = "BTC/USDT"


@dataclass
class Storage:
    candles: CandleStore | MemoryCandleStore
    marks: EmissionMarks | object
    sessions: SessionCandleStore | object


@pytest.fixture(params=["memory", "database"])
async def storage(request):
    if request.param == "memory":
        memory = MemoryCandleStore()
        yield Storage(memory, memory.marks, memory.sessions)
        return
    store = CandleStore(request.getfixturevalue("database_url"))
    await store.start()
    try:
        yield Storage(store, EmissionMarks(store), SessionCandleStore(store))
    finally:
        await store.stop()


@pytest.fixture
def exchange(unique_name) -> str:
    return unique_name.lower()


def tick(exchange: str, trade_id, price: float, ts: int, recv: int | None = None, amount: float = 1.0) -> Tick:
    return Tick(exchange=exchange, symbol=SYMBOL, trade_id=str(trade_id), price=price, amount=amount, side="buy",
                ts_event=ts, ts_recv=ts if recv is None else recv)


def candle(exchange: str, minute: int, *, o=10.0, h=12.0, lo=9.0, c=11.0, v=2.0, trades=2, revision=0,
           timeframe="1m", length=MINUTE) -> Candle:
    start = T0 + minute * MINUTE
    return Candle(exchange=exchange, symbol=SYMBOL, timeframe=timeframe, ts_start=start, ts_end=start + length,
                  open=o, high=h, low=lo, close=c, volume=v, trades=trades, revision=revision)


def values(c: Candle) -> tuple:
    return (c.ts_start, c.open, c.high, c.low, c.close, c.volume, c.trades, c.revision)


async def stored_1m(storage: Storage, exchange: str) -> list[tuple]:
    return [values(c) for c in await storage.candles.fetch_1m(exchange, SYMBOL, T0, T0 + 60 * MINUTE)]


def at(minute: int) -> datetime:
    return datetime.fromtimestamp((T0 + minute * MINUTE) // NS, UTC)


async def test_trades_are_stored_once_by_exchange_symbol_time_and_trade_id(storage, exchange):
    batch = [tick(exchange, i, 100.0 + i, T0 + i * NS) for i in range(5)]
    batch.append(tick(exchange, 0, 100.0, T0))  # the same trade twice in one batch
    assert await storage.candles.write_ticks(batch) == 5
    assert await storage.candles.write_ticks(batch) == 0  # a replayed batch
    # The key holds the event time to the microsecond: below it, the same trade; above, another one.
    assert await storage.candles.write_ticks([tick(exchange, 0, 100.0, T0 + 999)]) == 0
    assert await storage.candles.write_ticks([tick(exchange, 0, 100.0, T0 + 1000)]) == 1


async def test_the_tick_insert_tells_which_minutes_got_a_new_trade(storage, exchange):
    old = [tick(exchange, 1, 100.0, T0 + NS), tick(exchange, 2, 101.0, T0 + MINUTE + NS)]
    assert await storage.candles.write_ticks_new_minutes(old) == (2, {(exchange, SYMBOL, T0),
                                                                      (exchange, SYMBOL, T0 + MINUTE)})
    replay_and_late = [*old, tick(exchange, 3, 99.0, T0 + MINUTE + 2 * NS)]
    assert await storage.candles.write_ticks_new_minutes(replay_and_late) == (1, {(exchange, SYMBOL, T0 + MINUTE)})
    assert await storage.candles.write_ticks_new_minutes(replay_and_late) == (0, set())
    assert await storage.candles.write_ticks_new_minutes([]) == (0, set())


async def test_an_upsert_never_makes_a_stored_candle_smaller_and_the_last_state_of_a_call_wins(storage, exchange):
    await storage.candles.upsert_candles_1m([candle(exchange, 0, trades=5, v=5.0)])
    await storage.candles.upsert_candles_1m([candle(exchange, 0, trades=3, v=3.0, c=8.0)])  # a forming state
    assert await stored_1m(storage, exchange) == [(T0, 10.0, 12.0, 9.0, 11.0, 5.0, 5, 0)]
    await storage.candles.upsert_candles_1m([candle(exchange, 0, trades=5, c=12.0, v=5.0, revision=2)])  # as many
    await storage.candles.upsert_candles_1m([candle(exchange, 1, trades=1, v=1.0), candle(exchange, 1, trades=4, v=4.0),
                                             candle(exchange, 1, trades=2, v=2.0)])
    assert await stored_1m(storage, exchange) == [(T0, 10.0, 12.0, 9.0, 12.0, 5.0, 5, 2),
                                                  (T0 + MINUTE, 10.0, 12.0, 9.0, 11.0, 2.0, 2, 0)]
    with pytest.raises(ValueError, match="got a '5m' candle"):
        await storage.candles.upsert_candles_1m([candle(exchange, 0, timeframe="5m", length=5 * MINUTE)])


async def test_a_recompute_folds_the_stored_trades_and_raises_the_revision_only_when_values_change(storage, exchange):
    # Equal event times: arrival (ts_recv) decides, not the trade id.
    trades = [tick(exchange, "a", 101.0, T0 + 5 * NS, T0 + 7 * NS, amount=0.5),
              tick(exchange, "b", 100.0, T0 + 5 * NS, T0 + 6 * NS, amount=0.25),  # same time, earlier arrival: opens
              tick(exchange, "c", 104.0, T0 + 30 * NS, amount=1.0),
              tick(exchange, "e", 98.0, T0 + 59 * NS, T0 + 61 * NS, amount=2.0),
              tick(exchange, "d", 99.0, T0 + 59 * NS, T0 + 62 * NS, amount=0.125)]  # same time, later: closes
    await storage.candles.write_ticks(trades)
    minute = (exchange, SYMBOL, T0)
    rebuilt = await storage.candles.recompute_candles_1m([minute])
    assert [values(c) for c in rebuilt] == [(T0, 100.0, 104.0, 98.0, 99.0, 3.875, 5, 0)]  # new row: revision 0
    assert rebuilt[0].timeframe == "1m" and rebuilt[0].ts_end == T0 + MINUTE and rebuilt[0].exchange == exchange
    again = await storage.candles.recompute_candles_1m([minute, minute])
    assert [values(c) for c in again] == [(T0, 100.0, 104.0, 98.0, 99.0, 3.875, 5, 0)]  # unchanged: same revision

    await storage.candles.write_ticks([tick(exchange, "f", 105.0, T0 + 40 * NS, amount=1.0)])  # a late trade
    corrected = await storage.candles.recompute_candles_1m([minute])
    assert [values(c) for c in corrected] == [(T0, 100.0, 105.0, 98.0, 99.0, 4.875, 6, 1)]
    assert await stored_1m(storage, exchange) == [(T0, 100.0, 105.0, 98.0, 99.0, 4.875, 6, 1)]


async def test_a_recompute_keeps_the_revision_of_an_upserted_candle_with_the_same_values(storage, exchange):
    await storage.candles.write_ticks([tick(exchange, 1, 10.0, T0 + NS), tick(exchange, 2, 11.0, T0 + 2 * NS)])
    await storage.candles.upsert_candles_1m([candle(exchange, 0, o=10.0, h=11.0, lo=10.0, c=11.0, v=2.0, trades=2)])
    rebuilt = await storage.candles.recompute_candles_1m([(exchange, SYMBOL, T0)])
    assert [values(c) for c in rebuilt] == [(T0, 10.0, 11.0, 10.0, 11.0, 2.0, 2, 0)]
    # A minute without trades gives nothing and leaves its stored row alone.
    await storage.candles.upsert_candles_1m([candle(exchange, 3)])
    assert await storage.candles.recompute_candles_1m([(exchange, SYMBOL, T0 + 3 * MINUTE)]) == []
    assert (await stored_1m(storage, exchange))[-1] == (T0 + 3 * MINUTE, 10.0, 12.0, 9.0, 11.0, 2.0, 2, 0)
    assert await storage.candles.recompute_candles_1m([]) == []


async def test_higher_timeframes_read_back_are_folded_from_the_stored_1m_candles(storage, exchange):
    await storage.candles.upsert_candles_1m([
        candle(exchange, 0, o=10.0, h=12.0, lo=9.0, c=11.0, v=2.0, trades=2),
        candle(exchange, 4, o=11.0, h=15.0, lo=10.0, c=14.0, v=0.5, trades=1),
        candle(exchange, 5, o=14.0, h=14.5, lo=8.0, c=9.0, v=1.0, trades=3)])
    five = await storage.candles.fetch_candles(exchange, SYMBOL, "5m", at(0), at(10), 10)
    assert five == [CandleRow(at(0), 10.0, 15.0, 9.0, 14.0, 2.5, 3), CandleRow(at(5), 14.0, 14.5, 8.0, 9.0, 1.0, 3)]
    hour = await storage.candles.fetch_candles(exchange, SYMBOL, "1h", at(0), None, 1)
    assert hour == [CandleRow(at(0), 10.0, 15.0, 8.0, 9.0, 3.5, 6)]
    # Without a start: the latest `limit` before the end, oldest first.
    latest = await storage.candles.fetch_candles(exchange, SYMBOL, "1m", None, at(5), 1)
    assert latest == [CandleRow(at(4), 11.0, 15.0, 10.0, 14.0, 0.5, 1)]
    assert await storage.candles.fetch_candles(exchange, SYMBOL, "1m", at(1), at(4), 5) == []
    assert await storage.candles.fetch_candles(exchange, SYMBOL, "1m", at(0), None, 2) == [
        CandleRow(at(0), 10.0, 12.0, 9.0, 11.0, 2.0, 2), CandleRow(at(4), 11.0, 15.0, 10.0, 14.0, 0.5, 1)]
    with pytest.raises(ValueError, match="unknown timeframe '2m'"):
        await storage.candles.fetch_candles(exchange, SYMBOL, "2m", None, None, 1)
    with pytest.raises(ValueError, match="limit must be at least 1"):
        await storage.candles.fetch_candles(exchange, SYMBOL, "1m", None, None, 0)


async def test_emission_marks_only_move_forward_and_resume_from_the_newest_1m_candle(storage, exchange):
    instrument, other = (exchange, SYMBOL), (exchange, "ETH/USDT")
    assert await storage.marks.resume_points([instrument, other]) == {instrument: ResumePoint(None, None),
                                                                      other: ResumePoint(None, None)}
    await storage.marks.record({instrument: T0 + 2 * MINUTE})
    await storage.marks.record({instrument: T0 + MINUTE})  # an older mark changes nothing
    await storage.marks.record({})
    await storage.candles.upsert_candles_1m([candle(exchange, 0), candle(exchange, 3)])
    assert await storage.marks.resume_points([instrument, other]) == {
        instrument: ResumePoint(T0 + 3 * MINUTE, T0 + 2 * MINUTE), other: ResumePoint(None, None)}
    await storage.marks.record({instrument: T0 + 5 * MINUTE})
    assert (await storage.marks.resume_points([instrument]))[instrument].emitted_through == T0 + 5 * MINUTE
    assert await storage.marks.resume_points([]) == {}


async def test_session_candles_keep_their_revision_until_their_values_change(storage, exchange):
    hour = candle(exchange, 0, timeframe="1h", length=60 * MINUTE, trades=3, v=3.0)
    saved = await storage.sessions.save([hour])
    assert [values(c) for c in saved] == [(T0, 10.0, 12.0, 9.0, 11.0, 3.0, 3, 0)]
    assert [values(c) for c in await storage.sessions.save([hour])] == [(T0, 10.0, 12.0, 9.0, 11.0, 3.0, 3, 0)]
    changed = await storage.sessions.save([candle(exchange, 0, timeframe="1h", length=60 * MINUTE, trades=4, v=4.0)])
    assert [values(c) for c in changed] == [(T0, 10.0, 12.0, 9.0, 11.0, 4.0, 4, 1)]
    assert changed[0].timeframe == "1h" and changed[0].ts_end == T0 + 60 * MINUTE

    # A rebuild folds the bucket's stored 1m candles (a bucket without them gives nothing).
    await storage.candles.upsert_candles_1m([candle(exchange, 0, o=10.0, h=12.0, lo=9.0, c=11.0, v=2.0, trades=2),
                                             candle(exchange, 30, o=11.0, h=13.0, lo=10.0, c=12.5, v=2.0, trades=2)])
    key = (exchange, SYMBOL, "1h", T0, T0 + 60 * MINUTE)
    rebuilt = await storage.sessions.rebuild([key, (exchange, SYMBOL, "1h", T0 + 120 * MINUTE, T0 + 180 * MINUTE)])
    assert [values(c) for c in rebuilt] == [(T0, 10.0, 13.0, 9.0, 12.5, 4.0, 4, 2)]
    assert [values(c) for c in await storage.sessions.rebuild([key])] == [(T0, 10.0, 13.0, 9.0, 12.5, 4.0, 4, 2)]

