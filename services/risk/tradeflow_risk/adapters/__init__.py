"""The risk service's outside world: database, ccxt markets, instrument registry, topics."""
