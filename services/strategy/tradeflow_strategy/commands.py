"""``tradeflow strategies list|add|pause|resume|remove``: strategy instances through the service's API.

Calls the strategy service at ``--url`` (default ``TRADEFLOW_STRATEGY_URL``, else
http://127.0.0.1:8003) with ``Authorization: Bearer`` from ``TRADEFLOW_API_KEYS`` (its first key) for the
requests that change state. The service checks everything; its refusals are printed as they
are (e.g. ``params.fast: must be less than slow (30), got 40``).
"""

from __future__ import annotations

import argparse
import json

from tradeflow.commands import CliError, json_object_option

DEFAULT_URL = "http://127.0.0.1:8003"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    command = subparsers.add_parser("strategies", help="list, add, pause, resume or remove strategy instances")
    command.add_argument("--url", default=None, help=f"the strategy service (default TRADEFLOW_STRATEGY_URL or {DEFAULT_URL})")
    actions = command.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every instance with its state")
    add = actions.add_parser("add", help="create an instance (POST /v1/strategies)")
    add.add_argument("id", help="instance id (starts every signal id it emits)")
    add.add_argument("--strategy", required=True, help="a strategy of GET /v1/strategies/catalog, e.g. sma_cross")
    add.add_argument("--account", required=True, help="an account of TRADEFLOW_ACCOUNTS")
    add.add_argument("--exchange", required=True, help="the account's exchange")
    add.add_argument("--symbols", required=True, help="comma-separated, e.g. BTC/USDT,ETH/USDT")
    add.add_argument("--timeframe", default="1m", help="1m, 5m, 15m, 1h, 4h, 1d or 1w (default 1m)")
    add.add_argument("--params", type=json_object_option, default={}, help='JSON object, e.g. \'{"fast": 10, "slow": 30}\'')
    add.add_argument("--paused", action="store_true", help="create it paused (enabled false)")
    for action, help_text in (("pause", "stop deciding until resumed"),
                              ("resume", "decide again (also after a failure)"),
                              ("remove", "delete the instance")):
        actions.add_parser(action, help=help_text).add_argument("id")
    command.set_defaults(handler=strategies_command)


def strategies_command(args: argparse.Namespace) -> int:
    import httpx
    from tradeflow.clients.settings import ClientSettings
    from tradeflow.settings import load_settings

    settings = load_settings(ClientSettings)
    base = (args.url or settings.strategy_url).rstrip("/") + "/v1/strategies"
    headers = settings.bearer_headers()

    def call(method: str, path: str = "", body: dict | None = None) -> httpx.Response:
        try:
            response = httpx.request(method, base + path, json=body, headers=headers, timeout=10.0)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the strategy service at {base}: {exc}") from None
        if response.status_code >= 400:
            raise CliError(f"the strategy service answered {response.status_code}: {_detail(response)}")
        return response

    if args.action == "list":
        instances = call("GET").json()
        for i in instances:
            error = f"  ({i['error']})" if i["error"] else ""
            print(f"{i['id']}  {i['strategy']}  {i['state']}  {i['account_id']}  {i['exchange']}  "
                  f"{','.join(i['symbols'])}  {i['timeframe']}  {json.dumps(i['params'], sort_keys=True)}{error}")
        if not instances:
            print("no strategy instances")
        return 0
    if args.action == "add":
        body = {"id": args.id, "strategy": args.strategy, "account_id": args.account, "exchange": args.exchange,
                "symbols": [s.strip() for s in args.symbols.split(",") if s.strip()], "timeframe": args.timeframe,
                "params": args.params, "enabled": not args.paused}
        response = call("POST", body=body)
        print(f"{args.id}: {'created' if response.status_code == 201 else 'exists already, unchanged'} "
              f"({response.json()['state']})")
        return 0
    if args.action == "remove":
        call("DELETE", f"/{args.id}")
        print(f"{args.id}: removed")
        return 0
    instance = call("POST", f"/{args.id}/{args.action}").json()
    print(f"{args.id}: {instance['state']}")
    return 0


def _detail(response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text[:500]
    if isinstance(detail, list):  # request validation: where and what
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', ())[1:])}: {d.get('msg')}" for d in detail)
    return str(detail)
