"""Pure candle arithmetic: timeframes and buckets, validation, the streaming aggregator."""
