"""Tradeflow candle-builder: trades from md.ticks.v1 to candles of every timeframe.

Layout: ``domain/`` is pure candle arithmetic (no I/O, unit-tested); ``adapters/`` talk to the
database; ``pipeline.py`` glues the Kafka consumer, the aggregator, the background database
writer and the candle producer; ``api.py`` serves ``GET /v1/candles``; ``bootstrap.py`` wires it
all into a service (``tradeflow run candle-builder``).
"""
