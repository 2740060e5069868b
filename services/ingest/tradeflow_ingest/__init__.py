"""Tradeflow ingest: replay files, a synthetic market (and, next, exchange feeds) to md.ticks.v1.

``domain`` is pure (parsing, the synthetic market, the receive clock, the source contract);
``adapters`` do the I/O (publishing to the broker, the running sources); ``replay`` is the
one-shot file publisher behind ``tradeflow replay FILE``; ``api``/``bootstrap`` make the service.
"""
