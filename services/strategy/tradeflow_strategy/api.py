"""The strategy instance API (design.md, "Strategies"), everything under ``/v1/strategies``.

- ``GET /v1/strategies/catalog``: every strategy with its description and parameter JSON schema.
- ``POST /v1/strategies`` ``{"id", "strategy", "account_id", "exchange", "symbols", "timeframe",
  "params", "enabled"}``: 201 created, 200 when the same instance exists already, 409 when the
  id is taken by another definition, 422 naming the field (unknown strategy, bad parameters,
  unknown timeframe, an account not in ``TRADEFLOW_ACCOUNTS`` or of another exchange).
- ``GET /v1/strategies``; ``GET /v1/strategies/{id}`` with its status (ready or warming per
  market, last candle, last signals, position, errors); ``DELETE /v1/strategies/{id}`` (204);
  ``POST /v1/strategies/{id}/pause`` and ``/resume`` (resume also restarts a failed one);
  404 for an unknown id.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tradeflow_strategy.api_errors import database_unavailable
from tradeflow_strategy.domain.instances import InstanceError
from tradeflow_strategy.instances import InstanceConflict, InstanceService, instance_json


class InstanceIn(BaseModel):
    """A strategy instance to run (the service checks it against its catalog and accounts)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="1-64 of letters, digits, '_', '.', '-'; starts every signal id of the instance")
    strategy: str = Field(description="a name of GET /v1/strategies/catalog")
    account_id: str = Field(description="an account of TRADEFLOW_ACCOUNTS")
    exchange: str = Field(description="the account's exchange")
    symbols: list[str] = Field(description="the markets it trades, e.g. ['BTC/USDT']")
    timeframe: str = Field(description="1m, 5m, 15m, 1h, 4h, 1d or 1w")
    params: dict[str, Any] = Field(default_factory=dict, description="the strategy's parameters (its schema)")
    enabled: bool = True


def _not_found(instance_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no strategy instance {instance_id!r}")


def create_strategies_router(service: InstanceService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["strategies"])

    @router.get("/strategies/catalog")
    async def catalog() -> list[dict[str, Any]]:
        """Every strategy this service can run: name, description, kind, parameter JSON schema, source."""
        return service.catalog()

    @router.post("/strategies", status_code=201,
                 responses={200: {"description": "this instance exists already, unchanged"},
                            409: {"description": "the id is taken by another definition"},
                            422: {"description": "a field is invalid; the detail names it"}})
    async def create(body: InstanceIn) -> JSONResponse:
        """Create a strategy instance; it runs on every replica that owns one of its markets."""
        try:
            definition = service.validate(body.model_dump())
        except InstanceError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        try:
            record, created = await service.create(definition)
        except InstanceConflict as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        except Exception as exc:
            raise database_unavailable(exc, "instance store") from None
        return JSONResponse(instance_json(record), status_code=201 if created else 200)

    @router.get("/strategies")
    async def list_instances() -> list[dict[str, Any]]:
        """Every instance with its state (running, paused, failed) and error."""
        try:
            return [instance_json(r) for r in await service.list()]
        except Exception as exc:
            raise database_unavailable(exc, "instance store") from None

    @router.get("/strategies/{instance_id}", responses={404: {"description": "no such instance"}})
    async def detail(instance_id: str) -> dict[str, Any]:
        """The instance and, per market, how it stands: warm-up, last candle, last signals, position, errors."""
        try:
            found = await service.detail(instance_id)
        except Exception as exc:
            raise database_unavailable(exc, "instance store") from None
        if found is None:
            raise _not_found(instance_id)
        return found

    @router.delete("/strategies/{instance_id}", status_code=204, responses={404: {"description": "no such instance"}})
    async def delete(instance_id: str) -> Response:
        """Stop the instance everywhere and forget it (its status and stored fills too)."""
        try:
            deleted = await service.delete(instance_id)
        except Exception as exc:
            raise database_unavailable(exc, "instance store") from None
        if not deleted:
            raise _not_found(instance_id)
        return Response(status_code=204)

    async def _set_enabled(instance_id: str, enabled: bool) -> dict[str, Any]:
        try:
            record = await service.set_enabled(instance_id, enabled)
        except Exception as exc:
            raise database_unavailable(exc, "instance store") from None
        if record is None:
            raise _not_found(instance_id)
        return instance_json(record)

    @router.post("/strategies/{instance_id}/pause", responses={404: {"description": "no such instance"}})
    async def pause(instance_id: str) -> dict[str, Any]:
        """Stop deciding (candles meanwhile decide nothing; a resume warms up on them)."""
        return await _set_enabled(instance_id, False)

    @router.post("/strategies/{instance_id}/resume", responses={404: {"description": "no such instance"}})
    async def resume(instance_id: str) -> dict[str, Any]:
        """Decide again from the next candle (also after a failure: the error is cleared)."""
        return await _set_enabled(instance_id, True)

    return router
