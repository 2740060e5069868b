"""Topic administration: create the registry's topics (and their DLQs), list and describe them,
and ask whether a broker answers at all (``tradeflow infra``'s start check).

``bootstrap`` is a ``host:port`` list or a settings object (which also carries SASL/SSL).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from tradeflow.bus.connection import Backoff, kafka_client_options
from tradeflow.settings import CommonSettings
from tradeflow.topics import DLQ_SUFFIX, TopicSpec

log = logging.getLogger(__name__)

# Dead letters wait for a human: keep them four weeks (topics keep one week at most).
DLQ_RETENTION_MS = str(28 * 24 * 3600 * 1000)
MAX_REPLICATION_FACTOR = 3


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    replication_factor: int
    messages: int  # sum over partitions of (end offset - start offset)
    end_offsets: dict[int, int] = field(default_factory=dict)


def _client_options(bootstrap: str | CommonSettings) -> dict[str, object]:
    if isinstance(bootstrap, CommonSettings):
        return kafka_client_options(bootstrap)
    return {"bootstrap_servers": bootstrap}


@asynccontextmanager
async def _admin_client(bootstrap: str | CommonSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(**_client_options(bootstrap), client_id="tradeflow-admin")
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


def dlq_spec(spec: TopicSpec) -> TopicSpec:
    """The DLQ of ``spec``: same partitions (keys stay together), longer retention."""
    return TopicSpec(spec.dlq, spec.key, spec.value_type, spec.partitions, {"retention.ms": DLQ_RETENTION_MS})


async def ensure_topics(
    bootstrap: str | CommonSettings, specs: Sequence[TopicSpec], *, with_dlq: bool = True
) -> list[str]:
    """Create the missing topics (and DLQs); existing ones are left alone. Returns created names."""
    wanted = list(specs) + ([dlq_spec(s) for s in specs if not s.name.endswith(DLQ_SUFFIX)] if with_dlq else [])
    async with _admin_client(bootstrap) as admin:
        existing = set(await admin.list_topics())
        missing = [s for s in wanted if s.name not in existing]
        if not missing:
            return []
        brokers = len((await admin.describe_cluster())["brokers"])
        replication = max(1, min(MAX_REPLICATION_FACTOR, brokers))
        failed = await _create(admin, missing, replication, with_config=True)
        refused_config = [s for s in missing if s.name in failed]
        if refused_config:
            log.warning(
                "broker refused creating %s with their config (%s); creating them with broker defaults",
                ", ".join(s.name for s in refused_config),
                "; ".join(f"{name}: {err}" for name, err in failed.items()),
            )
            still_failed = await _create(admin, refused_config, replication, with_config=False)
            if still_failed:
                raise KafkaError(
                    "could not create topics: " + "; ".join(f"{n}: {e}" for n, e in still_failed.items())
                )
    created = [s.name for s in missing]
    log.info("created topics %s", ", ".join(created), extra={"topics": created})
    return created


class TopicsExist:
    """Service start-up step: ``specs`` and their DLQs exist with their partitions and config.

    Created by the service rather than by the broker's auto-create, which would use the broker's
    default partition count. A broker that is still starting gets ``wait_s`` to answer (0: one try).
    """

    def __init__(self, settings: CommonSettings, specs: Sequence[TopicSpec], *, wait_s: float = 0.0) -> None:
        self._settings = settings
        self._specs = list(specs)
        self._wait_s = wait_s

    async def start(self) -> None:
        backoff = Backoff(initial_s=0.5, maximum_s=5.0)
        deadline = time.monotonic() + self._wait_s
        while True:
            try:
                await ensure_topics(self._settings, self._specs)
                return
            except (KafkaError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("cannot create %s yet (%s); retrying", ", ".join(t.name for t in self._specs), exc)
                await asyncio.sleep(backoff.next_delay())

    async def stop(self) -> None:
        pass


async def _create(
    admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec], replication: int, *, with_config: bool
) -> dict[str, str]:
    """Create ``specs``; the topics that failed (other than 'already exists') with their error."""
    response = await admin.create_topics(
        [
            NewTopic(s.name, s.partitions, replication, topic_configs=dict(s.config) if with_config else {})
            for s in specs
        ]
    )
    failed: dict[str, str] = {}
    for topic_error in response.topic_errors:
        name, code, message = topic_error[0], topic_error[1], topic_error[2] if len(topic_error) > 2 else None
        if code == 0 or code == TopicAlreadyExistsError.errno:  # a concurrent creator won the race
            continue
        failed[name] = f"{for_code(code).__name__}: {message or ''}".rstrip(": ")
    return failed


async def list_topics(bootstrap: str | CommonSettings) -> list[str]:
    async with _admin_client(bootstrap) as admin:
        return sorted(await admin.list_topics())


async def describe_topics(bootstrap: str | CommonSettings, names: Sequence[str] | None = None) -> list[TopicInfo]:
    """Partitions, replication and message counts of ``names`` (all topics when None)."""
    async with _admin_client(bootstrap) as admin:
        existing = sorted(await admin.list_topics())
        names = existing if names is None else list(names)
        # Check first: a metadata request for an unknown topic makes brokers with
        # auto-create (Tansu, default Kafka) create it.
        unknown = [name for name in names if name not in existing]
        if unknown:
            raise KeyError(f"unknown topic(s): {', '.join(unknown)}")
        if not names:
            return []
        descriptions = await admin.describe_topics(names)
    partitions = {
        d["topic"]: sorted(d["partitions"], key=lambda p: p["partition"]) for d in descriptions
    }
    tps = [TopicPartition(topic, p["partition"]) for topic, parts in partitions.items() for p in parts]
    offsets_reader = AIOKafkaConsumer(**_client_options(bootstrap), client_id="tradeflow-admin")
    await offsets_reader.start()
    try:
        start = await offsets_reader.beginning_offsets(tps) if tps else {}
        end = await offsets_reader.end_offsets(tps) if tps else {}
    finally:
        await offsets_reader.stop()
    result = []
    for name in names:
        parts = partitions[name]
        end_offsets = {p["partition"]: end[TopicPartition(name, p["partition"])] for p in parts}
        messages = sum(end_offsets[p] - start[TopicPartition(name, p)] for p in end_offsets)
        result.append(
            TopicInfo(
                name=name,
                partitions=len(parts),
                replication_factor=len(parts[0]["replicas"]) if parts else 0,
                messages=messages,
                end_offsets=end_offsets,
            )
        )
    return result


async def broker_metadata_error(bootstrap: str | CommonSettings, timeout_s: float = 5.0) -> str | None:
    """None when the broker answers a metadata request within ``timeout_s``, else why not."""
    client = AIOKafkaClient(**_client_options(bootstrap), request_timeout_ms=int(timeout_s * 1000))
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)  # a refused probe is expected while a broker starts
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        await asyncio.wait_for(client.fetch_all_metadata(), timeout_s)
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not answering"; the caller reports it
        text = str(exc)
        return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"
    finally:
        aiokafka_log.setLevel(level)
        await client.close()
