"""Where the services' APIs are, and the API key to send: the settings of operator commands.

Commands that call a service (``tradeflow kill-switch``, ``tradeflow strategies``, ``tradeflow
orders``, ``tradeflow backtest`` storing its run) read ``TRADEFLOW_<SERVICE>_URL`` (defaults: the
design's ports on this machine) and send the first key of ``TRADEFLOW_API_KEYS`` /
``TRADEFLOW_API_KEYS_FILE`` as ``Authorization: Bearer`` on state-changing requests. A service that
calls another mixes in just the one it needs (e.g. :class:`~tradeflow.clients.candles.CandleApiSettings`).
"""

from __future__ import annotations

from pydantic import Field

from tradeflow.clients.backtests import StrategyApiSettings
from tradeflow.clients.candles import CandleApiSettings
from tradeflow.settings import ApiKeySettings, CommonSettings

_URL = r"^https?://"


class ClientSettings(CommonSettings, ApiKeySettings, CandleApiSettings, StrategyApiSettings):
    ingest_url: str = Field(default="http://127.0.0.1:8001", pattern=_URL, description="ingest's API")
    risk_url: str = Field(default="http://127.0.0.1:8004", pattern=_URL, description="risk's API")
    execution_url: str = Field(default="http://127.0.0.1:8005", pattern=_URL, description="execution's API")
    notifier_url: str = Field(default="http://127.0.0.1:8006", pattern=_URL, description="the notifier's API")
