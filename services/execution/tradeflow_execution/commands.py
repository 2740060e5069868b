"""``tradeflow orders list|cancel|amend`` and ``tradeflow positions``: execution's API from the command line.

They call a running execution service at ``TRADEFLOW_EXECUTION_URL`` (default
``http://127.0.0.1:8005``; ``--url`` overrides it) and send the first key of ``TRADEFLOW_API_KEYS`` as the bearer
key where one is set (changing requests need one). ``orders amend`` goes to risk instead
(``TRADEFLOW_RISK_URL``, default ``http://127.0.0.1:8004``: ``PATCH /v1/orders/{id}``), since an
amended order passes risk's gate like a new one; execution answers on exec.orders.v1. Only
argparse is imported at module level: ``tradeflow --help`` loads every command.
"""

from __future__ import annotations

import argparse
import json
import uuid
from decimal import Decimal, InvalidOperation

from tradeflow.commands import CliError

DEFAULT_URL = "http://127.0.0.1:8005"
DEFAULT_RISK_URL = "http://127.0.0.1:8004"
REQUEST_TIMEOUT_S = 10.0


def add_orders_parser(subparsers: argparse._SubParsersAction) -> None:
    orders = subparsers.add_parser("orders", help="list, cancel and amend orders (execution's API; amend: risk's)")
    actions = orders.add_subparsers(dest="orders_action", required=True, metavar="list|cancel|amend")
    listing = actions.add_parser("list", help="orders, newest first")
    listing.add_argument("--account", help="only this account")
    listing.add_argument("--status", help="only this status (submitted, accepted, partially_filled, filled, ...)")
    listing.add_argument("--symbol", help="only this symbol, e.g. BTC/USDT")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    _common_options(listing)
    listing.set_defaults(handler=orders_list)
    cancel = actions.add_parser("cancel", help="cancel an open order")
    cancel.add_argument("client_order_id")
    _common_options(cancel)
    cancel.set_defaults(handler=orders_cancel)
    amend = actions.add_parser("amend", help="amend an open order's quantity and/or limit price (checked by risk)")
    amend.add_argument("client_order_id")
    amend.add_argument("--quantity", type=_positive_decimal, help="the order's new quantity (base units)")
    amend.add_argument("--limit-price", type=_positive_decimal, help="the order's new limit price")
    amend.add_argument("--reason", default="", help="why (kept with the amendment)")
    amend.add_argument("--idempotency-key", help="the same key on a retry gets the same decision (default: a new one)")
    amend.add_argument("--url", help=f"risk's base URL (default: TRADEFLOW_RISK_URL or {DEFAULT_RISK_URL})")
    amend.add_argument("--json", action="store_true", help="print the API's JSON")
    amend.set_defaults(handler=orders_amend)


def add_positions_parser(subparsers: argparse._SubParsersAction) -> None:
    positions = subparsers.add_parser("positions", help="positions with realized and unrealized P&L (execution's API)")
    positions.add_argument("--account", help="only this account")
    _common_options(positions)
    positions.set_defaults(handler=positions_list)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"execution's base URL (default: TRADEFLOW_EXECUTION_URL or {DEFAULT_URL})")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def _positive_decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal number: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive decimal, got {text!r}")
    return value


def _request(args: argparse.Namespace, method: str, path: str, params: dict | None = None, *,
             service: str = "execution", body: dict | None = None, headers: dict | None = None):
    import httpx
    from tradeflow.clients.settings import ClientSettings
    from tradeflow.settings import load_settings

    settings = load_settings(ClientSettings)
    base = (args.url or getattr(settings, f"{service}_url")).rstrip("/")
    try:
        response = httpx.request(method, base + path, params={k: v for k, v in (params or {}).items() if v is not None},
                                 json=body, headers={**(headers or {}), **settings.bearer_headers()},
                                 timeout=REQUEST_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise CliError(f"{service} at {base} did not answer: {type(exc).__name__}: {exc}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        if isinstance(detail, dict) and "reason" in detail:  # risk's rejection: its reason and numbers
            detail = f"{detail.get('status', 'rejected')}: {detail['reason']}: {detail.get('message', '')}"
        raise CliError(f"{response.status_code}: {detail}")
    return response.json()


def _table(rows: list[dict], columns: list[str]) -> None:
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def orders_list(args: argparse.Namespace) -> int:
    orders = _request(args, "GET", "/v1/orders", {"account_id": args.account, "status": args.status,
                                                   "symbol": args.symbol, "limit": args.limit})
    if args.json:
        print(json.dumps(orders, indent=2))
    elif not orders:
        print("no orders")
    else:
        _table(orders, ["client_order_id", "account_id", "symbol", "side", "order_type", "quantity", "status",
                        "filled_quantity", "average_price", "reason"])
    return 0


def orders_cancel(args: argparse.Namespace) -> int:
    order = _request(args, "DELETE", f"/v1/orders/{args.client_order_id}")
    if args.json:
        print(json.dumps(order, indent=2))
    else:
        print(f"order {order['client_order_id']}: {order['status']} (filled {order['filled_quantity']})")
    return 0


def orders_amend(args: argparse.Namespace) -> int:
    if args.quantity is None and args.limit_price is None:
        raise CliError("give --quantity, --limit-price or both")
    body = {"reason": args.reason, **({"quantity": str(args.quantity)} if args.quantity is not None else {}),
            **({"limit_price": str(args.limit_price)} if args.limit_price is not None else {})}
    answer = _request(args, "PATCH", f"/v1/orders/{args.client_order_id}", service="risk", body=body, headers={
        "Idempotency-Key": args.idempotency_key or uuid.uuid4().hex, "X-Tradeflow-Actor": "tradeflow orders amend"})
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(f"order {args.client_order_id}: amendment {answer['amendment_id']} approved by risk; execution "
              "answers on exec.orders.v1 (reason amended, or amend_refused: ...)")
    return 0


def positions_list(args: argparse.Namespace) -> int:
    positions = _request(args, "GET", "/v1/positions", {"account_id": args.account})
    if args.json:
        print(json.dumps(positions, indent=2))
    elif not positions:
        print("no positions")
    else:
        _table(positions, ["account_id", "exchange", "symbol", "quantity", "average_price", "realized_pnl",
                           "unrealized_pnl", "mark_price"])
    return 0
