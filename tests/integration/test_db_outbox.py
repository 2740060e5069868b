"""The database component and the transactional outbox against the real database and broker."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from alembic.script import ScriptDirectory
from tradeflow.admin import ensure_topics
from tradeflow.bus import Producer
from tradeflow.codec import HEADER_SCHEMA, HEADER_TRACEPARENT, decode, header_value
from tradeflow.messages import Alert
from tradeflow.settings import ServiceSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import TopicSpec
from tradeflow_db import Database, SchemaNotReadyError
from tradeflow_db.migrate import alembic_config, downgrade, upgrade
from tradeflow_db.outbox import Outbox, OutboxRelay, outbox_table_ddl

pytestmark = pytest.mark.integration

NEWEST_MARKET_DATA_REVISION = "0003"


def alert(n: int) -> Alert:
    return Alert(service="test", severity="info", kind="k", message=f"m{n}", ts_event=n)


async def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 15.0) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records, deadline = [], time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        await asyncio.sleep(0.3)  # nothing more may come
        for batch in (await consumer.getmany(timeout_ms=200)).values():
            records.extend(batch)
        return records
    finally:
        await consumer.stop()


# --- the schema check ---------------------------------------------------------------------------

async def test_a_service_on_an_unmigrated_database_says_which_revision_it_needs_and_what_to_run(fresh_database_url):
    database = Database(fresh_database_url, name="candle-builder", required_revision=NEWEST_MARKET_DATA_REVISION)
    with pytest.raises(SchemaNotReadyError, match=r"has no Tradeflow schema.*run `tradeflow db upgrade`"):
        await database.start()
    assert (await database.ping()) == (False, "not started")

    await asyncio.to_thread(upgrade, fresh_database_url)
    await database.start()
    try:
        assert (await database.ping()) == (True, "reachable")
    finally:
        await database.stop()

    await asyncio.to_thread(downgrade, fresh_database_url, "0002")
    with pytest.raises(SchemaNotReadyError, match="is not migrated to revision 0003"):
        await Database(fresh_database_url, name="candle-builder", required_revision="0003").start()


async def test_migrate_on_start_brings_an_empty_database_to_the_services_revision(fresh_database_url):
    database = Database(fresh_database_url, name="candle-builder", required_revision=NEWEST_MARKET_DATA_REVISION,
                        migrate_on_start=True)
    await database.start()
    try:
        async with database.connection() as conn:
            rows = await (await conn.execute("SELECT revision FROM tradeflow_schema_history ORDER BY 1")).fetchall()
        chain = {r.revision for r in ScriptDirectory.from_config(alembic_config(fresh_database_url)).walk_revisions()}
        assert {r[0] for r in rows} == chain and NEWEST_MARKET_DATA_REVISION in chain
    finally:
        await database.stop()


# --- the outbox -----------------------------------------------------------------------------------

@pytest.fixture
async def outbox_setup(database_url, kafka_bootstrap, unique_name):
    table = f"outbox_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(outbox_table_ddl(table))
    topic = TopicSpec(f"{unique_name}.alerts", "service", Alert, 3)
    await ensure_topics(kafka_bootstrap, [topic])
    settings = ServiceSettings(environment="test", kafka_bootstrap=kafka_bootstrap)
    telemetry = Telemetry("test-outbox", settings)
    database = Database(database_url, name="test-outbox")
    producer = Producer(settings, telemetry, client_id="test-outbox")
    await database.start()
    await producer.start()
    try:
        yield database, Outbox(table), producer, telemetry, topic
    finally:
        await producer.stop()
        await database.stop()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {table}")


async def outbox_rows(database: Database, outbox: Outbox) -> int:
    async with database.connection() as conn:
        return (await (await conn.execute(f"SELECT count(*) FROM {outbox.table}")).fetchone())[0]


async def test_committed_messages_are_published_in_order_once_and_rolled_back_ones_never(
        outbox_setup, kafka_bootstrap):
    database, outbox, producer, telemetry, topic = outbox_setup
    with telemetry.tracer.start_as_current_span("decision"):
        async with database.transaction() as conn:
            await outbox.put_many(conn, [(topic, "acct-1", alert(n)) for n in range(5)])
    with pytest.raises(RuntimeError):
        async with database.transaction() as conn:
            await outbox.put(conn, topic, "acct-1", alert(99))
            raise RuntimeError("the state change failed")
    relay = OutboxRelay(database, outbox, producer, telemetry)
    await relay.start()
    try:
        assert await relay.drained()
        async with database.transaction() as conn:
            await outbox.put(conn, topic, "acct-1", alert(5))
        assert await relay.drained()
    finally:
        await relay.stop()
    records = await read_topic(kafka_bootstrap, topic.name, 6)
    assert [decode(Alert, r.value).message for r in records] == [f"m{n}" for n in range(6)]
    assert {header_value(r.headers, HEADER_SCHEMA) for r in records} == {"Alert/1"}
    assert header_value(records[0].headers, HEADER_TRACEPARENT), "the trace continues through the outbox"
    assert await outbox_rows(database, outbox) == 0


async def test_a_quiet_relay_deletes_what_it_published_at_its_next_poll(outbox_setup, kafka_bootstrap):
    """A round that took every committed row waits for a wake-up instead of running again at once;
    the acknowledged rows are still deleted by the next round, here the poll's (nothing else wakes it)."""
    database, outbox, producer, telemetry, topic = outbox_setup
    relay = OutboxRelay(database, outbox, producer, telemetry, poll_interval_s=0.3)
    await relay.start()
    try:
        async with database.transaction() as conn:
            await outbox.put_many(conn, [(topic, "acct-1", alert(n)) for n in range(3)])
        records = await read_topic(kafka_bootstrap, topic.name, 3)
        assert [decode(Alert, r.value).message for r in records] == ["m0", "m1", "m2"]
        for _ in range(100):  # 5 s at most
            if not await outbox_rows(database, outbox):
                break
            await asyncio.sleep(0.05)
        assert await outbox_rows(database, outbox) == 0
    finally:
        await relay.stop()
    assert len(await read_topic(kafka_bootstrap, topic.name, 3)) == 3, "none sent twice"


async def test_a_relay_its_writer_wakes_skips_that_writers_notify_but_wakes_on_another_replicas(
        outbox_setup, kafka_bootstrap):
    """Risk's store wakes its relay after each commit: the NOTIFY of the same commit would only run a
    second round for nothing. Another replica's writer (another Outbox on the same table) still wakes it."""
    database, outbox, producer, telemetry, topic = outbox_setup
    relay = OutboxRelay(database, outbox, producer, telemetry, poll_interval_s=60, woken_by_local_commits=True)
    await relay.start()
    try:
        assert await relay.drained()
        async with database.transaction() as conn:
            await outbox.put(conn, topic, "acct-1", alert(0))
        await asyncio.sleep(1.0)
        assert await outbox_rows(database, outbox) == 1, "its own writer's NOTIFY did not wake it"
        relay.wake()  # what the writer does after its commit
        assert [decode(Alert, r.value).message for r in await read_topic(kafka_bootstrap, topic.name, 1)] == ["m0"]

        async with database.transaction() as conn:
            await Outbox(outbox.table).put(conn, topic, "acct-2", alert(1))  # another replica's writer
        records = await read_topic(kafka_bootstrap, topic.name, 2, timeout_s=5)
        assert [decode(Alert, r.value).message for r in records] == ["m0", "m1"], "woken by the other's NOTIFY"
    finally:
        await relay.stop()


async def test_messages_wait_in_the_outbox_while_the_broker_cannot_take_them(outbox_setup, kafka_bootstrap):
    database, outbox, producer, telemetry, topic = outbox_setup
    stopped = Producer(ServiceSettings(environment="test", kafka_bootstrap=kafka_bootstrap), telemetry,
                       client_id="stopped")  # never started: every send is refused
    async with database.transaction() as conn:
        await outbox.put_many(conn, [(topic, "acct-1", alert(n)) for n in range(3)])
    failing = OutboxRelay(database, outbox, stopped, telemetry)
    await failing.start()
    try:
        assert not await failing.drained(timeout_s=1.5)
        assert await outbox_rows(database, outbox) == 3
    finally:
        await failing.stop()
    relay = OutboxRelay(database, outbox, producer, telemetry)
    await relay.start()
    try:
        assert await relay.drained()
    finally:
        await relay.stop()
    records = await read_topic(kafka_bootstrap, topic.name, 3)
    assert [decode(Alert, r.value).message for r in records] == ["m0", "m1", "m2"]


async def test_two_relays_on_one_outbox_publish_each_message_once(outbox_setup, kafka_bootstrap):
    database, outbox, producer, telemetry, topic = outbox_setup
    relays = [OutboxRelay(database, outbox, producer, telemetry, poll_interval_s=0.1) for _ in range(2)]
    for relay in relays:
        await relay.start()
    try:
        for n in range(40):
            async with database.transaction() as conn:
                await outbox.put(conn, topic, f"acct-{n % 3}", alert(n))
        assert all(await asyncio.gather(*(relay.drained(timeout_s=15) for relay in relays)))
    finally:
        for relay in relays:
            await relay.stop()
    records = await read_topic(kafka_bootstrap, topic.name, 40)
    messages = [decode(Alert, r.value).message for r in records]
    assert sorted(messages, key=lambda m: int(m[1:])) == [f"m{n}" for n in range(40)]
    assert len(messages) == 40, "none twice"
    for key in ("acct-0", "acct-1", "acct-2"):
        ordered = [int(decode(Alert, r.value).message[1:]) for r in records if r.key.decode() == key]
        assert ordered == sorted(ordered)


async def test_a_transaction_in_pipeline_mode_writes_the_same_rows(outbox_setup, kafka_bootstrap):
    """COPY cannot run in pipeline mode (risk batches its decisions in one): the outbox then inserts."""
    database, outbox, producer, telemetry, topic = outbox_setup
    async with database.connection() as conn, conn.transaction(), conn.pipeline():
        await outbox.put_many(conn, [(topic, "acct-1", alert(n)) for n in range(3)])
    async with database.transaction() as conn:
        await outbox.put_many(conn, [(topic, "acct-1", alert(n)) for n in range(3, 5)])
    relay = OutboxRelay(database, outbox, producer, telemetry)
    await relay.start()
    try:
        assert await relay.drained()
    finally:
        await relay.stop()
    records = await read_topic(kafka_bootstrap, topic.name, 5)
    assert [decode(Alert, r.value).message for r in records] == [f"m{n}" for n in range(5)]


async def test_rows_a_writer_folds_into_its_own_statement_are_published_in_order_with_their_headers(
        outbox_setup, kafka_bootstrap):
    """Risk writes a unit's decisions and outbox rows in one statement (Outbox.insert_from_json)."""
    import msgspec
    from tradeflow_db.outbox import OutboxRow

    database, outbox, producer, telemetry, topic = outbox_setup
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    rows = [OutboxRow.of(topic, f"acct-{n % 2}", alert(n), {"traceparent": traceparent} if n == 1 else {})
            for n in range(3)]
    statement = (f"WITH written AS ({outbox.insert_from_json('%s::jsonb')}) "
                 f"SELECT {outbox.notify_call()}")
    relay = OutboxRelay(database, outbox, producer, telemetry, poll_interval_s=60)
    await relay.start()
    try:
        assert await relay.drained()
        async with database.transaction() as conn:
            await conn.execute(statement, (msgspec.json.encode([Outbox.json_row(r) for r in rows]).decode(),))
        records = await read_topic(kafka_bootstrap, topic.name, 3, timeout_s=5)  # woken by the NOTIFY
    finally:
        await relay.stop()
    by_key = {key: [decode(Alert, r.value).message for r in records if r.key.decode() == key]
              for key in ("acct-0", "acct-1")}
    assert by_key == {"acct-0": ["m0", "m2"], "acct-1": ["m1"]}, "each key's rows in the order written"
    assert {decode(Alert, r.value).message: header_value(r.headers, HEADER_TRACEPARENT) for r in records} == {
        "m0": None, "m1": traceparent, "m2": None}
    assert {header_value(r.headers, HEADER_SCHEMA) for r in records} == {"Alert/1"}
