"""The running ingest with an exchange feed (a local fake Binance): /readyz names each of its
checks, and POST/DELETE /v1/subscriptions need the API key (design.md)."""

from __future__ import annotations

import secrets

import httpx
import pytest
from tradeflow_ingest.bootstrap import SERVICE
from tradeflow_ingest.settings import IngestSettings

from tests.fakes.fake_binance import FakeBinance
from tests.integration.test_ingest_service import wait_for

pytestmark = pytest.mark.integration


async def test_readyz_names_every_check_and_subscriptions_change_only_with_the_api_key(
        kafka_bootstrap, unique_name, api_key):
    fake = FakeBinance()
    await fake.start()
    exchange = f"bn-{unique_name}"[:60]
    settings = IngestSettings(
        kafka_bootstrap=kafka_bootstrap, environment="test", api_keys=api_key, consumer_session_timeout_ms=6000,
        subscriptions_group=f"ingest-{unique_name}", exchanges=[{
            "id": "binance", "name": exchange, "symbols": ["BTC/USDT"], "poll_interval_s": 0.3,
            "urls": {"public": fake.rest_url, "ws.spot": fake.ws_url}}])
    app = SERVICE.create_app(settings)
    body, query = {"exchange": exchange, "symbol": "ETH/USDT"}, {"exchange": exchange, "symbol": "ETH/USDT"}
    key, wrong = {"Authorization": f"Bearer {api_key}"}, {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
            async with app.router.lifespan_context(app):
                async def ready():
                    response = await client.get("/readyz")
                    return response if response.status_code == 200 else None
                checks = (await wait_for(ready, 30, "/readyz")).json()["checks"]
                # Both of ingest's `readiness` methods, each under its own name.
                assert set(checks) == {"broker", "subscription-log", "subscription-ownership"}
                assert checks["subscription-log"].startswith("subscriptions: ")
                assert checks["subscription-ownership"].startswith(f"subscriptions group ingest-{unique_name}: ")

                async def subscribed() -> set[str]:
                    return {s["symbol"] for s in (await client.get("/v1/subscriptions")).json()
                            if s["exchange"] == exchange}

                for headers in ({}, wrong):
                    refused = await client.post("/v1/subscriptions", json=body, headers=headers)
                    assert refused.status_code == 401 and "API key" in refused.json()["detail"]
                assert await subscribed() == {"BTC/USDT"}
                added = await client.post("/v1/subscriptions", json=body, headers=key)
                assert added.status_code == 201, added.text
                assert await subscribed() == {"BTC/USDT", "ETH/USDT"}

                for headers in ({}, wrong):
                    refused = await client.delete("/v1/subscriptions", params=query, headers=headers)
                    assert refused.status_code == 401 and "API key" in refused.json()["detail"]
                assert await subscribed() == {"BTC/USDT", "ETH/USDT"}
                removed = await client.delete("/v1/subscriptions", params=query, headers=key)
                assert removed.status_code == 204, removed.text
                assert await subscribed() == {"BTC/USDT"}
    finally:
        await fake.stop()
