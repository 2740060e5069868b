"""One hop of the trading path with no work in it: every record of one topic, as it is, to another.

The floor of ``bench/trading_path.py``: three of these stand where strategy, risk and execution
stand (each its own process, a consumer group, the services' fetch wait, a producer that does not
linger), so the same run shows what the broker and the Kafka client alone cost per hop, in
latency and CPU, before the services add theirs. Run by ``trading_path.py``, not by hand:
``python bench/_hop_relay.py BOOTSTRAP FROM_TOPIC TO_TOPIC FETCH_MAX_WAIT_MS``.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def relay(bootstrap: str, source: str, target: str, fetch_max_wait_ms: int) -> None:
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=f"floor-{source}",
                                fetch_max_wait_ms=fetch_max_wait_ms, auto_offset_reset="latest",
                                session_timeout_ms=6000, heartbeat_interval_ms=1000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await producer.start()
    await consumer.start()
    print("ready", flush=True)

    async def forward() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            # Sent together, then awaited together (as the services' outbox relays do).
            acks = [await producer.send(target, record.value, key=record.key)
                    for records in batches.values() for record in records]
            if acks:
                await asyncio.gather(*acks)

    task = asyncio.create_task(forward())
    await stop.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await consumer.stop()
    await producer.stop()


if __name__ == "__main__":
    asyncio.run(relay(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
