"""The emission mark each instrument reaches with the candles the writer emitted."""

from tradeflow.messages import Candle
from tradeflow_candle_builder.adapters.emission_marks import raise_marks

MINUTE = 60_000_000_000


def candle(symbol: str, timeframe: str, start: int, end: int) -> Candle:
    return Candle(exchange="binance", symbol=symbol, timeframe=timeframe, ts_start=start, ts_end=end,
                  open=1.0, high=1.0, low=1.0, close=1.0, volume=1.0, trades=1)


def test_the_mark_is_the_latest_end_of_any_timeframe_and_never_moves_back():
    marks = {("binance", "ETH/USDT"): 9 * MINUTE}
    raise_marks(marks, [candle("BTC/USDT", "1m", 4 * MINUTE, 5 * MINUTE),
                        candle("BTC/USDT", "5m", 0, 5 * MINUTE),
                        candle("BTC/USDT", "1m", 2 * MINUTE, 3 * MINUTE),  # a correction of an older minute
                        candle("ETH/USDT", "1m", 3 * MINUTE, 4 * MINUTE)])
    assert marks == {("binance", "BTC/USDT"): 5 * MINUTE, ("binance", "ETH/USDT"): 9 * MINUTE}
    # A gap: the 1h bucket closed (ends at 60 min) although its last minute with trades ended at 5.
    raise_marks(marks, [candle("BTC/USDT", "1h", 0, 60 * MINUTE)])
    assert marks[("binance", "BTC/USDT")] == 60 * MINUTE
