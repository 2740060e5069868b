"""The strategies that ship with Tradeflow, registered under the entry-point group
``tradeflow.strategies`` (libs/trading/pyproject.toml); each is an example of the SDK too.

| name | kind | what it does |
|---|---|---|
| ``sma_cross`` | vector | design.md's moving-average crossover, long only |
| ``sma_cross_trend`` | vector, multi-timeframe | ``sma_cross`` with no entry against a falling higher-timeframe SMA (1w by default) |
| ``rsi`` | vector | Wilder's RSI: enter crossing up through ``lower``, exit crossing down through ``upper`` |
| ``bollinger_reversion`` | vector | enter below the lower band, exit back at the middle band |
| ``breakout`` | vector | enter on a close above swing-high resistance on high volume, exit below swing-low support |
| ``grid`` | event | a fixed grid around a reference price: buy a lot one step down, sell it one step up |
| ``dca`` | event | buy a fixed quote amount every N candles, more on a drawdown; optional take-profit |
"""
