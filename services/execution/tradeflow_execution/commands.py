"""``tradeflow orders list|cancel`` and ``tradeflow positions``: execution's API from the command line.

They call a running execution service at ``TRADEFLOW_EXECUTION_URL`` (default
``http://127.0.0.1:8005``; ``--url`` overrides it) and send the first key of ``TRADEFLOW_API_KEYS`` as the bearer
key where one is set (changing requests need one). Only argparse is imported at module level:
``tradeflow --help`` loads every command.
"""

from __future__ import annotations

import argparse
import json

from tradeflow.commands import CliError

DEFAULT_URL = "http://127.0.0.1:8005"
REQUEST_TIMEOUT_S = 10.0


def add_orders_parser(subparsers: argparse._SubParsersAction) -> None:
    orders = subparsers.add_parser("orders", help="list and cancel orders (execution's API)")
    actions = orders.add_subparsers(dest="orders_action", required=True, metavar="list|cancel")
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


def add_positions_parser(subparsers: argparse._SubParsersAction) -> None:
    positions = subparsers.add_parser("positions", help="positions with realized and unrealized P&L (execution's API)")
    positions.add_argument("--account", help="only this account")
    _common_options(positions)
    positions.set_defaults(handler=positions_list)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"execution's base URL (default: TRADEFLOW_EXECUTION_URL or {DEFAULT_URL})")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def _request(args: argparse.Namespace, method: str, path: str, params: dict | None = None):
    import httpx
    from tradeflow.clients.settings import ClientSettings
    from tradeflow.settings import load_settings

    settings = load_settings(ClientSettings)
    base = (args.url or settings.execution_url).rstrip("/")
    headers = settings.bearer_headers()
    try:
        response = httpx.request(method, base + path, params={k: v for k, v in (params or {}).items() if v is not None},
                                 headers=headers, timeout=REQUEST_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise CliError(f"execution at {base} did not answer: {type(exc).__name__}: {exc}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
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
