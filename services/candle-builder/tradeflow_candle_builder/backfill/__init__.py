"""``tradeflow backfill``: trades (or 1m candles) of a past range into the candle store.

plan (pure paging and range rules) -> exchange_history (ccxt with retries) or a replay file ->
runner (idempotent writes, minute recompute, aggregate refresh) with progress on stderr.
"""
