"""The pure trading domain that the services and the backtest share (design.md, "Code layout").

No Kafka, no database, no clock: values in, values out, so a backtest and the live services
compute exactly the same orders, fills, positions and P&L.

- :mod:`.money`: exact decimals (conversion from market-data floats, quantization, basis points)
- :mod:`.ids`: the trading path's deterministic identities (signal, client order, fill ids)
- :mod:`.orders`: the order state table and an order's state
- :mod:`.positions`: positions and balances as the fold of fills, realized and unrealized P&L
- :mod:`.fees`: maker/taker fee schedules
- :mod:`.fills`: the fill rule of paper trading and backtests (price, slippage, quantity, fee)
- :mod:`.matching`: one order against one trade as an exchange does it (time in force, expiry,
  reduce-only, participation cap)
- :mod:`.order_checks`: whether an order is well formed (a rejection reason otherwise)
- :mod:`.accounts`: accounts from ``TRADEFLOW_ACCOUNTS``
- :mod:`.sizing`: position sizing of entries (fixed amount, fractions of cash or equity,
  volatility target, capped Kelly)
- :mod:`.volatility`: ATR, standard deviation of returns, correlation of returns
- :mod:`.strategy`: the strategy SDK (extra ``strategy``: numpy, numba); :mod:`.strategies` the packaged strategies
"""
