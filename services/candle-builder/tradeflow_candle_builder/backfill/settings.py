"""What the backfill reads from the environment: the database and ``TRADEFLOW_EXCHANGES``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode
from tradeflow.exchanges import ExchangeFeedSettings, exchanges_from_json
from tradeflow.settings import CommonSettings


class BackfillSettings(CommonSettings):
    """``TRADEFLOW_DATABASE_URL`` and the exchanges configured for ingest (URL overrides,
    sandbox, credentials), so a backfill reaches an exchange the way the live feed does."""

    exchanges: Annotated[list[ExchangeFeedSettings], NoDecode] = Field(
        default_factory=list, max_length=32, description="exchanges (JSON list, as for ingest)"
    )

    @field_validator("exchanges", mode="before")
    @classmethod
    def _exchanges_from_json(cls, value: Any) -> Any:
        return exchanges_from_json(value)
