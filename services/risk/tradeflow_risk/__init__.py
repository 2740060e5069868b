"""Tradeflow risk: the one gate every order passes (docs/adr/0018).

- :mod:`.domain`: pure rules: limits, checks in their order, sizing inputs, account books,
  states, protective exits, trading hours, market precision
- :mod:`.adapters`: the database store, ccxt markets, the instrument registry over HTTP, the
  topic dispatch of the consumers
- :mod:`.service`: the service layer (decoded messages in, stored decisions out)
- :mod:`.api`: ``/v1/accounts/{id}/risk``, limits, kill switch, manual orders
- :mod:`.bootstrap`: the wiring (``SERVICE``)
"""
