"""``tradeflow demo``: the whole pipeline on one machine, watched from the terminal.

infra up (remembering what it started) -> db upgrade -> topics -> every installed service whose
ServiceDefinition has a ``demo`` (ServiceDemo: start order, settings, examples) as a child
process (`tradeflow run NAME`) with a generated API key -> every few seconds, the latest closed
1m candle per symbol from md.candles.v1 and each service's examples. Ctrl-C, SIGTERM or
--duration stops the children (SIGTERM, then SIGKILL by pid) and then only the infrastructure
the demo itself started. This module knows no service by name.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from pydantic import SecretStr
from tradeflow.settings import load_settings
from tradeflow.topics import split_market_key

from tradeflow_ops.cli.candle_table import MarketView
from tradeflow_ops.cli.child_services import ChildService, wait_until_ready
from tradeflow_ops.cli.db_commands import describe_capabilities
from tradeflow_ops.cli.errors import CliError
from tradeflow_ops.cli.infra_commands import say_external
from tradeflow_ops.cli.run_command import service_definition
from tradeflow_ops.infra import InfraError, InfraSettings, LocalInfra
from tradeflow_ops.infra.processes import port_accepts_connections

if TYPE_CHECKING:  # tradeflow.service imports FastAPI: `tradeflow --help` stays light
    from tradeflow.service import DemoContext, ServiceDefinition

REFRESH_S = 5.0
DEFAULT_SPEED = 30.0
READY_TIMEOUT_S = 90.0
CHILD_STOP_GRACE_S = 20.0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="run broker, database and the services (ingest with a synthetic "
                                              "market, candle-builder, ...) on this machine")
    demo.add_argument("--symbols", type=_bounded(int, 1, 10_000), default=20, help="synthetic symbols (default 20)")
    demo.add_argument("--duration", type=_bounded(float, 1, 7 * 24 * 3600), default=None, metavar="SECONDS",
                      help="stop by itself after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--rate", type=_bounded(float, 0.1, 1_000_000), default=200.0, metavar="TICKS_PER_SECOND",
                      help="synthetic trades per second over all symbols (default 200)")
    demo.add_argument("--exchange", default="synthetic", type=_exchange_name,
                      help="exchange name of the synthetic market and of the demo's paper account (default synthetic)")
    demo.add_argument("--speed", type=_bounded(float, 1, 3600), default=DEFAULT_SPEED, metavar="FACTOR",
                      help="the synthetic market starts in the past and runs FACTOR times faster than real time "
                           "for the first 10 minutes, until it reaches the present, then live (default "
                           f"{DEFAULT_SPEED:g}: a 1m candle every {60 / DEFAULT_SPEED:g} s at first, so the strategies "
                           "trade within seconds; 1: live from the start)")
    demo.add_argument("--port", type=_service_port, action="append", default=[], metavar="SERVICE=PORT",
                      help="REST port of a service, e.g. --port candle-builder=18002 (repeatable; "
                           "default: each service's usual port)")
    # The flags of the two-service demo, kept: the same as --port ingest=PORT / --port candle-builder=PORT.
    demo.add_argument("--ingest-port", type=_bounded(int, 1, 65535), default=None, metavar="PORT",
                      help="same as --port ingest=PORT")
    demo.add_argument("--candles-port", type=_bounded(int, 1, 65535), default=None, metavar="PORT",
                      help="same as --port candle-builder=PORT")
    demo.set_defaults(handler=demo_command)


def _exchange_name(text: str) -> str:
    if not text or ":" in text or any(c.isspace() for c in text) or len(text) > 64:
        raise argparse.ArgumentTypeError(f"an exchange name without ':' or spaces, at most 64 characters, got {text!r}")
    return text


def _service_port(text: str) -> tuple[str, int]:
    name, sep, port = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected SERVICE=PORT, e.g. candle-builder=18002, got {text!r}")
    return name, _bounded(int, 1, 65535)(port)


def chosen_ports(args: argparse.Namespace) -> dict[str, int]:
    """The ports asked for on the command line, by service name."""
    ports = dict(args.port)
    if args.ingest_port is not None:
        ports["ingest"] = args.ingest_port
    if args.candles_port is not None:
        ports["candle-builder"] = args.candles_port
    return ports


def _bounded(kind, low, high):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {text}")
        return value

    return parse


def demo_command(args: argparse.Namespace) -> int:
    return asyncio.run(Demo(args).run())


def plan_services(args: argparse.Namespace) -> list[tuple[ServiceDefinition, int]]:
    """(ServiceDefinition, port) of every installed service with a demo part, in start order."""
    from tradeflow.service import installed_services

    definitions = [service_definition(name) for name in installed_services()]
    in_demo = sorted((d for d in definitions if d.demo is not None), key=lambda d: (d.demo.stage, d.name))
    ports = chosen_ports(args)
    unknown = sorted(set(ports) - {d.name for d in in_demo})
    if unknown:
        raise CliError(f"--port: no service {', '.join(map(repr, unknown))} in the demo "
                       f"(it runs: {', '.join(d.name for d in in_demo) or 'none'})")
    planned = [(d, ports.get(d.name, d.default_port)) for d in in_demo]
    taken: dict[int, str] = {}
    for definition, port in planned:
        if port in taken:
            raise CliError(f"port {port} is given to both {taken[port]} and {definition.name}")
        taken[port] = definition.name
    return planned


def service_url_variable(service: str) -> str:
    """``TRADEFLOW_<SERVICE>_URL``: where clients find a service's API (tradeflow.clients.settings)."""
    return f"TRADEFLOW_{service.upper().replace('-', '_')}_URL"


def service_environment(definition: ServiceDefinition, args: argparse.Namespace, api_key: str) -> dict[str, str]:
    """The variables the demo sets for one service: text logs, the demo's API key and the
    service's own demo settings under its variable names (ADR 0014)."""
    from tradeflow.service import DemoOptions
    from tradeflow.settings import ServiceSettings, environment_variable

    options = DemoOptions(symbols=args.symbols, rate=args.rate, exchange=args.exchange, speed=args.speed)
    env = {environment_variable(ServiceSettings, "log_format"): "text",
           environment_variable(ServiceSettings, "api_keys"): api_key}
    env |= {environment_variable(definition.settings_type, field): str(value)
            for field, value in definition.demo.settings(options).items()}
    return env


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.settings = load_settings(InfraSettings)
        self.infra = LocalInfra.from_settings(self.settings)
        self.stop = asyncio.Event()
        self.infra_started: tuple[str, ...] = ()
        self.children: list[ChildService] = []
        self.examples: dict[str, Callable[[DemoContext], Sequence[str]]] = {}  # by service name
        self.statuses: dict[str, Callable[[DemoContext], Awaitable[Sequence[str]]]] = {}
        self.api_key = secrets.token_urlsafe(32)  # for the services' state-changing requests
        self.started_at_ms = 0  # wall clock when the services were started

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._request_stop, sig)
        try:
            code = await self._run()
        except BaseException:
            await self._clean_up()
            raise
        if not await self._clean_up():
            raise CliError("a service did not stop cleanly; see its log above")
        return code

    async def _clean_up(self) -> bool:
        """Stop the children, then the infrastructure the demo started. True when all stopped cleanly."""
        # Signals keep only setting the event here, so a second Ctrl-C cannot cut the cleanup short.
        clean = await asyncio.to_thread(self._stop_children)
        if self.infra_started:
            print(f"demo: stopping what it started: {', '.join(self.infra_started)}", flush=True)
            await asyncio.to_thread(self.infra.down, components=self.infra_started)
        else:
            print("demo: leaving the broker and database running (they were running before)", flush=True)
        return clean

    def _request_stop(self, sig: signal.Signals) -> None:
        if not self.stop.is_set():
            print(f"\ndemo: {sig.name} received, stopping", flush=True)
        self.stop.set()

    async def _run(self) -> int:
        services = plan_services(self.args)  # before anything starts: a bad --port fails fast
        say_external(self.infra)
        print("demo: starting the local broker and database where needed", flush=True)
        try:
            status = await asyncio.to_thread(self.infra.up)
        except InfraError as exc:
            self.infra_started = exc.started  # e.g. the broker came up, the database did not
            raise
        self.infra_started = status.started
        print(status.describe(), flush=True)
        # From here on, the addresses `up` resolved (local ports or the external ones).
        self.settings = self.settings.model_copy(update={
            "kafka_bootstrap": status.kafka.address, "database_url": SecretStr(status.postgres.address)})
        if self.stop.is_set():
            return 0

        from tradeflow.admin import ensure_topics
        from tradeflow.topics import ALL_TOPICS
        from tradeflow_db.migrate import upgrade

        capabilities = await asyncio.to_thread(upgrade, self.settings.libpq_url)
        print(f"demo: database migrated; {describe_capabilities(capabilities)}", flush=True)
        await ensure_topics(self.settings, ALL_TOPICS)
        if self.stop.is_set():
            return 0

        self._start_children(services, status.env)
        self.started_at_ms = int(time.time() * 1000)
        await wait_until_ready(self.children, READY_TIMEOUT_S, self.stop)
        if self.stop.is_set():
            return 0
        print(f"demo: {', '.join(c.name for c in self.children)} ready; logs: "
              + ", ".join(str(c.log_path) for c in self.children), flush=True)
        print(f"demo: API key for state-changing requests (POST, PUT, PATCH, DELETE): {self.api_key}\n"
              f"      send it as: -H 'Authorization: Bearer {self.api_key}'", flush=True)
        await self._watch(time.monotonic())  # --duration counts from ready: a slow start shortens nothing
        return 0

    def _start_children(self, services: list[tuple[ServiceDefinition, int]], infra_env: dict[str, str]) -> None:
        logs = self.infra.state_dir / "demo"
        # Where every service of the demo listens, for the ones that call another (the strategy
        # service reads the candle-builder's API): TRADEFLOW_<SERVICE>_URL, tradeflow.clients.settings.
        addresses = {service_url_variable(definition.name): f"http://127.0.0.1:{port}" for definition, port in services}
        for definition, port in services:
            name = definition.name
            if port_accepts_connections("127.0.0.1", port):
                raise CliError(f"port {port} for {name} is already in use (another `tradeflow run {name}`?)")
            env = {**infra_env, **addresses, **service_environment(definition, self.args, self.api_key)}
            child = ChildService(name, port, env, logs / f"{name}.log")
            child.start()
            self.children.append(child)
            self.examples[name] = definition.demo.examples
            self.statuses[name] = definition.demo.status
            print(f"demo: started {name} (pid {child.process.pid}) on {child.base_url}", flush=True)

    async def _watch(self, started_at: float) -> None:
        """Consume the topics into a view and print it every REFRESH_S until stopped or the duration ends."""
        view = MarketView()
        consumer_task = asyncio.create_task(self._consume(view))
        deadline = started_at + self.args.duration if self.args.duration else None
        try:
            while not self.stop.is_set():
                timeout = REFRESH_S if deadline is None else max(0.0, min(REFRESH_S, deadline - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), timeout)
                if self.stop.is_set():
                    return
                if consumer_task.done():
                    consumer_task.result()  # raises what stopped the consumer
                for child in self.children:
                    if child.exited() is not None:
                        raise CliError(f"{child.name} exited with status {child.exited()}; last lines of "
                                       f"{child.log_path}:\n{child.log_tail()}")
                print(await self._screen(view), flush=True)
                if deadline is not None and time.monotonic() >= deadline:
                    print(f"demo: {self.args.duration:g} s elapsed, stopping", flush=True)
                    return
        finally:
            consumer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer_task

    async def _consume(self, view: MarketView) -> None:
        from tradeflow.bus import FROM_BEGINNING, FROM_END, TopicReader
        from tradeflow.topics import MD_CANDLES, MD_TICKS

        # No consumer group: the demo only watches, it must not take partitions from a service.
        # Candles from the beginning (the latest candles, also from before the demo; undecodable
        # ones are skipped: the candle-builder's DLQ handles bad data). Ticks from the end,
        # undecoded: the demo only counts what it produces, by the producer's timestamp.
        reader = TopicReader(self.settings, [MD_CANDLES, MD_TICKS.name], client_id="tradeflow-demo",
                             start={MD_CANDLES.name: FROM_BEGINNING, MD_TICKS.name: FROM_END},
                             on_undecodable=lambda record, error: None)
        async for batch in reader.follow():
            for record in batch.records:
                if record.topic == MD_TICKS.name:
                    if record.timestamp_ms >= self.started_at_ms:
                        view.add_tick(record.key or "")
                elif record.value is not None:
                    view.add_candle(record.value)

    async def _screen(self, view: MarketView) -> str:
        from tradeflow.service import DemoContext

        trading = sorted(split_market_key(k) for k in view.ticks_per_key if ":" in k)
        exchange, symbol = (trading or view.markets() or [(self.args.exchange, "SYMBOL")])[0]
        lines, status = [], []
        for child in self.children:
            context = DemoContext(base_url=child.base_url, api_key=self.api_key, exchange=exchange, symbol=symbol)
            lines += [f"  {example}" for example in self.examples[child.name](context)]
            lines.append(f"  {child.base_url}/docs   {child.base_url}/metrics   ({child.name})")
            status += await self.statuses[child.name](context)
        stamp = time.strftime("%H:%M:%S")
        trading_lines = f"{chr(10).join(status)}\n" if status else ""
        return f"\n--- {stamp} ---\n{view.render()}\n{trading_lines}REST:\n" + "\n".join(lines)

    def _stop_children(self) -> bool:
        clean = True
        # In start order: sources first, so the services downstream still take their last messages.
        for child in self.children:
            print(f"demo: stopping {child.name} (pid {child.process.pid})", flush=True)
            if not child.stop(CHILD_STOP_GRACE_S):
                clean = False
                print(f"demo: {child.name} did not stop cleanly (status {child.process.returncode}); "
                      f"last lines of {child.log_path}:\n{child.log_tail()}", flush=True)
        return clean
