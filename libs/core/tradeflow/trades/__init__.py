"""Trades from outside the platform to :class:`~tradeflow.messages.Tick` (pure): replay files,
ccxt trade structures, receive stamps (times: :mod:`tradeflow.time`), and exchanges' Retry-After answers.

Shared by the ingest service (live feeds, `tradeflow replay`) and the candle-builder's backfill,
which must turn the same trade into the same tick.
"""
