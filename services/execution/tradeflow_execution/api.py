"""Execution's own endpoints (design.md, "Execution API").

Amounts are exact decimals written as JSON strings in plain notation ("0.00000001"); times are
ISO 8601 in UTC. Changing requests (DELETE, POST) are guarded by the platform's API keys.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, get_args

from fastapi import APIRouter, HTTPException, Query
from tradeflow.messages import Fill, OrderEvent, OrderStatus
from tradeflow.time import TimeFormatError, format_time_ns, parse_time_ns
from tradeflow_trading.orders import OrderState

from tradeflow_execution.adapters.order_queries import MAX_ROWS, OrderQueries
from tradeflow_execution.domain.live import order_slippage
from tradeflow_execution.service import (
    ExecutionService,
    OrderFinished,
    OrderNotFound,
    PositionView,
    UnknownAccount,
)
from tradeflow_execution.store import TrackedOrder

STATUSES = get_args(OrderStatus)


def money(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _time(ns: int | None) -> str | None:
    return None if ns is None else format_time_ns(ns)


def order_json(state: OrderState, received_ns: int | None = None) -> dict:
    order = state.order
    return {
        "client_order_id": order.client_order_id, "account_id": order.account_id, "exchange": order.exchange,
        "symbol": order.symbol, "side": order.side, "order_type": order.order_type,
        "time_in_force": order.time_in_force, "quantity": money(order.quantity),
        "quote_quantity": money(order.quote_quantity), "limit_price": money(order.limit_price),
        "expires_at": _time(order.expires_at), "reduce_only": order.reduce_only, "origin": order.origin,
        "signal_id": order.signal_id, "strategy_id": order.strategy_id,
        "decision_price": money(order.decision_price), "ts_event": _time(order.ts_event),
        "status": state.status, "seq": state.seq, "filled_quantity": money(state.filled_quantity),
        "average_price": money(state.average_price), "fees": money(state.filled_fees),
        "exchange_order_id": state.exchange_order_id, "reason": state.reason, "received_at": _time(received_ns),
    }


def _tracked_json(tracked: TrackedOrder) -> dict:
    return order_json(tracked.state, tracked.received_ns)


def transition_json(event: OrderEvent) -> dict:
    return {"seq": event.seq, "status": event.status, "filled_quantity": money(event.filled_quantity),
            "average_price": money(event.average_price), "exchange_order_id": event.exchange_order_id,
            "reason": event.reason, "ts": _time(event.ts_event)}


def fill_json(fill: Fill) -> dict:
    return {"fill_id": fill.fill_id, "client_order_id": fill.client_order_id, "account_id": fill.account_id,
            "exchange": fill.exchange, "symbol": fill.symbol, "side": fill.side, "quantity": money(fill.quantity),
            "price": money(fill.price), "fee": money(fill.fee), "fee_currency": fill.fee_currency,
            "liquidity": fill.liquidity, "strategy_id": fill.strategy_id, "ts": _time(fill.ts_event)}


def position_json(view: PositionView) -> dict:
    position = view.position
    return {"account_id": position.account_id, "exchange": position.exchange, "symbol": position.symbol,
            "quantity": money(position.quantity), "average_price": money(position.average_price),
            "realized_pnl": money(position.realized_pnl), "unrealized_pnl": money(view.unrealized_pnl),
            "mark_price": money(view.mark), "fees": {c: money(a) for c, a in sorted(position.fees.items())},
            "opened_at": _time(position.opened_at) if position.opened_at else None, "fills": position.fills}


def create_execution_router(service: ExecutionService, queries: OrderQueries) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["execution"])

    @router.get("/orders", summary="Orders, newest first")
    async def list_orders(account_id: str | None = None, status: str | None = None, symbol: str | None = None,
                          limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 100) -> list[dict]:
        if status is not None and status not in STATUSES:
            raise HTTPException(422, f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        return [_tracked_json(t) for t in await queries.orders(account_id=account_id, status=status, symbol=symbol,
                                                                limit=limit)]

    @router.get("/orders/{client_order_id}", summary="One order with its transitions and fills")
    async def get_order(client_order_id: str) -> dict:
        detail = await queries.order(client_order_id)
        if detail is None:
            raise HTTPException(404, f"no order {client_order_id}")
        state, mid = detail.order.state, detail.order.broker_state.get("mid")
        slippage = order_slippage(state.order.side, state.average_price, state.order.decision_price,
                                  Decimal(str(mid)) if mid else None)
        return {**_tracked_json(detail.order), "slippage": slippage,
                "transitions": [transition_json(e) for e in detail.transitions],
                "fills": [fill_json(f) for f in detail.fills],
                "amendments": [{"amendment_id": a.amendment_id, "quantity": money(a.quantity),
                                "limit_price": money(a.limit_price), "status": a.status, "reason": a.reason}
                               for a in detail.amendments]}

    @router.delete("/orders/{client_order_id}", summary="Cancel an open order")
    async def cancel_order(client_order_id: str) -> dict:
        try:
            state = await service.cancel(client_order_id)
        except OrderNotFound:
            raise HTTPException(404, f"no order {client_order_id}") from None
        except OrderFinished as exc:
            raise HTTPException(409, str(exc)) from None
        return order_json(state)

    @router.get("/fills", summary="Fills, oldest first from `since`")
    async def list_fills(account_id: str | None = None,
                         since: Annotated[str | None, Query(description="ISO 8601 (no offset: UTC), or epoch ms")] = None,
                         limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 100) -> list[dict]:
        since_ns = None
        if since is not None:
            try:
                since_ns = parse_time_ns(since)
            except TimeFormatError as exc:
                raise HTTPException(422, f"since: {exc}") from None
        return [fill_json(f) for f in await queries.fills(account_id=account_id, since_ns=since_ns, limit=limit)]

    @router.get("/positions", summary="Positions with realized and unrealized P&L (marks: the latest trade seen)")
    async def list_positions(account_id: str | None = None) -> list[dict]:
        return [position_json(view) for view in service.positions(account_id)]

    @router.get("/accounts", summary="Accounts with their balances")
    async def list_accounts() -> list[dict]:
        return [{"id": account.id, "exchange": account.exchange, "mode": account.mode,
                 "halted": service.is_halted(account.id),
                 "reconcile_halt": list(service.mismatch(account.id)),  # live: balances vs fills (ADR 0022)
                 "balances": {c: money(a) for c, a in sorted(service.balances(account.id).amounts.items())}}
                for account in service.accounts]

    @router.post("/accounts/{account_id}/reconcile",
                 summary="Recompute positions and balances from the fills (and compare the broker's open orders)")
    async def reconcile(account_id: str) -> dict:
        try:
            result = await service.reconcile(account_id)
        except UnknownAccount as exc:
            raise HTTPException(404, str(exc)) from None
        return {"account_id": result.account_id, "agreed": result.agreed, "differences": list(result.differences),
                "repaired": result.repaired, "fills": result.fills}

    return router
