"""LocalInfra against the real binaries: start, idempotence, status, stop by pid, external broker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from tradeflow_ops.infra import InfraError, LocalInfra
from tradeflow_ops.infra.processes import free_port, port_accepts_connections, process_start_ticks
from tradeflow_ops.infra.tansu import kafka_metadata_error

pytestmark = pytest.mark.integration


@pytest.fixture
def state_dir():
    # Like the session fixture: under /tmp and traversable for the `postgres` OS user.
    path = Path(tempfile.mkdtemp(prefix="tradeflow-infra-test-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_up_is_idempotent_and_down_stops_exactly_what_up_started(state_dir):
    infra = LocalInfra(state_dir, kafka_port=free_port(), db_port=free_port())
    try:
        first = infra.up()
        assert first.started == ("kafka", "postgres")
        assert first.ready
        assert first.env == {
            "TRADEFLOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{infra.kafka_port}",
            "TRADEFLOW_DATABASE_URL": f"postgresql://tradeflow@127.0.0.1:{infra.db_port}/tradeflow",
        }
        # The servers really answer: a Kafka metadata request and a query in the `tradeflow` database.
        assert kafka_metadata_error(infra.kafka_bootstrap) is None
        with psycopg.connect(infra.database_url) as conn:
            assert conn.execute("SELECT current_database(), current_user").fetchone() == ("tradeflow", "tradeflow")

        second = infra.up()
        assert second.started == ()
        assert (second.kafka.pid, second.postgres.pid) == (first.kafka.pid, first.postgres.pid)

        status = infra.status()
        assert status.kafka.running and status.postgres.running
        assert f"TRADEFLOW_KAFKA_BOOTSTRAP=127.0.0.1:{infra.kafka_port}" in status.describe()
        assert (state_dir / "tansu.log").exists()
    finally:
        stopped = infra.down()

    assert sorted(stopped) == ["kafka", "postgres"]
    for pid in (first.kafka.pid, first.postgres.pid):
        assert process_start_ticks(pid) is None, f"pid {pid} still runs after down()"
    assert not port_accepts_connections("127.0.0.1", infra.kafka_port)
    assert not port_accepts_connections("127.0.0.1", infra.db_port)
    after = infra.status()
    assert not after.kafka.running and not after.postgres.running
    assert infra.down() == []  # nothing left to stop


def test_a_database_survives_down_and_up(state_dir):
    infra = LocalInfra(state_dir, kafka_port=free_port(), db_port=free_port())
    try:
        infra.up(kafka=False)
        with psycopg.connect(infra.database_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
        infra.down()
        infra.up(kafka=False)
        with psycopg.connect(infra.database_url) as conn:
            assert conn.execute("SELECT to_regclass('kept') IS NOT NULL").fetchone() == (True,)
    finally:
        infra.down()


def test_an_external_broker_is_used_and_no_broker_is_started(state_dir, kafka_bootstrap):
    infra = LocalInfra(state_dir, kafka_port=free_port(), db_port=free_port(),
                       external_kafka_bootstrap=kafka_bootstrap)
    try:
        status = infra.up()
        assert status.started == ("postgres",)
        assert not status.kafka.managed and status.kafka.running and status.kafka.pid is None
        assert status.env["TRADEFLOW_KAFKA_BOOTSTRAP"] == kafka_bootstrap
        assert not port_accepts_connections("127.0.0.1", infra.kafka_port), "a broker was started on the local port"
        assert not (state_dir / "tansu.log").exists()
    finally:
        infra.down()
    # down() leaves the external broker alone.
    assert kafka_metadata_error(kafka_bootstrap) is None


def test_an_occupied_port_fails_with_a_clear_message(state_dir, kafka_bootstrap):
    port = int(kafka_bootstrap.rsplit(":", 1)[1])
    infra = LocalInfra(state_dir, kafka_port=port, db_port=free_port())
    with pytest.raises(InfraError, match=rf"127\.0\.0\.1:{port} is already in use"):
        infra.up(postgres=False)
    assert kafka_metadata_error(kafka_bootstrap) is None  # the broker that owns the port is untouched


def test_an_unreachable_external_database_is_reported_not_running(state_dir):
    port = free_port()
    infra = LocalInfra(state_dir, kafka_port=free_port(), db_port=free_port(),
                       external_database_url=f"postgresql://tradeflow@127.0.0.1:{port}/tradeflow")
    status = infra.status()
    assert not status.postgres.managed and not status.postgres.running
    assert status.postgres.detail  # says why (connection refused)
    assert f"TRADEFLOW_DATABASE_URL=postgresql://tradeflow@127.0.0.1:{port}/tradeflow" in status.describe()


def test_session_databases_are_migrated_in_their_storage_modes(database_url, plain_postgres_url):
    from tradeflow_ops.infra.postgres import timescaledb_installed

    def extension_and_tables(url: str) -> tuple[bool, bool]:
        with psycopg.connect(url) as conn:
            has_extension = conn.execute("SELECT count(*) = 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0]
            has_tables = conn.execute("SELECT to_regclass('ticks') IS NOT NULL AND to_regclass('candles_1m') IS NOT NULL").fetchone()[0]
        return has_extension, has_tables

    assert extension_and_tables(database_url) == (timescaledb_installed(), True)
    assert extension_and_tables(plain_postgres_url) == (False, True)


def _cli(*argv: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tradeflow_ops.cli", *argv], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def test_infra_commands_start_report_and_stop_the_local_setup(state_dir):
    kafka_port, db_port = free_port(), free_port()
    env = {
        "TRADEFLOW_INFRA_DIR": str(state_dir),
        "TRADEFLOW_INFRA_KAFKA_PORT": str(kafka_port),
        "TRADEFLOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
        "TRADEFLOW_INFRA_DB_PORT": str(db_port),
        "TRADEFLOW_DATABASE_URL": f"postgresql://tradeflow@127.0.0.1:{db_port}/tradeflow",
    }
    try:
        assert _cli("infra", "status", env=env).returncode == 3  # nothing runs yet
        up = _cli("infra", "up", env=env)
        assert up.returncode == 0, up.stderr
        assert "started: kafka, postgres" in up.stdout
        assert f"export TRADEFLOW_KAFKA_BOOTSTRAP=127.0.0.1:{kafka_port}" in up.stdout
        again = _cli("infra", "up", env=env)
        assert "already running; nothing started" in again.stdout
        status = _cli("infra", "status", env=env)
        assert status.returncode == 0 and status.stdout.count(" running ") == 2
    finally:
        down = _cli("infra", "down", env=env)
    assert down.returncode == 0 and "stopped: kafka, postgres" in down.stdout
    assert not port_accepts_connections("127.0.0.1", kafka_port)
    assert not port_accepts_connections("127.0.0.1", db_port)


async def test_topics_commands_show_messages_and_dead_letters(state_dir):
    from aiokafka import AIOKafkaProducer
    from tradeflow.admin import ensure_topics
    from tradeflow.codec import encode, message_headers
    from tradeflow.messages import Tick
    from tradeflow.topics import MD_TICKS

    # A private broker: the session broker's DLQ may hold other tests' dead letters.
    infra = LocalInfra(state_dir, kafka_port=free_port(), db_port=free_port())
    infra.up(postgres=False)
    env = {"TRADEFLOW_KAFKA_BOOTSTRAP": infra.kafka_bootstrap}
    try:
        await ensure_topics(infra.kafka_bootstrap, [MD_TICKS])
        tick = Tick(exchange="binance", symbol="BTC/USDT", trade_id="t1", price=100.5, amount=0.5, side="buy",
                    ts_event=1_700_000_000_000_000_000, ts_recv=1_700_000_000_000_000_001)
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
        await producer.start()
        try:
            await asyncio.gather(
                await producer.send(MD_TICKS.name, encode(tick), key=b"binance:BTC/USDT",
                                    headers=message_headers(Tick)),
                await producer.send(MD_TICKS.dlq, b"\x00not-msgpack", key=b"binance:BTC/USDT",
                                    headers=[("error-reason", b"decode: bad bytes"), ("source-topic", b"md.ticks.v1")]),
            )
        finally:
            await producer.stop()

        tail = await asyncio.to_thread(_cli, "topics", "tail", MD_TICKS.name, "--from-beginning", "--max", "1", env=env)
        assert tail.returncode == 0, tail.stderr
        [line] = [json.loads(text) for text in tail.stdout.splitlines()]
        assert line["key"] == "binance:BTC/USDT" and line["value"]["trade_id"] == "t1"
        assert line["headers"]["schema"] == "Tick/1"

        dlq = await asyncio.to_thread(_cli, "topics", "tail", MD_TICKS.dlq, "--from-beginning", "--max", "1", env=env)
        [dead] = [json.loads(text) for text in dlq.stdout.splitlines()]
        assert dead["error_reason"] == "decode: bad bytes"
        assert dead["value"] is None and dead["value_hex"] == b"\x00not-msgpack".hex()

        listing = await asyncio.to_thread(_cli, "topics", "list", env=env)
        assert [row.split()[0] for row in listing.stdout.splitlines()[1:]] == [MD_TICKS.name, MD_TICKS.dlq]
        describe = await asyncio.to_thread(_cli, "topics", "describe", MD_TICKS.name, env=env)
        assert "value:       Tick (schema Tick/1, MessagePack)" in describe.stdout
        assert f"partitions:  {MD_TICKS.partitions}" in describe.stdout
        missing = await asyncio.to_thread(_cli, "topics", "describe", "md.candles.v1", env=env)
        assert missing.returncode == 1 and "does not exist" in missing.stderr
    finally:
        infra.down()


def test_up_on_another_port_refuses_to_orphan_the_running_broker(state_dir):
    infra = LocalInfra(state_dir, kafka_port=free_port(), db_port=free_port())
    try:
        started = infra.up(postgres=False)
        moved = LocalInfra(state_dir, kafka_port=free_port(), db_port=infra.db_port)
        with pytest.raises(InfraError, match=rf"runs on port {infra.kafka_port} \(pid {started.kafka.pid}\)"):
            moved.up(postgres=False)
        assert moved.down() == ["kafka"]  # down stops what is recorded, whatever the ports now
        assert process_start_ticks(started.kafka.pid) is None
    finally:
        infra.down()


@pytest.mark.e2e
def test_demo_runs_the_platform_trades_on_paper_and_stops_its_children_but_not_infra_it_did_not_start(
        service_env, unique_name, state_dir):
    services = ("ingest", "candle-builder", "strategy", "risk", "execution", "notifier")
    ports = {name: free_port() for name in services}
    env = {
        **service_env,
        "TRADEFLOW_INFRA_DIR": str(state_dir),
        # Not the groups of other tests on the session broker.
        **{f"TRADEFLOW_{name.upper().replace('-', '_')}_CONSUMER_GROUP": f"{name}-{unique_name}"
           for name in services if name != "ingest"},
        "TRADEFLOW_RISK_MARKET_DATA_GROUP": f"risk-md-{unique_name}",
        "TRADEFLOW_CANDLE_BUILDER_URL": f"http://127.0.0.1:{ports['candle-builder']}",
    }
    exchange = f"demo-{unique_name}"
    # Speed 120: a 1m candle every half second, so sma_cross (3, 8) trades within seconds.
    demo = _cli("demo", "--symbols", "3", "--rate", "150", "--speed", "120", "--duration", "25",
                "--exchange", exchange, "--ingest-port", str(ports["ingest"]),
                *[arg for name in services[1:] for arg in ("--port", f"{name}={ports[name]}")],
                env=env, timeout=240)
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr
    assert "kafka: using TRADEFLOW_KAFKA_BOOTSTRAP" in out and "postgres: using TRADEFLOW_DATABASE_URL" in out
    assert "stopping what it started" not in out
    assert re.search(r"md\.ticks\.v1: [1-9]\d* ticks from 3 markets since the demo started", out), out
    candles_port, ingest_port = ports["candle-builder"], ports["ingest"]
    assert f"http://127.0.0.1:{candles_port}/v1/candles?exchange={exchange}&symbol=" in out
    assert f"http://127.0.0.1:{ingest_port}/metrics" in out
    # A generated API key, printed with a request to copy that uses it.
    (key,) = re.findall(r"demo: API key for state-changing requests \(POST, PUT, PATCH, DELETE\): (\S+)", out)
    assert len(key) >= 32
    assert f"curl -X POST http://127.0.0.1:{candles_port}/v1/instruments -H 'Authorization: Bearer {key}'" in out
    # The strategies traded on the paper account: an order filled, a position with its P&L.
    assert re.search(r"order \w+ SYM0\d/USD (buy|sell) market [\d.]+( quote)?: filled [\d.]+ @ [\d.]+ fee [\d.]+", out), out
    assert re.search(r"position SYM0\d/USD quantity [\d.]+ avg [\d.]+ realized -?[\d.]+ unrealized -?[\d.]+", out), out
    assert re.search(r"P&L of paper-demo: realized -?[\d.]+ unrealized -?[\d.]+; balances .*USD [\d.]+", out), out
    assert "leaving the broker and database running" in out
    child_pids = [int(pid) for pid in re.findall(r"demo: started \S+ \(pid (\d+)\)", out)]
    assert len(child_pids) == len(services)
    assert sorted(re.findall(r"demo: started (\S+) \(pid", out)) == sorted(services)
    assert all(process_start_ticks(pid) is None for pid in child_pids)
    assert not any(port_accepts_connections("127.0.0.1", port) for port in ports.values())
    assert kafka_metadata_error(service_env["TRADEFLOW_KAFKA_BOOTSTRAP"]) is None
