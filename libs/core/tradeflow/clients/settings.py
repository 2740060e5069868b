"""Where the services' APIs are, and the API key to send: the settings of operator commands.

Commands that call a service (``tradeflow kill-switch``, ``tradeflow strategies``, ``tradeflow
orders``, ``tradeflow backtest`` storing its run) read ``TRADEFLOW_<SERVICE>_URL`` (defaults: the
design's ports on this machine) and send the first key of ``TRADEFLOW_API_KEYS`` /
``TRADEFLOW_API_KEYS_FILE`` as ``Authorization: Bearer`` on state-changing requests.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from tradeflow.settings import ApiKeySettings, CommonSettings


class ClientSettings(CommonSettings, ApiKeySettings):
    ingest_url: str = Field(default="http://127.0.0.1:8001", description="ingest's API")
    candles_url: str = Field(default="http://127.0.0.1:8002", description="the candle-builder's API")
    strategy_url: str = Field(default="http://127.0.0.1:8003", description="the strategy service's API")
    risk_url: str = Field(default="http://127.0.0.1:8004", description="risk's API")
    execution_url: str = Field(default="http://127.0.0.1:8005", description="execution's API")
    notifier_url: str = Field(default="http://127.0.0.1:8006", description="the notifier's API")

    @field_validator("ingest_url", "candles_url", "strategy_url", "risk_url", "execution_url", "notifier_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL, e.g. http://127.0.0.1:8004")
        return value.rstrip("/")
