"""The producer's linger: from the settings, or the owner's override (an outbox relay's producer: 0)."""

from __future__ import annotations

from tradeflow.bus import Producer
from tradeflow.settings import CommonSettings, ServiceSettings
from tradeflow.telemetry import Telemetry


def _linger_s(producer: Producer) -> float:
    kafka = producer._new_kafka_producer()  # built, not connected
    return kafka._message_accumulator._linger_time


async def test_the_settings_linger_unless_the_owner_overrides_it():
    settings = ServiceSettings(environment="test", producer_linger_ms=7)
    telemetry = Telemetry("test-linger", CommonSettings())
    assert _linger_s(Producer(settings, telemetry)) == 0.007
    assert _linger_s(Producer(settings, telemetry, linger_ms=0)) == 0
