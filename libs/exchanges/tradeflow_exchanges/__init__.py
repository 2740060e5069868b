"""Exchange access shared by the services that talk to exchanges (ingest, backfill, execution).

ccxt clients built from ``TRADEFLOW_EXCHANGES`` (:mod:`.ccxt_client`), ccxt trades to ticks
(:mod:`.ccxt_trades`), and the protections every exchange caller needs: the request hold of a
rate limit (:mod:`.request_hold`), a circuit breaker and a reconnect budget.
"""
