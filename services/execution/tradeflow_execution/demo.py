"""Execution in `tradeflow demo`: the demo's paper account, and its orders, positions and P&L
printed beside the candles (read from this service's own API at every refresh)."""

from __future__ import annotations

from decimal import Decimal

import httpx
from tradeflow.service import DemoContext, DemoOptions
from tradeflow_trading.accounts import DEMO_ACCOUNT_ID, demo_accounts

SHOWN_ORDERS = 6


def demo_settings(options: DemoOptions) -> dict[str, object]:
    return {"accounts": demo_accounts(options.exchange)}


def demo_examples(context: DemoContext) -> list[str]:
    return [f"curl '{context.base_url}/v1/orders?account_id={DEMO_ACCOUNT_ID}'",
            f"curl '{context.base_url}/v1/positions?account_id={DEMO_ACCOUNT_ID}'",
            f"curl {context.base_url}/v1/accounts"]


async def demo_status(context: DemoContext) -> list[str]:
    """The account's latest orders, its positions and its P&L; a line saying why when the API does not answer."""
    try:
        async with httpx.AsyncClient(base_url=context.base_url, timeout=3) as client:
            orders = (await client.get("/v1/orders", params={"account_id": DEMO_ACCOUNT_ID,
                                                             "limit": SHOWN_ORDERS})).raise_for_status().json()
            positions = (await client.get("/v1/positions",
                                          params={"account_id": DEMO_ACCOUNT_ID})).raise_for_status().json()
            accounts = (await client.get("/v1/accounts")).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        return [f"execution: no answer from {context.base_url} ({type(exc).__name__})"]
    lines = [f"orders of {DEMO_ACCOUNT_ID} (newest first):" if orders else f"orders of {DEMO_ACCOUNT_ID}: none yet"]
    for o in orders:
        size = o["quantity"] if o["quantity"] is not None else f"{o['quote_quantity']} quote"
        filled = f" {o['filled_quantity']} @ {o['average_price']} fee {_cents(o['fees'])}" if o["average_price"] else ""
        lines.append(f"  order {o['client_order_id']} {o['symbol']} {o['side']} {o['order_type']} {size}: "
                     f"{o['status']}{filled}")
    realized = unrealized = Decimal(0)
    lines.append("positions:" if positions else "positions: none yet")
    for p in positions:
        realized += Decimal(p["realized_pnl"])
        unrealized += Decimal(p["unrealized_pnl"] or 0)
        lines.append(f"  position {p['symbol']} quantity {p['quantity']} avg {p['average_price']} "
                     f"realized {_cents(p['realized_pnl'])} unrealized {_cents(p['unrealized_pnl'])} "
                     f"(mark {p['mark_price']})")
    balances = next((a["balances"] for a in accounts if a["id"] == DEMO_ACCOUNT_ID), {})
    lines.append(f"P&L of {DEMO_ACCOUNT_ID}: realized {_cents(realized)} unrealized {_cents(unrealized)}; balances "
                 + (", ".join(f"{c} {a}" for c, a in balances.items()) or "none"))
    return lines


def _cents(amount: str | Decimal | None) -> str:
    """An amount for the screen, to the hundredth (the API keeps every digit)."""
    return "-" if amount is None else str(Decimal(amount).quantize(Decimal("0.01")))
