"""/readyz: every readiness check is its own entry under the name it was registered with."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from tradeflow.service import ReadinessCheck, create_service_app, database_check
from tradeflow.settings import ServiceSettings
from tradeflow.telemetry import Telemetry


def app_with(checks):
    settings = ServiceSettings(environment="test")
    return create_service_app("checks-test", settings, Telemetry("checks-test", settings), readiness_checks=checks)


async def readyz(app) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        return await client.get("/readyz")


def answering(ready: bool, detail: str):
    async def probe() -> tuple[bool, str]:
        return ready, detail

    return probe


class Reader:
    """Two objects of one class with a method of the same name: the case that used to collapse."""

    def __init__(self, ready: bool, detail: str) -> None:
        self.ready, self.detail = ready, detail

    async def readiness(self) -> tuple[bool, str]:
        return self.ready, self.detail


async def test_two_checks_with_the_same_function_name_are_two_entries():
    log, group = Reader(True, "subscriptions: 3 read"), Reader(False, "not joined yet")
    response = await readyz(app_with([ReadinessCheck("subscription-log", log.readiness),
                                      ReadinessCheck("subscription-ownership", group.readiness)]))
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "service": "checks-test", "checks": {
        "subscription-log": "subscriptions: 3 read", "subscription-ownership": "not joined yet"}}


async def test_all_ready_is_200_with_every_check_in_registration_order():
    async def failing_ping() -> None:
        raise ConnectionRefusedError("refused")

    response = await readyz(app_with([ReadinessCheck("broker", answering(True, "reachable")),
                                      database_check(failing_ping),
                                      ReadinessCheck("stream", answering(True, "reading"))]))
    assert response.status_code == 503
    assert list(response.json()["checks"]) == ["broker", "database", "stream"]
    assert response.json()["checks"]["database"] == "unreachable: ConnectionRefusedError: refused"

    response = await readyz(app_with([ReadinessCheck("broker", answering(True, "reachable"))]))
    assert (response.status_code, response.json()["status"]) == (200, "ready")


async def test_a_hanging_or_raising_check_is_not_ready_with_its_reason(monkeypatch):
    monkeypatch.setattr("tradeflow.service.READINESS_CHECK_TIMEOUT_S", 0.05)

    async def hangs() -> tuple[bool, str]:
        await asyncio.Event().wait()
        return True, "never"

    async def raises() -> tuple[bool, str]:
        raise RuntimeError("boom")

    response = await readyz(app_with([ReadinessCheck("slow", hangs), ReadinessCheck("broken", raises)]))
    assert response.status_code == 503
    assert response.json()["checks"] == {"slow": "no answer within 0s", "broken": "check failed: RuntimeError: boom"}


def test_duplicate_names_are_refused_when_the_app_is_created():
    with pytest.raises(ValueError, match="two readiness checks are named 'broker'"):
        app_with([ReadinessCheck("broker", answering(True, "a")), ReadinessCheck("broker", answering(True, "b"))])


def test_a_check_without_a_name_is_refused():
    with pytest.raises(TypeError, match="is not a ReadinessCheck"):
        app_with([answering(True, "unnamed")])
    with pytest.raises(ValueError, match="readiness check name ''"):
        ReadinessCheck("", answering(True, "x"))
    with pytest.raises(ValueError, match="readiness check name 'two words'"):
        ReadinessCheck("two words", answering(True, "x"))
