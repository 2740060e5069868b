"""What the backfill reads from the environment: the database and ``TRADEFLOW_EXCHANGES``."""

from __future__ import annotations

from tradeflow.settings import CommonSettings
from tradeflow_exchanges.ccxt_client import ExchangeListSettings


class BackfillSettings(CommonSettings, ExchangeListSettings):
    """``TRADEFLOW_DATABASE_URL`` and the exchanges configured for ingest (URL overrides,
    sandbox, credentials), so a backfill reaches an exchange the way the live feed does."""
