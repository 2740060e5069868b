"""``tradeflow demo``: the whole pipeline on one machine, watched from the terminal.

infra up (remembering what it started) -> db upgrade -> topics -> `run ingest` with a synthetic
market and `run candle-builder` as child processes -> every few seconds, the latest closed 1m
candle per symbol from md.candles.v1. Ctrl-C, SIGTERM or --duration stops the children
(SIGTERM, then SIGKILL by pid) and then only the infrastructure the demo itself started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from urllib.parse import urlencode

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

REFRESH_S = 5.0
READY_TIMEOUT_S = 90.0
CHILD_STOP_GRACE_S = 20.0
# Stopped in this order: the source first, so the candle-builder can still take its last ticks.
PIPELINE = ("ingest", "candle-builder")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="run broker, database, ingest (synthetic market) and candle-builder")
    demo.add_argument("--symbols", type=_bounded(int, 1, 10_000), default=20, help="synthetic symbols (default 20)")
    demo.add_argument("--duration", type=_bounded(float, 1, 7 * 24 * 3600), default=None, metavar="SECONDS",
                      help="stop by itself after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--rate", type=_bounded(float, 0.1, 1_000_000), default=200.0, metavar="TICKS_PER_SECOND",
                      help="synthetic trades per second over all symbols (default 200)")
    demo.add_argument("--ingest-port", type=_bounded(int, 1, 65535), default=None, metavar="PORT",
                      help="REST port of ingest (default: its usual 8001)")
    demo.add_argument("--candles-port", type=_bounded(int, 1, 65535), default=None, metavar="PORT",
                      help="REST port of candle-builder (default: its usual 8002)")
    demo.set_defaults(handler=demo_command)


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


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.settings = load_settings(InfraSettings)
        self.infra = LocalInfra.from_settings(self.settings)
        self.stop = asyncio.Event()
        self.infra_started: tuple[str, ...] = ()
        self.children: list[ChildService] = []
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

        self._start_children(status.env)
        self.started_at_ms = int(time.time() * 1000)
        await wait_until_ready(self.children, READY_TIMEOUT_S, self.stop)
        if self.stop.is_set():
            return 0
        print("demo: ingest and candle-builder are ready; logs: "
              + ", ".join(str(c.log_path) for c in self.children), flush=True)
        await self._watch(time.monotonic())  # --duration counts from ready: a slow start shortens nothing
        return 0

    def _start_children(self, infra_env: dict[str, str]) -> None:
        logs = self.infra.state_dir / "demo"
        chosen_ports = {"ingest": self.args.ingest_port, "candle-builder": self.args.candles_port}
        for name in PIPELINE:
            port = chosen_ports[name] or service_definition(name).default_port
            if port_accepts_connections("127.0.0.1", port):
                raise CliError(f"port {port} for {name} is already in use (another `tradeflow run {name}`?)")
            env = {**infra_env, "TRADEFLOW_LOG_FORMAT": "text"}
            if name == "ingest":
                env |= {"TRADEFLOW_INGEST_SYNTHETIC_SYMBOLS": str(self.args.symbols),
                        "TRADEFLOW_INGEST_SYNTHETIC_RATE": str(self.args.rate)}
            child = ChildService(name, port, env, logs / f"{name}.log")
            child.start()
            self.children.append(child)
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
                print(self._screen(view), flush=True)
                if deadline is not None and time.monotonic() >= deadline:
                    print(f"demo: {self.args.duration:g} s elapsed, stopping", flush=True)
                    return
        finally:
            consumer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer_task

    async def _consume(self, view: MarketView) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from tradeflow.bus.connection import kafka_client_options
        from tradeflow.codec import DecodeError, decode
        from tradeflow.messages import Candle
        from tradeflow.topics import MD_CANDLES, MD_TICKS

        # No consumer group: the demo only watches, it must not take partitions from a service.
        consumer = AIOKafkaConsumer(**kafka_client_options(self.settings), client_id="tradeflow-demo",
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer.topics()
            candles = [TopicPartition(MD_CANDLES.name, p) for p in consumer.partitions_for_topic(MD_CANDLES.name)]
            ticks = [TopicPartition(MD_TICKS.name, p) for p in consumer.partitions_for_topic(MD_TICKS.name)]
            consumer.assign(candles + ticks)
            await consumer.seek_to_beginning(*candles)  # the latest candles, also from before the demo
            # Ticks: count what this demo produces. The producer's timestamp decides, because a
            # broker's end offset can be off by one (Tansu reports the last offset, not the next).
            await consumer.seek_to_end(*ticks)
            while True:
                for tp, records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).items():
                    if tp.topic == MD_TICKS.name:
                        for record in records:
                            if record.timestamp >= self.started_at_ms:
                                view.add_tick(record.key.decode("utf-8", "replace") if record.key else "")
                        continue
                    for record in records:
                        with contextlib.suppress(DecodeError):  # the candle-builder's DLQ handles bad data
                            view.add_candle(decode(Candle, record.value))
        finally:
            await consumer.stop()

    def _screen(self, view: MarketView) -> str:
        by_name = {c.name: c for c in self.children}
        candles_api = by_name["candle-builder"].base_url
        trading = sorted(split_market_key(k) for k in view.ticks_per_key if ":" in k)
        exchange, symbol = (trading or view.markets() or [("synthetic", "SYMBOL")])[0]
        query = urlencode({"exchange": exchange, "symbol": symbol, "timeframe": "1m"})
        urls = [
            f"  {candles_api}/v1/candles?{query}",
            *(f"  {c.base_url}/docs   {c.base_url}/metrics   ({c.name})" for c in self.children),
        ]
        stamp = time.strftime("%H:%M:%S")
        return f"\n--- {stamp} ---\n{view.render()}\nREST:\n" + "\n".join(urls)

    def _stop_children(self) -> bool:
        clean = True
        for child in sorted(self.children, key=lambda c: PIPELINE.index(c.name)):
            print(f"demo: stopping {child.name} (pid {child.process.pid})", flush=True)
            if not child.stop(CHILD_STOP_GRACE_S):
                clean = False
                print(f"demo: {child.name} did not stop cleanly (status {child.process.returncode}); "
                      f"last lines of {child.log_path}:\n{child.log_tail()}", flush=True)
        return clean
