"""The notifier's API (design.md): channels, routes and deliveries under ``/v1/``.

- ``GET /v1/channels`` (secrets masked, each with its ``source``: ``config`` or ``api``),
  ``GET /v1/channels/{id}``, ``POST /v1/channels`` (201; 422 naming each bad field; 409 when the
  id exists; 503 when secrets cannot be stored encrypted), ``DELETE /v1/channels/{id}`` (204;
  404 unknown; 409 for an environment channel or one that API routes use),
  ``POST /v1/channels/{id}/test`` (200 with the outcome of one test message).
- ``GET /v1/routes``; ``PUT /v1/routes`` replaces the API's routes (422 naming ``routes[i].field``).
- ``GET /v1/deliveries?status=pending|delivered|failed&channel=&limit=``: newest first, with
  attempts and the last error.

Every route that changes state needs the API key; the service app factory checks it for all
of them (tradeflow.api_keys, ADR 0014).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Response

from tradeflow_notifier.adapters.delivery_store import STATUSES, DeliveryStore
from tradeflow_notifier.adapters.secret_box import SecretsUnavailable
from tradeflow_notifier.channel_registry import ChannelConflict, ChannelRegistry
from tradeflow_notifier.channel_test import ChannelTester
from tradeflow_notifier.domain.channels import InvalidChannel, channel_schema, parse_channel
from tradeflow_notifier.domain.routes import InvalidRoutes

log = logging.getLogger(__name__)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def delivery_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "event_id": row["event_id"], "event_kind": row["event_kind"],
        "event_type": row["event_type"], "channel": row["channel_id"], "status": row["status"],
        "attempts": row["attempts"], "last_error": row["last_error"], "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]), "delivered_at": _iso(row["delivered_at"]),
        "next_attempt_at": _iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
    }


def _unknown_channel(channel_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"unknown channel {channel_id!r}")


def create_notifier_router(registry: ChannelRegistry, deliveries: DeliveryStore, tester: ChannelTester) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["notifications"])
    channel_body = {"requestBody": {"required": True, "content": {"application/json": {"schema": channel_schema()}}}}

    @router.get("/channels", summary="Every channel, secrets masked")
    async def list_channels() -> list[dict[str, Any]]:
        return registry.channels_view()

    @router.get("/channels/{channel_id}", summary="One channel, secrets masked")
    async def get_channel(channel_id: str) -> dict[str, Any]:
        channel = registry.channel(channel_id)
        if channel is None:
            raise _unknown_channel(channel_id)
        return registry.describe(channel)

    @router.post("/channels", status_code=201, openapi_extra=channel_body,
                 summary="Create a channel (its secrets are stored encrypted and never shown)")
    async def create_channel(body: Annotated[Any, Body()]) -> dict[str, Any]:
        try:
            channel = parse_channel(body)
        except InvalidChannel as exc:
            raise HTTPException(status_code=422, detail=exc.errors) from None
        try:
            await registry.create(channel)
        except ChannelConflict as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        except SecretsUnavailable as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        log.info("channel %s (%s) created", channel.id, channel.kind)
        return registry.describe(channel)

    @router.delete("/channels/{channel_id}", status_code=204,
                   summary="Delete an API channel (its pending deliveries fail: 'channel deleted')")
    async def delete_channel(channel_id: str) -> Response:
        try:
            deleted = await registry.delete(channel_id)
        except ChannelConflict as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        if not deleted:
            raise _unknown_channel(channel_id)
        log.info("channel %s deleted", channel_id)
        return Response(status_code=204)

    @router.post("/channels/{channel_id}/test", summary="Send a test message now")
    async def test_channel(channel_id: str) -> dict[str, Any]:
        channel = registry.channel(channel_id)
        if channel is None:
            raise _unknown_channel(channel_id)
        result = await tester.send(channel)
        return {"channel": channel_id, "delivered": result.outcome == "delivered", "outcome": result.outcome,
                "error": result.error or None, "retry_after_s": result.retry_after_s}

    @router.get("/routes", summary="The routes in force: the environment's, then the API's")
    async def get_routes() -> list[dict[str, Any]]:
        return registry.routes_view()

    @router.put("/routes", summary="Replace the API's routes")
    async def put_routes(body: Annotated[Any, Body()]) -> list[dict[str, Any]]:
        try:
            await registry.replace_routes(body)
        except InvalidRoutes as exc:
            raise HTTPException(status_code=422, detail=exc.errors) from None
        return registry.routes_view()

    @router.get("/deliveries", summary="Deliveries, newest first")
    async def list_deliveries(
        status: Annotated[str | None, Query(description=f"one of {', '.join(STATUSES)}")] = None,
        channel: Annotated[str | None, Query(description="a channel id")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    ) -> list[dict[str, Any]]:
        if status is not None and status not in STATUSES:
            raise HTTPException(status_code=422, detail=f"status: must be one of {', '.join(STATUSES)}, got {status!r}")
        return [delivery_json(row) for row in await deliveries.list(status, channel, limit)]

    return router
