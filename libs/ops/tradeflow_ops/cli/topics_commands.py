"""``tradeflow topics list|describe TOPIC|tail TOPIC``: look at the broker's topics and messages."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec
from tradeflow.settings import CommonSettings, load_settings
from tradeflow.topics import DLQ_SUFFIX, TopicSpec, topic_by_name

from tradeflow_ops.cli.errors import CliError

if TYPE_CHECKING:
    from tradeflow.bus import Record


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    topics = subparsers.add_parser("topics", help="list, describe and tail topics")
    actions = topics.add_subparsers(dest="topics_action", required=True, metavar="list|describe|tail")
    listing = actions.add_parser("list", help="topics on the broker with partitions and message counts")
    listing.set_defaults(handler=topics_list)
    describe = actions.add_parser("describe", help="one topic: key, value type, partitions, offsets")
    describe.add_argument("topic")
    describe.set_defaults(handler=topics_describe)
    tail = actions.add_parser("tail", help="print messages as JSON lines (decoded with the topic's value type)")
    tail.add_argument("topic")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest message, not at new ones")
    tail.add_argument("--max", type=_positive_int, default=None, metavar="N", help="stop after N messages")
    tail.set_defaults(handler=topics_tail)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _known_spec(name: str) -> TopicSpec:
    try:
        return topic_by_name(name)
    except KeyError as exc:
        raise CliError(exc.args[0]) from None


def topics_list(args: argparse.Namespace) -> int:
    from tradeflow.admin import describe_topics

    settings = load_settings(CommonSettings)
    infos = asyncio.run(describe_topics(settings))
    if not infos:
        print(f"no topics on {settings.kafka_bootstrap} (services and `tradeflow demo` create them)")
        return 0
    width = max(len(i.name) for i in infos)
    print(f"{'topic':<{width}}  partitions  messages")
    for info in infos:
        print(f"{info.name:<{width}}  {info.partitions:>10}  {info.messages:>8}")
    return 0


def topics_describe(args: argparse.Namespace) -> int:
    spec = _known_spec(args.topic)
    settings = load_settings(CommonSettings)
    info = asyncio.run(_describe_existing(settings, args.topic))
    print(f"topic:       {info.name}")
    print(f"key:         {spec.key}")
    print(f"value:       {spec.value_type.__name__} (schema {spec.value_type.SCHEMA}, MessagePack)")
    if info.name.endswith(DLQ_SUFFIX):
        print("dead letters: original key/value bytes; headers error-reason, source-topic/partition/offset")
    print(f"partitions:  {info.partitions} (registry default {spec.partitions})")
    print(f"replication: {info.replication_factor}")
    print(f"messages:    {info.messages}")
    print("end offsets: " + ", ".join(f"{p}:{o}" for p, o in sorted(info.end_offsets.items())))
    return 0


async def _describe_existing(settings: CommonSettings, topic: str):
    from tradeflow.admin import describe_topics, list_topics

    # Check first: asking a broker about an unknown topic may auto-create it with the wrong
    # partition count (Tansu does), which would then stop ensure_topics from creating it right.
    if topic not in await list_topics(settings):
        raise CliError(f"topic {topic} does not exist on {settings.kafka_bootstrap} yet")
    [info] = await describe_topics(settings, [topic])
    return info


def topics_tail(args: argparse.Namespace) -> int:
    spec = _known_spec(args.topic)
    settings = load_settings(CommonSettings)
    try:
        asyncio.run(tail(settings, args.topic, spec, from_beginning=args.from_beginning, limit=args.max))
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a follow ends
    return 0


async def tail(settings: CommonSettings, topic: str, spec: TopicSpec, *, from_beginning: bool, limit: int | None) -> None:
    """Print each message of ``topic`` as one JSON line; no consumer group (nothing is committed)."""
    from tradeflow.bus import FROM_BEGINNING, FROM_END, TopicReader
    from tradeflow.bus.admin import list_topics

    if topic not in await list_topics(settings):
        raise CliError(f"topic {topic} does not exist on {settings.kafka_bootstrap} yet")
    # The topic's name, not its spec: the reader hands over the bytes and each line decodes them
    # itself, so an undecodable message (typical on a .dlq) is shown too.
    reader = TopicReader(settings, topic, client_id="tradeflow-tail", max_records=500,
                         start=FROM_BEGINNING if from_beginning else FROM_END)
    printed = 0
    async for batch in reader.follow():
        for record in batch.records:
            print(json.dumps(message_as_json(record, spec), ensure_ascii=False), flush=True)
            printed += 1
            if limit is not None and printed >= limit:
                return


def _headers(raw: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    return {key: (value or b"").decode("utf-8", "replace") for key, value in raw or ()}


def message_as_json(record: Record, spec: TopicSpec) -> dict:
    """One message for humans: partition, offset, key, headers and the decoded value.

    A value that does not decode (typical on a .dlq topic) is shown as hex with the decode error.
    """
    from tradeflow.codec import HEADER_ERROR_REASON, DecodeError, decode

    headers = _headers(record.headers)
    line: dict = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "key": record.key,
        "headers": headers,
    }
    if record.topic.endswith(DLQ_SUFFIX):
        line["error_reason"] = headers.get(HEADER_ERROR_REASON)
    try:
        line["value"] = msgspec.to_builtins(decode(spec.value_type, record.raw_value or b""))
    except DecodeError as exc:
        line["value"] = None
        line["value_hex"] = (record.raw_value or b"").hex()
        line["decode_error"] = str(exc)
    return line
