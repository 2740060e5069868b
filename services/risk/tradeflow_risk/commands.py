"""``tradeflow kill-switch on|off ACCOUNT|--all``: engage or disengage the kill switch through risk's API.

It calls ``POST /v1/kill-switch`` of the risk service at ``--url`` (default
``TRADEFLOW_RISK_URL``, else http://127.0.0.1:8004), with ``Authorization: Bearer`` and the first
key of ``TRADEFLOW_API_KEYS`` (tradeflow.clients.settings). The API, not this command, changes the state: the switch is
stored and published (risk.events.v1) exactly as when called by anything else.
"""

from __future__ import annotations

import argparse

from tradeflow.commands import CliError

DEFAULT_RISK_URL = "http://127.0.0.1:8004"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    command = subparsers.add_parser(
        "kill-switch", help="engage (on) or disengage (off) the kill switch of an account, or of every account")
    command.add_argument("action", choices=["on", "off"])
    target = command.add_mutually_exclusive_group(required=True)
    target.add_argument("account", nargs="?", help="the account id")
    target.add_argument("--all", action="store_true", help="every account")
    command.add_argument("--reason", default="", help="why (kept with the switch and in its event)")
    command.add_argument("--url", default=None, help=f"risk's base URL (default TRADEFLOW_RISK_URL or {DEFAULT_RISK_URL})")
    command.set_defaults(handler=kill_switch)


def kill_switch(args: argparse.Namespace) -> int:
    import httpx
    from tradeflow.clients.settings import ClientSettings
    from tradeflow.settings import load_settings

    settings = load_settings(ClientSettings)
    url = (args.url or settings.risk_url).rstrip("/") + "/v1/kill-switch"
    headers = {"X-Tradeflow-Actor": "tradeflow kill-switch", **settings.bearer_headers()}
    body = {"account_id": "*" if args.all else args.account, "engaged": args.action == "on", "reason": args.reason}
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach risk at {url}: {exc}") from None
    if response.status_code != 200:
        raise CliError(f"risk answered {response.status_code}: {response.text[:500]}")
    answer = response.json()
    word = "engaged" if answer["engaged"] else "disengaged"
    for account_id in answer["accounts"]:
        print(f"{account_id}: kill switch {word}, state {answer['states'][account_id]}")
    return 0
