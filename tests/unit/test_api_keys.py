"""API keys on state-changing requests, in the service app factory (design.md): 401 with a message
without or with a wrong key, reads and probes open, keys never in logs or reprs, the bearer scheme
in the OpenAPI document, and no start outside local/test without a key."""

from __future__ import annotations

import logging
import secrets

import httpx
import pytest
from fastapi import APIRouter
from pydantic import SecretStr
from tradeflow.api_keys import ApiKeys
from tradeflow.service import create_service_app
from tradeflow.settings import ConfigurationError, ServiceSettings, load_settings
from tradeflow.telemetry import Telemetry

KEY = secrets.token_urlsafe(24)
OTHER_KEY = secrets.token_urlsafe(24)
PRODUCTION = {"environment": "production", "kafka_idempotent_producer": True,
              "kafka_bootstrap": "kafka.internal:9092", "database_url": "postgresql://u@db.internal/tradeflow"}


def things_router(changes: list[str]) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/things")
    async def list_things() -> list[str]:
        return changes

    @router.post("/things", status_code=201)
    async def add_thing() -> dict[str, str]:
        changes.append("post")
        return {"added": "thing"}

    @router.put("/things/{name}")
    async def put_thing(name: str) -> None:
        changes.append(f"put {name}")

    @router.patch("/things/{name}")
    async def patch_thing(name: str) -> None:
        changes.append(f"patch {name}")

    @router.delete("/things/{name}", status_code=204)
    async def delete_thing(name: str) -> None:
        changes.append(f"delete {name}")

    return router


def app_for(settings: ServiceSettings, changes: list[str] | None = None, routers=None):
    routers = [things_router(changes if changes is not None else [])] if routers is None else routers
    return create_service_app("keys-test", settings, Telemetry("keys-test", settings), routers=routers)


def client_of(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


CHANGES = [("POST", "/v1/things", "post"), ("PUT", "/v1/things/a", "put a"),
           ("PATCH", "/v1/things/a", "patch a"), ("DELETE", "/v1/things/a", "delete a")]


@pytest.mark.parametrize(("method", "path", "effect"), CHANGES)
async def test_a_state_changing_request_needs_a_valid_key(method, path, effect):
    changes: list[str] = []
    app = app_for(ServiceSettings(environment="test", api_keys=SecretStr(KEY)), changes)
    async with client_of(app) as client:
        missing = await client.request(method, path)
        wrong = await client.request(method, path, headers=bearer(OTHER_KEY))
        basic = await client.request(method, path, headers={"Authorization": f"Basic {KEY}"})
        empty = await client.request(method, path, headers={"Authorization": "Bearer "})
        assert changes == []  # nothing refused reached the endpoint
        accepted = await client.request(method, path, headers=bearer(KEY))

    assert (missing.status_code, missing.json()) == (401, {"detail": "missing API key: send 'Authorization: Bearer <key>'"})
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "invalid API key"})
    for refused in (basic, empty):
        assert (refused.status_code, refused.json()) == (401, {"detail": "the Authorization header must be 'Bearer <key>'"})
    assert accepted.status_code < 300, accepted.text
    assert changes == [effect]


async def test_reads_and_probes_need_no_key_and_refusals_are_counted():
    changes: list[str] = []
    app = app_for(ServiceSettings(environment="test", api_keys=SecretStr(KEY)), changes)
    async with client_of(app) as client:
        assert (await client.get("/v1/things")).status_code == 200
        assert (await client.head("/v1/things")).status_code in (200, 405)  # open either way: never 401
        for probe in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert (await client.get(probe)).status_code == 200, probe
        assert (await client.post("/v1/things")).status_code == 401
        metrics = (await client.get("/metrics")).text
    # refused before routing: counted, under no route
    assert 'tradeflow_http_requests_total{method="POST",route="unmatched",status="401"} 1.0' in metrics


async def test_every_configured_key_works_from_the_variable_and_the_mounted_file(tmp_path):
    file_key = secrets.token_urlsafe(24)
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(f"# rotated 2025-01-01\n\n{file_key}\n")
    changes: list[str] = []
    settings = ServiceSettings(environment="test", api_keys=SecretStr(f"{KEY}, {OTHER_KEY}"), api_keys_file=keys_file)
    async with client_of(app_for(settings, changes)) as client:
        for key in (KEY, OTHER_KEY, file_key):
            assert (await client.post("/v1/things", headers=bearer(key))).status_code == 201
        assert (await client.post("/v1/things", headers=bearer(file_key + "x"))).status_code == 401
    assert changes == ["post"] * 3


async def test_keys_are_never_logged_nor_shown_in_reprs(caplog, monkeypatch):
    monkeypatch.setenv("TRADEFLOW_API_KEYS", KEY)
    settings = load_settings(ServiceSettings)
    app = app_for(settings)
    with caplog.at_level(logging.DEBUG):
        async with client_of(app) as client:
            await client.post("/v1/things", headers=bearer(OTHER_KEY))
            await client.post("/v1/things", headers=bearer(KEY))
            await client.post("/v1/things")
    refusals = [r.getMessage() for r in caplog.records if r.name == "tradeflow.api_keys"]
    assert refusals == ["refused POST /v1/things: invalid API key",
                        "refused POST /v1/things: missing API key: send 'Authorization: Bearer <key>'"]
    for text in (caplog.text, repr(settings), str(settings.model_dump()), repr(app.user_middleware),
                 repr(ApiKeys(settings.configured_api_keys()))):
        assert KEY not in text and OTHER_KEY not in text


async def test_the_openapi_document_shows_the_bearer_scheme_on_state_changing_operations_only():
    app = app_for(ServiceSettings(environment="test", api_keys=SecretStr(KEY)))
    async with client_of(app) as client:
        document = (await client.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["apiKey"]["type"] == "http"
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    secured = {(path, method) for path, item in document["paths"].items()
               for method, operation in item.items() if operation.get("security") == [{"apiKey": []}]}
    assert secured == {("/v1/things", "post"), ("/v1/things/{name}", "put"), ("/v1/things/{name}", "patch"),
                       ("/v1/things/{name}", "delete")}
    assert "401" in document["paths"]["/v1/things"]["post"]["responses"]
    assert "security" not in document["paths"]["/v1/things"]["get"]


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_a_service_with_state_changing_routes_does_not_start_without_a_key_outside_local_and_test(environment):
    settings = ServiceSettings(**{**PRODUCTION, "environment": environment})
    with pytest.raises(ConfigurationError) as refused:
        app_for(settings)
    message = str(refused.value)
    assert "TRADEFLOW_API_KEYS or TRADEFLOW_API_KEYS_FILE" in message
    assert "POST /v1/things" in message and "DELETE /v1/things/{name}" in message
    # with a key it starts; a service that changes nothing needs none
    app_for(ServiceSettings(**{**PRODUCTION, "environment": environment}, api_keys=SecretStr(KEY)))
    app_for(settings, routers=[])


async def test_local_without_a_key_starts_but_refuses_changes_saying_what_to_set():
    changes: list[str] = []
    async with client_of(app_for(ServiceSettings(environment="local"), changes)) as client:
        refused = await client.post("/v1/things", headers=bearer(KEY))
        assert (await client.get("/v1/things")).status_code == 200
    assert refused.status_code == 401
    assert "TRADEFLOW_API_KEYS or TRADEFLOW_API_KEYS_FILE" in refused.json()["detail"]
    assert changes == []


@pytest.mark.parametrize(("value", "where"), [("short", "key 1"), (f"{KEY},with space{KEY}", "key 2")])
def test_a_weak_or_malformed_key_is_refused_at_start_without_echoing_it(monkeypatch, value, where):
    monkeypatch.setenv("TRADEFLOW_API_KEYS", value)
    with pytest.raises(ConfigurationError) as refused:
        load_settings(ServiceSettings)
    assert f"TRADEFLOW_API_KEYS ({where}): an API key needs at least 16 characters" in str(refused.value)
    assert KEY not in str(refused.value) and "short" not in str(refused.value)


def test_an_unreadable_or_empty_keys_file_is_refused_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("TRADEFLOW_API_KEYS_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="TRADEFLOW_API_KEYS_FILE: cannot read .*missing: FileNotFoundError"):
        load_settings(ServiceSettings)
    (tmp_path / "empty").write_text("# no key yet\n\n")
    monkeypatch.setenv("TRADEFLOW_API_KEYS_FILE", str(tmp_path / "empty"))
    with pytest.raises(ConfigurationError, match="TRADEFLOW_API_KEYS_FILE: .*empty holds no key"):
        load_settings(ServiceSettings)
