"""The ingest REST API (under /v1/)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field
from tradeflow.markets import ExchangeName
from tradeflow.time import ns_to_datetime

from tradeflow_ingest.adapters.subscription_log import SubscriptionLogUnavailable
from tradeflow_ingest.domain.feed_status import ExchangeFeed, FeedStatus, SymbolFeedStatus
from tradeflow_ingest.domain.sources import SourceStatus, TickSource
from tradeflow_ingest.subscriptions import SubscriptionRejected, Subscriptions, SubscriptionView


def _utc(ns: int | None) -> datetime | None:
    return None if ns is None else ns_to_datetime(ns)


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
            last_event_time=_utc(last),
            running=status.running,
        )


def sources_router(sources: Sequence[TickSource]) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["sources"])

    @router.get("/sources", response_model=list[SourceView], summary="The tick sources and their progress")
    async def list_sources() -> list[SourceView]:
        return [SourceView.of(source.status()) for source in sources]

    return router


class SymbolFeedView(BaseModel):
    symbol: str
    last_trade_time: datetime | None = Field(description="event time of the newest trade received (UTC)")
    trades_per_second: float = Field(description="trades received per second over the last minute")
    received: int = Field(description="distinct trades received (websocket/REST overlap counted once)")
    published: int = Field(description="ticks acknowledged on md.ticks.v1")
    rejected: int = Field(description="ticks held back to md.ticks.v1.dlq (invalid or implausible)")

    @classmethod
    def of(cls, status: SymbolFeedStatus) -> SymbolFeedView:
        return cls(symbol=status.symbol, last_trade_time=_utc(status.last_trade_ns),
                   trades_per_second=round(status.trades_per_second, 3), received=status.received,
                   published=status.published, rejected=status.rejected)


class FeedView(BaseModel):
    exchange: str
    mode: str = Field(description="'websocket', or 'rest' while polling because the websocket is down")
    connected: bool = Field(description="the websocket has delivered trades since its last (re)connect")
    reconnects: int = Field(description="websocket connection attempts after the first")
    breaker_state: str = Field(description="circuit breaker of the exchange: closed, open or half_open")
    symbols: list[SymbolFeedView]

    @classmethod
    def of(cls, status: FeedStatus) -> FeedView:
        return cls(exchange=status.exchange, mode=status.mode, connected=status.connected,
                   reconnects=status.reconnects, breaker_state=status.breaker_state,
                   symbols=[SymbolFeedView.of(s) for s in status.symbols])


def feeds_router(feeds: Sequence[ExchangeFeed]) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["feeds"])

    @router.get("/feeds", response_model=list[FeedView], summary="The exchange feeds, per exchange and symbol")
    async def list_feeds() -> list[FeedView]:
        return [FeedView.of(feed.feed_status()) for feed in feeds]

    return router


class SubscriptionRequest(BaseModel):
    exchange: ExchangeName = Field(description="exchange name as configured in TRADEFLOW_EXCHANGES, e.g. 'binance'")
    symbol: str = Field(min_length=3, max_length=65, description="unified symbol, e.g. 'BTC/USDT'")


class SubscriptionOut(BaseModel):
    exchange: str
    symbol: str
    source: str = Field(description="'api' (POST /v1/subscriptions) or 'config' (TRADEFLOW_EXCHANGES)")
    created_at: datetime
    served_here: bool | None = Field(
        default=None, description="this replica's feed serves it (each subscription is served by one replica)")

    @classmethod
    def of(cls, view: SubscriptionView) -> SubscriptionOut:
        s = view.subscription
        return cls(exchange=s.exchange, symbol=s.symbol, source=s.source, created_at=_utc(s.ts_created),
                   served_here=view.served_here)


def subscriptions_router(subscriptions: Subscriptions) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["subscriptions"])

    @router.get("/subscriptions", response_model=list[SubscriptionOut],
                summary="Every exchange symbol ingest serves (across all replicas)")
    async def list_subscriptions() -> list[SubscriptionOut]:
        with _as_http_errors():
            return [SubscriptionOut.of(view) for view in subscriptions.list()]

    @router.post("/subscriptions", response_model=SubscriptionOut, status_code=201,
                 summary="Subscribe to an exchange symbol (201 new, 200 when it was already subscribed)",
                 responses={200: {"model": SubscriptionOut}, 422: {}, 503: {}})
    async def add_subscription(request: SubscriptionRequest, response: Response) -> SubscriptionOut:
        with _as_http_errors():
            subscription, created = await subscriptions.add(request.exchange, request.symbol)
        if not created:
            response.status_code = 200
        return SubscriptionOut.of(SubscriptionView(subscription, served_here=None))

    @router.delete("/subscriptions", status_code=204, response_class=Response,
                   summary="Unsubscribe (404 when not subscribed, 409 for symbols of TRADEFLOW_EXCHANGES)",
                   responses={404: {}, 409: {}, 503: {}})
    async def remove_subscription(exchange: str = Query(min_length=1), symbol: str = Query(min_length=1)) -> Response:
        with _as_http_errors():
            await subscriptions.remove(exchange, symbol)
        return Response(status_code=204)

    return router


@contextmanager
def _as_http_errors() -> Iterator[None]:
    """Service-layer refusals and an unreachable broker as HTTP errors with their message."""
    try:
        yield
    except SubscriptionRejected as exc:
        raise HTTPException(exc.status, exc.message) from exc
    except SubscriptionLogUnavailable as exc:
        raise HTTPException(503, f"subscriptions unavailable: {exc}") from exc
