"""`tradeflow replay FILE` core: a CSV file to md.ticks.v1 on a real broker."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from tradeflow.codec import decode, header_value
from tradeflow.messages import Tick
from tradeflow.settings import CommonSettings
from tradeflow.topics import MD_TICKS
from tradeflow.trades.replay_csv import ReplayFileError
from tradeflow_ingest.replay import publish_replay_file

pytestmark = pytest.mark.integration

HEADER = "ts,exchange,symbol,price,amount,side,trade_id"


async def read_ticks(bootstrap: str, exchanges: set[str]) -> list[tuple[int, int, str, Tick, str | None]]:
    """Every (partition, offset, key, tick, schema header) on md.ticks.v1 of ``exchanges``, up to now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster metadata
        partitions = [TopicPartition(MD_TICKS.name, p) for p in sorted(consumer.partitions_for_topic(MD_TICKS.name) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for r in records:
                    tick = decode(Tick, r.value)
                    if tick.exchange in exchanges:
                        found.append((tp.partition, r.offset, r.key.decode(), tick,
                                      header_value(r.headers, "schema")))
        return found
    finally:
        await consumer.stop()


async def test_replay_publishes_each_good_line_once_in_file_order_per_symbol(kafka_bootstrap, unique_name, tmp_path):
    binance, kraken = f"{unique_name}-binance", f"{unique_name}-kraken"
    lines = [HEADER]
    expected: dict[str, list[str]] = defaultdict(list)  # key -> trade ids in file order
    bad_lines = {}
    for i in range(300):
        exchange, symbol = [(binance, "BTC/USDT"), (binance, "ETH/USDT"), (kraken, "BTC/USD")][i % 3]
        # Event times jump back and forth: the file order, not the time order, must survive.
        ts = 1_767_225_600_000 + (i * 7919) % 1000 * 1000
        ts_text = str(ts) if i % 2 else f"2026-01-01T00:{(ts // 60000) % 60:02d}:{(ts // 1000) % 60:02d}Z"
        if i == 40:
            lines.append(f"{ts},{exchange},{symbol},100.5,1")  # two columns short
            bad_lines[len(lines)] = "malformed_line"
        if i == 41:
            lines.append(f"{ts},{exchange},{symbol},-3,1,buy,neg")  # valid CSV, invalid tick
            bad_lines[len(lines)] = "invalid_price"
        if i == 42:
            # No offset: UTC, the one rule of tradeflow.time (a good line).
            lines.append(f"2026-01-01T00:00:00,{exchange},{symbol},3,1,buy,naive")
            expected[f"{exchange}:{symbol}"].append("naive")
        trade_id = f"t{i}"
        lines.append(f"{ts_text},{exchange},{symbol},{100 + i % 17}.25,0.{i + 1},{'buy' if i % 5 else 'sell'},{trade_id}")
        expected[f"{exchange}:{symbol}"].append(trade_id)
    path = tmp_path / "trades.csv"
    path.write_text("\n".join(lines) + "\n")

    report = await publish_replay_file(path, CommonSettings(kafka_bootstrap=kafka_bootstrap))

    assert report.published == 301
    assert [(line_no, reason.split(":")[0]) for line_no, reason in report.skipped] == sorted(bad_lines.items())
    assert all(f"line {line_no}:" in report.summary() for line_no in bad_lines)
    found = await read_ticks(kafka_bootstrap, {binance, kraken})
    assert len(found) == 301  # each good line exactly once
    by_key: dict[str, list[tuple[int, int, Tick]]] = defaultdict(list)
    for partition, offset, key, tick, schema in found:
        assert key == f"{tick.exchange}:{tick.symbol}" and schema == "Tick/1"
        by_key[key].append((partition, offset, tick))
    for key, trade_ids in expected.items():
        records = sorted(by_key[key], key=lambda r: r[1])
        assert len({partition for partition, _, _ in records}) == 1  # one key, one partition
        assert [tick.trade_id for _, _, tick in records] == trade_ids  # file order
        recv = [tick.ts_recv for _, _, tick in records]
        assert all(a < b for a, b in pairwise(recv))
    naive = next(t for _, _, k, t, _ in found if t.trade_id == "naive")
    assert naive.ts_event == 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
    first = next(t for _, _, k, t, _ in found if t.trade_id == "t0")
    assert (first.ts_event, first.price, first.amount, first.side) == (1_767_225_600_000_000_000, 100.25, 0.1, "sell")


async def test_replay_with_a_wrong_header_publishes_nothing(kafka_bootstrap, unique_name, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(f"time,exchange,symbol,price,amount,side,trade_id\n1767225600000,{unique_name},A/B,1,1,buy,x\n")
    with pytest.raises(ReplayFileError, match="expected the header"):
        await publish_replay_file(path, CommonSettings(kafka_bootstrap=kafka_bootstrap))
    assert await read_ticks(kafka_bootstrap, {unique_name}) == []
