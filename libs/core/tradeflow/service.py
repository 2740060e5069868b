"""The shape every Tradeflow service shares: lifecycle, health, readiness, metrics, API keys, uvicorn.

A service's ``bootstrap.py`` builds its components (producer, consumers, stores), hands them
to :func:`create_service_app` with its routers and named readiness checks, and exports a
:class:`ServiceDefinition` (entry-point group ``tradeflow.services``) that ``tradeflow run
SERVICE`` passes to :func:`run_service` and ``tradeflow demo`` reads its :class:`ServiceDemo` from.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tradeflow.api_keys import ApiKeyMiddleware, ApiKeys, document_api_keys, mutating_operations
from tradeflow.errors import StartupError
from tradeflow.settings import (
    CommonSettings,
    ConfigurationError,
    ServiceSettings,
    environment_variable,
    load_settings,
)
from tradeflow.telemetry import Telemetry, correlation_id_var

log = logging.getLogger(__name__)

CORRELATION_HEADER = "X-Correlation-ID"
READINESS_CHECK_TIMEOUT_S = 3.0
_VALID_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")  # no log injection via the header


@runtime_checkable
class Component(Protocol):
    """Something with a lifetime inside a service: started in order, stopped in reverse."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class BackgroundTask:
    """A Component whose work is one asyncio task: :meth:`run` from start until it returns or
    :meth:`stop` cancels it. Subclasses set ``name`` and implement ``run``."""

    name = "BackgroundTask"

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait(self) -> None:
        """Until :meth:`run` has returned (at once when not started)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def run(self) -> None:
        raise NotImplementedError


async def retry_until_done(attempt: Callable[[], Awaitable[object | None]], *, first_delay_s: float,
                           max_delay_s: float = 300.0) -> None:
    """Call ``attempt`` until it returns something other than None, waiting between tries
    (doubling from ``first_delay_s`` up to ``max_delay_s``)."""
    delay = first_delay_s
    while await attempt() is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay_s)


@dataclass(frozen=True)
class DemoOptions:
    """What ``tradeflow demo`` was asked for (its flags), for the services to turn into settings."""

    symbols: int
    rate: float
    exchange: str = "synthetic"  # the synthetic market's exchange name (and the demo accounts')
    speed: float = 1.0  # how much faster than real time the synthetic market goes through its history


@dataclass(frozen=True)
class DemoContext:
    """What a service's demo examples may refer to: where it runs, the demo's API key, a market seen."""

    base_url: str
    api_key: str
    exchange: str
    symbol: str


def _no_demo_settings(options: DemoOptions) -> Mapping[str, object]:
    return {}


def _no_demo_examples(context: DemoContext) -> Sequence[str]:
    return ()


async def _no_demo_status(context: DemoContext) -> Sequence[str]:
    return ()


@dataclass(frozen=True)
class ServiceDemo:
    """How ``tradeflow demo`` runs a service. The demo knows no service by name: it runs every
    installed service whose definition has one of these.

    ``stage``: the service's place in the pipeline; services start in ascending stage and stop in
    the same order (sources first, so the services downstream still take their last messages).
    ``settings``: the service's settings in the demo, as field values (the demo turns them into
    the service's environment variables). ``examples``: lines the demo prints for the user to try.
    ``status``: lines the demo prints beside the candles at every refresh (e.g. execution's
    orders and positions, read from its API at ``context.base_url``); it must not raise.
    """

    stage: int
    settings: Callable[[DemoOptions], Mapping[str, object]] = _no_demo_settings
    examples: Callable[[DemoContext], Sequence[str]] = _no_demo_examples
    status: Callable[[DemoContext], Awaitable[Sequence[str]]] = _no_demo_status


@dataclass(frozen=True)
class ServiceDefinition:
    """What ``tradeflow run NAME`` needs to run a service, and ``tradeflow demo`` to run it there."""

    name: str
    default_port: int
    settings_type: type[ServiceSettings]
    create_app: Callable[[ServiceSettings], FastAPI]
    demo: ServiceDemo | None = None  # None: not part of `tradeflow demo`

    def __post_init__(self) -> None:
        scope = self.settings_type.service_name
        if scope and scope != self.name:
            raise ValueError(f"service {self.name!r}: its settings {self.settings_type.__name__} are those of "
                             f"service_name {scope!r}")


class ServiceRuntime:
    """Starts components in order and stops them in reverse, within a shutdown deadline."""

    def __init__(self, components: Sequence[Component], shutdown_timeout_s: float = 20.0) -> None:
        self.components = list(components)
        self.shutdown_timeout_s = shutdown_timeout_s
        self._started: list[Component] = []
        self.refused: StartupError | None = None  # why the start was refused, when it was

    async def start(self) -> None:
        """Start all; if one fails, stop the ones already started and re-raise."""
        for component in self.components:
            try:
                await component.start()
            except StartupError as exc:  # the operator's to fix: one line that says what to do
                log.error("%s cannot start: %s", _name(component), exc)
                self.refused = exc
                await self.stop()
                raise
            except BaseException:
                log.exception("%s failed to start; stopping the started components", _name(component))
                await self.stop()
                raise
            self._started.append(component)
            log.info("%s started", _name(component))

    async def stop(self) -> None:
        deadline = time.monotonic() + self.shutdown_timeout_s
        while self._started:
            component = self._started.pop()
            # Every component gets a chance to stop, even when an earlier one used the budget.
            remaining = max(1.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(component.stop(), remaining)
                log.info("%s stopped", _name(component))
            except TimeoutError:
                log.error("%s did not stop within %.1fs", _name(component), remaining)
            except Exception:
                log.exception("%s failed to stop cleanly", _name(component))


def _name(component: object) -> str:
    return getattr(component, "name", None) or type(component).__name__


# --- readiness checks ---------------------------------------------------------------------------

ReadinessProbe = Callable[[], Awaitable[tuple[bool, str]]]
_CHECK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._/-]{0,199}$")


@dataclass(frozen=True)
class ReadinessCheck:
    """One entry of ``/readyz``: its ``name`` there (unique within the service) and the ``probe``
    that answers ``(ready, detail)``. The name is given here, at registration: two checks of the
    same kind (say two consumers) are two entries with two names."""

    name: str
    probe: ReadinessProbe

    def __post_init__(self) -> None:
        if not _CHECK_NAME.match(self.name):
            raise ValueError(f"readiness check name {self.name!r}: 1-200 of letters, digits and ':._/-', "
                             "starting with a letter or digit")


def broker_check(producer, name: str = "broker") -> ReadinessCheck:
    """Ready when the broker answers a metadata request through ``producer``."""
    return ReadinessCheck(name, producer.ping)


def consumer_check(consumer, name: str | None = None) -> ReadinessCheck:
    """Ready when ``consumer`` joined its group (zero partitions is fine: replicas > partitions).

    Named ``consumer:<group id>`` unless ``name`` says otherwise."""

    async def joined() -> tuple[bool, str]:
        if consumer.is_ready():
            return True, f"joined group {consumer.group_id}, {len(consumer.assignment())} partition(s) assigned"
        return False, f"not joined group {consumer.group_id} yet"

    return ReadinessCheck(name or f"consumer:{consumer.group_id}", joined)


def database_check(ping: Callable[[], Awaitable[object]], name: str = "database") -> ReadinessCheck:
    """Ready when ``ping()`` returns without raising."""

    async def reachable() -> tuple[bool, str]:
        try:
            await ping()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready, with its reason
            return False, f"unreachable: {type(exc).__name__}: {str(exc)[:200]}"
        return True, "reachable"

    return ReadinessCheck(name, reachable)


def _checks_by_name(checks: Sequence[ReadinessCheck]) -> dict[str, ReadinessCheck]:
    """The checks keyed by name; a duplicate name or an unnamed check is a wiring error, refused at creation."""
    by_name: dict[str, ReadinessCheck] = {}
    for check in checks:
        if not isinstance(check, ReadinessCheck):
            raise TypeError(f"readiness check {check!r} is not a ReadinessCheck(name, probe)")
        if check.name in by_name:
            raise ValueError(f"two readiness checks are named {check.name!r}: each needs its own name in /readyz")
        by_name[check.name] = check
    return by_name


async def _run_check(check: ReadinessCheck) -> tuple[bool, str]:
    try:
        return await asyncio.wait_for(check.probe(), READINESS_CHECK_TIMEOUT_S)
    except TimeoutError:
        return False, f"no answer within {READINESS_CHECK_TIMEOUT_S:.0f}s"
    except Exception as exc:  # noqa: BLE001 - a broken check reports not-ready, it does not 500
        return False, f"check failed: {type(exc).__name__}: {exc}"


# --- the app ------------------------------------------------------------------------------------


class CorrelationIdMiddleware:
    """Sets correlation_id_var from X-Correlation-ID (or a new uuid) and echoes it back.

    Plain ASGI rather than BaseHTTPMiddleware: no extra task per request.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-correlation-id":
                incoming = value.decode("latin-1")
                break
        correlation_id = incoming if incoming and _VALID_CORRELATION_ID.match(incoming) else uuid.uuid4().hex
        token = correlation_id_var.set(correlation_id)

        async def send_with_header(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.append((CORRELATION_HEADER.lower().encode(), correlation_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            correlation_id_var.reset(token)


_PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _request_tracing_options(telemetry: Telemetry) -> dict[str, object]:
    """Request spans from FastAPI's native OpenTelemetry support (FastAPI >= 0.16x) on OUR provider.

    Probes are not traced (they would drown the real requests); metrics stay in Prometheus.
    Older FastAPI versions have no such option: requests are then simply not traced.
    """
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {
        "telemetry": {
            "tracer_provider": telemetry.tracer_provider,
            "tracing": True,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "exclude": lambda scope: scope.get("path") in _PROBE_PATHS,
        }
    }


class WiredService(Protocol):
    """What a service's ``build(settings, bus, database, clock)`` returns (docs/adding-a-service.md)."""

    components: Sequence[Component]
    routers: Sequence[APIRouter]
    readiness_checks: Sequence[ReadinessCheck]


def create_wired_app(name: str, settings: CommonSettings, telemetry: Telemetry, wired: WiredService, *,
                     description: str | None = None) -> FastAPI:
    """:func:`create_service_app` for a service wired by its ``build(...)``: every ``create_app``
    is then the real database, bus and clock handed to ``build`` and this."""
    return create_service_app(name, settings, telemetry, components=wired.components, routers=wired.routers,
                              readiness_checks=wired.readiness_checks, description=description)


def create_service_app(
    name: str,
    settings: CommonSettings,
    telemetry: Telemetry,
    components: Sequence[Component] = (),
    routers: Sequence[APIRouter] = (),
    readiness_checks: Sequence[ReadinessCheck] = (),
    *,
    version: str = "0.1.0",
    description: str | None = None,
) -> FastAPI:
    """A FastAPI app with the service's lifecycle, /healthz, /readyz, /metrics, /docs and API keys.

    Every state-changing request (POST, PUT, PATCH, DELETE) needs one of the service's API keys
    (:mod:`tradeflow.api_keys`). A service with such routes and no key configured does not
    start outside ``environment`` local and test (ConfigurationError naming the settings); in
    local and test it starts, and those requests answer 401 until a key is configured.
    """
    checks_by_name = _checks_by_name(readiness_checks)
    api_keys = ApiKeys(settings.configured_api_keys() if isinstance(settings, ServiceSettings) else ())
    guarded: list[str] = []  # "METHOD /path" of the state-changing operations, once the routers are in
    shutdown_timeout_s = getattr(settings, "shutdown_timeout_s", 20.0)
    runtime = ServiceRuntime(components, shutdown_timeout_s)
    http_requests = telemetry.counter(
        "tradeflow_http_requests_total", "HTTP requests served", ("method", "route", "status")
    )
    # The outcome of each /readyz check at its last run (probes run it every few seconds): what
    # the alert rules read for "database unreachable" and "broker unreachable".
    readiness = telemetry.gauge(
        "tradeflow_readiness_check", "1 when the readiness check passed at its last /readyz run, else 0", ("check",)
    )
    # Components that keep their own figures (a database pool) expose them on this registry.
    for component in components:
        register_metrics = getattr(component, "register_metrics", None)
        if callable(register_metrics):
            register_metrics(telemetry.registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        telemetry.configure()
        log.info("%s starting", name, extra={"environment": settings.environment})
        if guarded and not api_keys:
            log.warning("no API key configured: %s answer 401 until %s is set", ", ".join(guarded),
                        _api_key_variables(settings))
        await runtime.start()
        log.info("%s ready to serve", name)
        try:
            yield
        finally:
            log.info("%s stopping", name)
            await runtime.stop()
            telemetry.shutdown()
            log.info("%s stopped", name)

    app = FastAPI(
        title=f"tradeflow {name}",
        version=version,
        description=description or "",
        lifespan=lifespan,
        **_request_tracing_options(telemetry),
    )
    app.state.telemetry = telemetry
    app.state.runtime = runtime
    # Innermost first: the key check runs with the correlation id set, and its 401s are counted.
    app.add_middleware(ApiKeyMiddleware, keys=api_keys)
    app.add_middleware(CorrelationIdMiddleware)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        # The route template (/v1/candles), not the raw path: bounded label values.
        http_requests.labels(request.method, getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            status_code=500,
            content={"detail": "internal error", "correlation_id": correlation_id_var.get()},
        )

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @app.get("/readyz", tags=["operations"], summary="Broker/database reachable, consumers joined")
    async def readyz() -> JSONResponse:
        results = await asyncio.gather(*(_run_check(check) for check in checks_by_name.values()))
        checks = {check: detail for check, (_, detail) in zip(checks_by_name, results, strict=True)}
        for check, (ok, _) in zip(checks_by_name, results, strict=True):
            readiness.labels(check).set(1 if ok else 0)
        ready = all(ok for ok, _ in results)
        body = {"status": "ready" if ready else "not ready", "service": name, "checks": checks}
        return JSONResponse(status_code=200 if ready else 503, content=body)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(content=generate_latest(telemetry.registry), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    document_api_keys(app)
    guarded.extend(mutating_operations(app))
    if guarded and not api_keys and settings.environment not in ("local", "test"):
        raise ConfigurationError(
            f"invalid configuration:\n  {name} serves state-changing requests ({', '.join(guarded)}) "
            f"but has no API key: set {_api_key_variables(settings)} "
            f"(required when TRADEFLOW_ENVIRONMENT is {settings.environment})")
    return app


def _api_key_variables(settings: CommonSettings) -> str:
    settings_type = type(settings)
    return (f"{environment_variable(settings_type, 'api_keys')} or "
            f"{environment_variable(settings_type, 'api_keys_file')}")


SERVICES_GROUP = "tradeflow.services"


class UnknownServiceError(LookupError):
    """No installed service answers to the name (its text names the installed ones)."""


def installed_services() -> list[str]:
    """Names of the services installed in this environment (entry-point group ``tradeflow.services``)."""
    return sorted(ep.name for ep in entry_points(group=SERVICES_GROUP))


def service_definition(name: str) -> ServiceDefinition:
    """The :class:`ServiceDefinition` registered under ``name``."""
    matches = [ep for ep in entry_points(group=SERVICES_GROUP) if ep.name == name]
    if not matches:
        raise UnknownServiceError(f"unknown service {name!r}; installed: {', '.join(installed_services()) or 'none'}")
    definition = matches[0].load()
    if not isinstance(definition, ServiceDefinition):
        raise UnknownServiceError(f"entry point {matches[0].value} of service {name!r} is not a ServiceDefinition "
                                  "(stale install? run `make setup`)")
    return definition


def main(argv: Sequence[str] | None = None) -> None:
    """``tradeflow-service NAME``: the container entry point (images carry no operator tooling)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        sys.exit(f"usage: tradeflow-service NAME   (installed: {', '.join(installed_services()) or 'none'})")
    try:
        definition = service_definition(args[0])
    except UnknownServiceError as exc:
        sys.exit(f"tradeflow-service: {exc}")
    run_service(definition)


def _without_refusal_traceback(app: FastAPI):
    """``app`` for uvicorn, minus the traceback uvicorn prints when a component refused to start
    with a StartupError: the runtime logged its one line that says what to do."""
    runtime: ServiceRuntime | None = getattr(app.state, "runtime", None)

    async def asgi(scope, receive, send):
        if scope["type"] != "lifespan" or runtime is None:
            return await app(scope, receive, send)

        async def send_quietly(message):
            if message["type"] == "lifespan.startup.failed" and runtime.refused is not None:
                message = {**message, "message": ""}
            await send(message)

        return await app(scope, receive, send_quietly)

    return asgi


def run_service(definition: ServiceDefinition, settings: ServiceSettings | None = None) -> None:
    """Load settings (exit naming a bad variable), serve until SIGTERM/SIGINT, stop cleanly."""
    if settings is None:
        settings = load_settings(definition.settings_type)
    app = definition.create_app(settings)
    telemetry = getattr(app.state, "telemetry", None)
    if telemetry is not None:
        telemetry.configure_logging()  # uvicorn's own start-up lines in the same format
    port = settings.http_port or definition.default_port
    config = uvicorn.Config(
        _without_refusal_traceback(app),
        host=settings.http_host,
        port=port,
        log_config=None,  # keep our handlers: uvicorn's loggers propagate to the root
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
    )
    server = uvicorn.Server(config)
    server.run()  # uvicorn turns SIGTERM/SIGINT into a graceful shutdown (lifespan stops components)
    if not server.started:
        sys.exit(3)  # start-up failed (the reason is logged); same code as uvicorn's own CLI
