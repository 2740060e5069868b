"""How long a consumer lets the broker hold an empty fetch: the service's shared setting
TRADEFLOW_CONSUMER_FETCH_MAX_WAIT_MS (a latency floor per hop on Tansu), unless the caller says."""

from __future__ import annotations

from tradeflow.bus import Consumer, DeadLetters
from tradeflow.settings import CommonSettings, ServiceSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import MD_CANDLES


def consumer(settings, **options) -> Consumer:
    telemetry = Telemetry("fetch-wait-test", settings)

    async def handler(batch):
        return None

    return Consumer(settings, telemetry, topics=[MD_CANDLES], group_id="g", handler=handler,
                    dead_letters=DeadLetters(None, telemetry), **options)


def test_a_service_consumer_waits_the_shared_setting_and_a_caller_may_choose(monkeypatch):
    assert consumer(ServiceSettings())._fetch_max_wait_ms == 10
    monkeypatch.setenv("TRADEFLOW_CONSUMER_FETCH_MAX_WAIT_MS", "40")
    assert consumer(ServiceSettings())._fetch_max_wait_ms == 40
    assert consumer(ServiceSettings(), fetch_max_wait_ms=5)._fetch_max_wait_ms == 5
    assert consumer(CommonSettings())._fetch_max_wait_ms == 500  # tools without the setting: aiokafka's default
