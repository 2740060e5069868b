"""tradeflow.bus.alerts: the alert publisher every service raises its alerts through, and its throttle."""

from __future__ import annotations

import asyncio
import logging

import pytest
from tradeflow.bus.alerts import AlertPublisher, AlertThrottle
from tradeflow.messages import Alert
from tradeflow.topics import OPS_ALERTS


class RecordingProducer:
    """What the publisher needs of a Producer: ``send`` answering an ack future."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.sent: list[tuple[str, str, Alert]] = []
        self.fail_with = fail_with

    def send(self, topic, key, value):
        ack = asyncio.get_running_loop().create_future()
        if self.fail_with is not None:
            ack.set_exception(self.fail_with)
        else:
            self.sent.append((topic.name if hasattr(topic, "name") else topic, key, value))
            ack.set_result(None)
        return ack


def test_the_alert_throttle_lets_one_per_interval_through_and_counts_the_rest():
    throttle = AlertThrottle(interval_s=60.0)
    assert throttle.admit(("bn", "lost"), now=0.0) == 0
    assert throttle.admit(("bn", "lost"), now=10.0) is None
    assert throttle.admit(("bn", "lost"), now=59.9) is None
    assert throttle.admit(("bn", "breaker"), now=20.0) == 0  # another kind has its own allowance
    assert throttle.admit(("bn", "lost"), now=60.0) == 2  # the next one says how many were held back
    assert throttle.admit(("bn", "lost"), now=200.0) == 0
    with pytest.raises(ValueError):
        AlertThrottle(0)


async def test_an_unthrottled_publisher_sends_every_alert_keyed_by_the_service():
    producer = RecordingProducer()
    alerts = AlertPublisher(producer, "candle-builder", clock_ns=lambda: 123)
    assert alerts.publish("timescaledb_job_failing", "critical", "job 1000 is failing", {"job_id": "1000"})
    assert alerts.publish("timescaledb_job_failing", "critical", "job 1000 is failing", {"job_id": "1000"})
    assert [(topic, key) for topic, key, _ in producer.sent] == [(OPS_ALERTS.name, "candle-builder")] * 2
    assert producer.sent[0][2] == Alert(service="candle-builder", severity="critical", kind="timescaledb_job_failing",
                                        message="job 1000 is failing", labels={"job_id": "1000"}, ts_event=123)


async def test_a_throttled_publisher_holds_back_repeats_and_the_next_one_counts_them():
    now = [0.0]
    producer = RecordingProducer()
    alerts = AlertPublisher(producer, "ingest", interval_s=60.0, monotonic=lambda: now[0])

    assert alerts.publish("feed_websocket_lost", "warning", "binance: websocket lost", {"exchange": "binance"})
    now[0] = 10.0
    assert not alerts.publish("feed_websocket_lost", "warning", "binance: websocket lost", {"exchange": "binance"})
    assert not alerts.publish("feed_websocket_lost", "warning", "binance: websocket lost", {"exchange": "binance"})
    assert alerts.publish("feed_breaker_open", "critical", "binance: breaker open")  # its own allowance
    assert alerts.publish("feed_catch_up_incomplete", "critical", "A", throttle_key="catch_up:A")
    assert alerts.publish("feed_catch_up_incomplete", "critical", "B", throttle_key="catch_up:B")
    now[0] = 61.0
    assert alerts.publish("feed_websocket_lost", "warning", "binance: websocket lost", {"exchange": "binance"})

    kinds = [(a.kind, a.labels.get("suppressed")) for _, _, a in producer.sent]
    assert kinds == [("feed_websocket_lost", "0"), ("feed_breaker_open", "0"), ("feed_catch_up_incomplete", "0"),
                     ("feed_catch_up_incomplete", "0"), ("feed_websocket_lost", "2")]
    last = producer.sent[-1][2]
    assert last.message == "binance: websocket lost (2 more like this since the last alert were suppressed)"
    assert last.labels == {"exchange": "binance", "suppressed": "2"}


async def test_an_undelivered_alert_is_logged_and_never_raised_to_the_caller(caplog):
    alerts = AlertPublisher(RecordingProducer(fail_with=RuntimeError("broker away")), "risk")
    with caplog.at_level(logging.ERROR, logger="tradeflow.bus.alerts"):
        assert alerts.publish("kill_switch", "critical", "engaged")
        await asyncio.sleep(0)  # the ack's callback
    assert any("not acknowledged: broker away" in r.getMessage() for r in caplog.records)
