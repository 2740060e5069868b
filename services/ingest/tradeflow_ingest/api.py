"""The ingest REST API (under /v1/)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tradeflow_ingest.domain.sources import SourceStatus, TickSource


class SourceView(BaseModel):
    kind: str = Field(description="what produces the ticks, e.g. 'synthetic'")
    exchange: str
    symbols: list[str]
    rate: float | None = Field(description="configured ticks per second; null when the feed sets the pace")
    published: int = Field(description="ticks acknowledged by the broker since the service started")
    rejected: int = Field(description="ticks refused as invalid and sent to md.ticks.v1.dlq")
    last_event_time: datetime | None = Field(description="event time of the last published tick (UTC)")
    running: bool

    @classmethod
    def of(cls, status: SourceStatus) -> SourceView:
        last = status.last_event_ns
        return cls(
            kind=status.kind,
            exchange=status.exchange,
            symbols=list(status.symbols),
            rate=status.rate,
            published=status.published,
            rejected=status.rejected,
            last_event_time=None if last is None else datetime.fromtimestamp(last / 1e9, tz=UTC),
            running=status.running,
        )


def sources_router(sources: Sequence[TickSource]) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["sources"])

    @router.get("/sources", response_model=list[SourceView], summary="The tick sources and their progress")
    async def list_sources() -> list[SourceView]:
        return [SourceView.of(source.status()) for source in sources]

    return router
