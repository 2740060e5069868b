"""Risk's own routes (design.md, "Accounts, risk and execution").

- ``GET /v1/accounts``: every account and its state.
- ``GET /v1/accounts/{account_id}/risk``: state with reasons, equity, drawdown, daily P&L,
  exposure per symbol, positions, open orders, balances.
- ``GET/PUT /v1/accounts/{account_id}/limits`` (PUT replaces the set: 422 naming the field of an
  invalid value; every version is kept with who and when: ``GET .../limits/history``).
- ``POST /v1/accounts/{account_id}/resume``: the operator resumes a halted or reducing account.
- ``POST /v1/kill-switch`` ``{"account_id" (or "*"), "engaged", "reason"}``.
- ``POST /v1/orders``: a manual order through the same gate: 201 approved with its client order
  id, 422 rejected with the reason. An ``Idempotency-Key`` header makes a retry get the same
  decision (and the same client order id); without one every request is a new order.
- ``PATCH /v1/orders/{client_order_id}`` ``{"quantity"?, "limit_price"?, "reason"?}``: amend an
  open order; the order as amended passes the same gate (200 approved with its ``amendment_id``,
  published as OrderAmendment/1 on risk.orders.v1; 422 rejected with the reason and numbers;
  404 unknown order; 409 finished order). ``Idempotency-Key`` as for POST (docs/adr/0018).

Who changed something is the ``X-Tradeflow-Actor`` header (default ``api``). API keys on the
mutating routes are the platform's (create_service_app), not this module's.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

import msgspec
from fastapi import APIRouter, Header, HTTPException, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator
from tradeflow.markets import ExchangeName, SymbolName

from tradeflow_risk.domain.limits import RiskLimits
from tradeflow_risk.service import (
    AmendmentDecision,
    Decision,
    OrderFinishedError,
    OrderNotFoundError,
    RiskService,
    UnknownAccountError,
)

ACTOR_HEADER = "X-Tradeflow-Actor"
MAX_KEY_LENGTH = 128


class KillSwitchIn(BaseModel):
    account_id: str = Field(min_length=1, max_length=64, description="an account id, or '*' for every account")
    engaged: bool
    reason: str = Field(default="", max_length=500)


class ResumeIn(BaseModel):
    reason: str = Field(default="", max_length=500)


class ManualOrderIn(BaseModel):
    account_id: str = Field(min_length=1, max_length=64)
    exchange: ExchangeName
    symbol: SymbolName
    side: Literal["buy", "sell"]
    order_type: Literal["market", "limit"] = "market"
    quantity: Decimal = Field(max_digits=38)
    limit_price: Decimal | None = Field(default=None, max_digits=38)


class AmendIn(BaseModel):
    quantity: Decimal | None = Field(default=None, max_digits=38, description="the order's new quantity (base units)")
    limit_price: Decimal | None = Field(default=None, max_digits=38, description="the order's new limit price")
    reason: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _changes_something(self) -> AmendIn:
        if self.quantity is None and self.limit_price is None:
            raise ValueError("quantity or limit_price: an amendment changes at least one of them")
        for name in ("quantity", "limit_price"):
            value = getattr(self, name)
            if value is not None and not value.is_finite():
                raise ValueError(f"{name} must be a finite decimal, got {value}")
        return self


def _amendment_json(decision: AmendmentDecision) -> JSONResponse:
    if decision.amendment is not None:
        return JSONResponse(status_code=200, content={
            "status": "approved", "amendment_id": decision.amendment.amendment_id,
            "client_order_id": decision.amendment.client_order_id, "replayed": decision.replayed,
            "amendment": msgspec.to_builtins(decision.amendment)})
    event = decision.event
    return JSONResponse(status_code=422, content={"detail": {
        "status": "rejected", "reason": event.reason, "message": event.message, "details": event.details,
        "client_order_id": event.client_order_id, "replayed": decision.replayed}})


def _not_found(exc: UnknownAccountError) -> HTTPException:
    return HTTPException(status_code=404, detail=str(exc))


def _decision_json(decision: Decision) -> JSONResponse:
    if decision.order is not None:
        return JSONResponse(status_code=201, content={
            "status": "approved", "client_order_id": decision.order.client_order_id,
            "replayed": decision.replayed, "order": msgspec.to_builtins(decision.order)})
    event = decision.event
    return JSONResponse(status_code=422, content={"detail": {
        "status": "rejected", "reason": event.reason, "message": event.message, "details": event.details,
        "client_order_id": event.client_order_id, "replayed": decision.replayed}})


def create_risk_router(service: RiskService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["risk"])

    @router.get("/accounts")
    async def list_accounts() -> list[dict]:
        """Every configured account and its trading state."""
        return [{"account_id": a, "exchange": b.exchange, "state": b.state} for a, b in sorted(service.books.items())]

    @router.get("/accounts/{account_id}/risk")
    async def account_risk(account_id: str) -> dict:
        try:
            await service.refresh(account_id)
            return service.risk_view(account_id)
        except UnknownAccountError as exc:
            raise _not_found(exc) from None

    @router.get("/accounts/{account_id}/limits")
    async def get_limits(account_id: str) -> dict:
        """The limits the next decision applies, with their version (0: from settings)."""
        try:
            await service.refresh(account_id)
        except UnknownAccountError as exc:
            raise _not_found(exc) from None
        return service.limits_version(account_id).json()

    @router.put("/accounts/{account_id}/limits")
    async def put_limits(account_id: str, limits: RiskLimits,
                         actor: Annotated[str, Header(alias=ACTOR_HEADER, max_length=MAX_KEY_LENGTH)] = "api") -> dict:
        """Replace the account's limits: a new version, applied to the next decision."""
        try:
            return (await service.set_limits(account_id, limits, actor)).json()
        except UnknownAccountError as exc:
            raise _not_found(exc) from None

    @router.get("/accounts/{account_id}/limits/history")
    async def limits_history(account_id: str) -> list[dict]:
        """Every version of the account's limits, oldest first, with who changed them and when."""
        try:
            return [v.json() for v in await service.limits_history(account_id)]
        except UnknownAccountError as exc:
            raise _not_found(exc) from None

    @router.post("/accounts/{account_id}/resume")
    async def resume(account_id: str, body: ResumeIn,
                     actor: Annotated[str, Header(alias=ACTOR_HEADER, max_length=MAX_KEY_LENGTH)] = "api") -> dict:
        """Clear the account's breached loss limits (and a kill switch they engaged); their
        baselines restart from the current equity. An operator's kill switch stays engaged."""
        note = f"{actor}: {body.reason}" if body.reason else actor
        try:
            change = await service.resume(account_id, note)
        except UnknownAccountError as exc:
            raise _not_found(exc) from None
        return {"account_id": account_id, "state": service.books[account_id].state, "changed": change is not None}

    @router.post("/kill-switch")
    async def kill_switch(body: KillSwitchIn,
                          actor: Annotated[str, Header(alias=ACTOR_HEADER, max_length=MAX_KEY_LENGTH)] = "api") -> dict:
        """Engage or disengage the kill switch of an account or of every account (``*``)."""
        reason = f"{body.reason} (by {actor})" if body.reason else f"by {actor}"
        try:
            accounts = await service.set_kill_switch(body.account_id, body.engaged, reason)
        except UnknownAccountError as exc:
            raise _not_found(exc) from None
        return {"engaged": body.engaged, "accounts": accounts,
                "states": {a: service.books[a].state for a in accounts}}

    @router.post("/orders", status_code=201, responses={422: {"description": "rejected: reason, message, numbers"}})
    async def manual_order(body: ManualOrderIn, idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", min_length=1, max_length=MAX_KEY_LENGTH)] = None) -> JSONResponse:
        """A manual order, checked like any other."""
        decision = await service.manual_order(
            account_id=body.account_id, exchange=body.exchange, symbol=body.symbol, side=body.side,
            order_type=body.order_type, quantity=body.quantity, limit_price=body.limit_price, request_id=idempotency_key)
        return _decision_json(decision)

    @router.patch("/orders/{client_order_id}", responses={
        404: {"description": "no such order"}, 409: {"description": "the order is finished"},
        422: {"description": "rejected: reason, message, numbers"}})
    async def amend_order(client_order_id: Annotated[str, Path(min_length=1, max_length=MAX_KEY_LENGTH)],
                          body: AmendIn, idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", min_length=1, max_length=MAX_KEY_LENGTH)] = None) -> JSONResponse:
        """Amend an open order's quantity and/or limit price, checked like a new order of that size and price."""
        try:
            decision = await service.amend_order(client_order_id=client_order_id, quantity=body.quantity,
                                                 limit_price=body.limit_price, reason=body.reason,
                                                 request_id=idempotency_key)
        except OrderNotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except OrderFinishedError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        return _amendment_json(decision)

    return router
