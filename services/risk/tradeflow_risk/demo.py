"""Risk in `tradeflow demo`: the demo's paper account, each entry sized at a fifth of its equity
(so the demo's strategies hold several symbols at once rather than all cash in the first)."""

from __future__ import annotations

import json

from tradeflow.service import DemoContext, DemoOptions
from tradeflow_trading.accounts import DEMO_ACCOUNT_ID, demo_accounts


def demo_settings(options: DemoOptions) -> dict[str, object]:
    profile = {"sizing": {"method": "fraction_of_equity", "fraction": "0.2"}}
    return {"accounts": demo_accounts(options.exchange), "account_profiles": json.dumps({DEMO_ACCOUNT_ID: profile})}


def demo_examples(context: DemoContext) -> list[str]:
    return [f"curl {context.base_url}/v1/accounts/{DEMO_ACCOUNT_ID}/risk",
            f"curl -X POST {context.base_url}/v1/kill-switch -H 'Authorization: Bearer {context.api_key}' "
            f"-H 'content-type: application/json' -d '{{\"account_id\": \"{DEMO_ACCOUNT_ID}\", \"engaged\": true, "
            f"\"reason\": \"demo\"}}'"]
