"""Adapters: the candle-builder's connections to Kafka and the database."""
