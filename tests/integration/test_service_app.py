"""The service app factory served by a real uvicorn: health, readiness, metrics, lifecycle, signals."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI, Query
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tradeflow.admin import ensure_topics
from tradeflow.bus import Consumer, DeadLetters, Producer, Record
from tradeflow.messages import Tick
from tradeflow.service import (
    ReadinessCheck,
    ServiceDefinition,
    ServiceRuntime,
    broker_check,
    consumer_check,
    create_service_app,
    database_check,
    run_service,
)
from tradeflow.settings import ConfigurationError, ServiceSettings
from tradeflow.telemetry import Telemetry, correlation_id_var
from tradeflow.topics import TopicSpec
from tradeflow_db import Database
from tradeflow_ops.infra.processes import free_port


@pytest.fixture(autouse=True)
def restore_logging():
    """The app's lifespan installs the service's log handler on the root logger: undo it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def settings_for(bootstrap: str) -> ServiceSettings:
    return ServiceSettings(
        environment="test", kafka_bootstrap=bootstrap,
        consumer_session_timeout_ms=3000, consumer_heartbeat_interval_ms=500, shutdown_timeout_s=10,
    )


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app`` under uvicorn (lifespan included) on a free loopback port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise AssertionError("server exited during start-up")
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def echo_router() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/echo")
    async def echo(count: int = Query(ge=1, le=10)) -> dict[str, object]:
        return {"count": count, "correlation_id": correlation_id_var.get()}

    return router


async def poll_ready(client: httpx.AsyncClient, timeout_s: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get("/readyz")
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.2)


@pytest.mark.integration
async def test_service_with_broker_is_healthy_ready_and_exports_metrics(kafka_bootstrap, unique_name):
    settings = settings_for(kafka_bootstrap)
    telemetry = Telemetry("svc-test", settings)
    spec = TopicSpec(f"{unique_name}.ticks", "exchange:symbol", Tick, 2)
    await ensure_topics(kafka_bootstrap, [spec])
    producer = Producer(settings, telemetry)
    handled: list[Record] = []

    async def handle(records: list[Record]) -> None:
        handled.extend(records)

    consumer = Consumer(settings, telemetry, topics=[spec], group_id=unique_name, handler=handle,
                        dead_letters=DeadLetters(producer, telemetry))
    spans = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    app = create_service_app("svc-test", settings, telemetry, components=[producer, consumer],
                             routers=[echo_router()],
                             readiness_checks=[broker_check(producer), consumer_check(consumer)])

    async with serve(app) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok", "service": "svc-test"}

        ready = await poll_ready(client)
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert "reachable" in checks["broker"]
        assert checks[f"consumer:{unique_name}"].startswith(f"joined group {unique_name}")

        tick = Tick(exchange="x", symbol="A/B", trade_id="1", price=1.0, amount=1.0, side="buy", ts_event=1, ts_recv=1)
        await producer.send(spec, "x:A/B", tick)
        deadline = time.monotonic() + 10
        while not handled and time.monotonic() < deadline:  # noqa: ASYNC110 - polling another task's list
            await asyncio.sleep(0.05)

        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert f'tradeflow_messages_produced_total{{topic="{spec.name}"}} 1.0' in metrics.text
        assert f'tradeflow_messages_consumed_total{{topic="{spec.name}"}} 1.0' in metrics.text
        assert re.search(rf'tradeflow_consumer_lag{{group="{unique_name}",partition="\d",topic="{re.escape(spec.name)}"}} 0.0',
                         metrics.text)
        # The last /readyz run of each check, for the alert rules (deploy/prometheus/rules).
        assert 'tradeflow_readiness_check{check="broker"} 1.0' in metrics.text
        assert f'tradeflow_readiness_check{{check="consumer:{unique_name}"}} 1.0' in metrics.text
        assert 'tradeflow_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in metrics.text

        echoed = await client.get("/v1/echo", params={"count": 3}, headers={"X-Correlation-ID": "req-42"})
        assert echoed.json() == {"count": 3, "correlation_id": "req-42"}
        assert echoed.headers["x-correlation-id"] == "req-42"
        generated = await client.get("/healthz")
        assert len(generated.headers["x-correlation-id"]) == 32  # a fresh uuid when none is given

        invalid = await client.get("/v1/echo", params={"count": "many"})
        assert invalid.status_code == 422
        assert invalid.json()["detail"][0]["loc"] == ["query", "count"]

        span_names = {span.name for span in spans.get_finished_spans()}
        if "telemetry" in inspect.signature(FastAPI.__init__).parameters:  # FastAPI's native tracing
            assert any("/v1/echo" in name for name in span_names), span_names
        assert not any("/healthz" in name or "/readyz" in name for name in span_names)  # probes untraced

        docs = await client.get("/openapi.json")
        assert "/v1/echo" in docs.json()["paths"]
    # lifespan stopped the components: the consumer left its group, the producer refuses sends
    assert not consumer.is_ready()
    assert not producer.is_connected()


async def test_readyz_is_503_naming_the_failed_checks_when_the_broker_is_unreachable():
    settings = settings_for(f"127.0.0.1:{free_port()}")  # nothing listens there
    telemetry = Telemetry("svc-down", settings)
    producer = Producer(settings, telemetry)

    async def failing_ping() -> None:
        raise ConnectionRefusedError("database refused the connection")

    app = create_service_app("svc-down", settings, telemetry, components=[producer],
                             readiness_checks=[broker_check(producer), database_check(failing_ping)])
    async with serve(app) as client:
        assert (await client.get("/healthz")).status_code == 200  # alive, just not ready
        response = await client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not ready"
        assert "not connected" in body["checks"]["broker"] or "unreachable" in body["checks"]["broker"]
        assert body["checks"]["database"].startswith("unreachable: ConnectionRefusedError")
        metrics = (await client.get("/metrics")).text
        assert 'tradeflow_readiness_check{check="database"} 0.0' in metrics
        assert 'tradeflow_readiness_check{check="broker"} 0.0' in metrics


@pytest.mark.integration
async def test_a_database_components_pool_is_measured_while_requests_wait(database_url):
    """tradeflow_db_pool_* (the alert rules' "pool saturated"): a pool of 2, both held, a third waits."""
    settings = ServiceSettings(environment="test", shutdown_timeout_s=10)
    telemetry = Telemetry("svc-pool", settings)
    database = Database(database_url, name="svc-pool", min_connections=1, max_connections=2)
    app = create_service_app("svc-pool", settings, telemetry, components=[database],
                             readiness_checks=[ReadinessCheck("database", database.ping)])
    async with serve(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        async with database.connection() as first, database.connection() as second:
            assert first is not second
            waiting = asyncio.create_task(database.ping(timeout_s=5.0))
            await asyncio.sleep(0.3)
            metrics = (await client.get("/metrics")).text
            assert 'tradeflow_db_pool_max_connections{pool="svc-pool"} 2.0' in metrics
            assert 'tradeflow_db_pool_connections{pool="svc-pool"} 2.0' in metrics
            assert 'tradeflow_db_pool_available_connections{pool="svc-pool"} 0.0' in metrics
            assert 'tradeflow_db_pool_requests_waiting{pool="svc-pool"} 1.0' in metrics
        assert await waiting == (True, "reachable")  # served once a connection came back
        metrics = (await client.get("/metrics")).text
        assert 'tradeflow_db_pool_requests_waiting{pool="svc-pool"} 0.0' in metrics
        assert 'tradeflow_db_pool_request_errors_total{pool="svc-pool"} 0.0' in metrics
        assert 'tradeflow_readiness_check{check="database"} 1.0' in metrics


class Recorder:
    def __init__(self, name: str, log: list[str], fail_start: bool = False) -> None:
        self.name, self.log, self.fail_start = name, log, fail_start

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


async def test_runtime_starts_in_order_and_stops_in_reverse():
    log: list[str] = []
    runtime = ServiceRuntime([Recorder("a", log), Recorder("b", log), Recorder("c", log)])
    await runtime.start()
    await runtime.stop()
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


async def test_a_component_failing_to_start_stops_the_started_ones_and_fails_start_up():
    log: list[str] = []
    runtime = ServiceRuntime([Recorder("a", log), Recorder("b", log), Recorder("c", log, fail_start=True)])
    with pytest.raises(RuntimeError, match="c cannot start"):
        await runtime.start()
    assert log == ["start a", "start b", "stop b", "stop a"]


def test_run_service_exits_naming_the_bad_variable(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_HTTP_PORT", "not-a-port")
    definition = ServiceDefinition("bad", 8099, ServiceSettings, lambda s: FastAPI())
    with pytest.raises(ConfigurationError, match="TRADEFLOW_HTTP_PORT"):
        run_service(definition)


SERVICE_SCRIPT = textwrap.dedent(
    """
    import logging
    from tradeflow.service import ServiceDefinition, create_service_app, run_service
    from tradeflow.settings import ServiceSettings
    from tradeflow.telemetry import Telemetry

    class Worker:
        async def start(self):
            logging.getLogger("worker").info("worker started")

        async def stop(self):
            logging.getLogger("worker").info("worker stopped cleanly")

    def create_app(settings):
        return create_service_app("sigterm-test", settings, Telemetry("sigterm-test", settings), components=[Worker()])

    run_service(ServiceDefinition("sigterm-test", 8099, ServiceSettings, create_app))
    """
)


def test_run_service_serves_json_logs_and_stops_cleanly_on_sigterm(tmp_path):
    script = tmp_path / "service.py"
    script.write_text(SERVICE_SCRIPT)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEFLOW_")}
    env.update({"TRADEFLOW_HTTP_PORT": str(port), "TRADEFLOW_HTTP_HOST": "127.0.0.1", "TRADEFLOW_ENVIRONMENT": "test"})
    process = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "service did not start"
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # uvicorn re-raises the signal after its graceful shutdown, so the parent sees "killed by SIGTERM"
    assert process.returncode in (0, -signal.SIGTERM), stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    assert "worker started" in messages and "worker stopped cleanly" in messages
    assert all(line["service"] == "sigterm-test" for line in lines)
    assert messages.index("worker stopped cleanly") > messages.index("worker started")
