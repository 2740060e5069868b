"""Operational alerts on ops.alerts.v1, sent without waiting (the caller must never block on them).

:class:`AlertPublisher` is what a service raises its alerts through (key: the service name):
optionally at most one alert per key (by default the kind) every ``interval_s``, the alerts
held back meanwhile counted into the next one's message and its ``suppressed`` label
(:class:`AlertThrottle`, pure). A flapping connection then cannot flood the topic. Every
service that raises alerts uses it (ingest's feeds, the candle-builder's job monitor, the
strategy service; risk, execution and notifier when they raise theirs).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Literal

from tradeflow.bus.producer import Producer
from tradeflow.messages import Alert
from tradeflow.topics import OPS_ALERTS

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "critical"]


def send_alert(producer: Producer, service: str, kind: str, severity: Severity, message: str,
               labels: dict[str, str], ts_event: int | None = None) -> None:
    """Send an :class:`Alert` to ops.alerts.v1 (key: the service name) without waiting for its
    ack; a failure to send or to deliver it is logged."""
    alert = Alert(service=service, severity=severity, kind=kind, message=message, labels=labels,
                  ts_event=time.time_ns() if ts_event is None else ts_event)
    try:
        ack = producer.send(OPS_ALERTS, service, alert)
    except Exception as exc:  # noqa: BLE001 - a stopping producer must not stop the caller
        log.error("alert %s not sent: %s", kind, exc)
        return
    ack.add_done_callback(_log_alert_failure)


def _log_alert_failure(ack: asyncio.Future) -> None:
    if not ack.cancelled() and ack.exception() is not None:
        log.error("an alert was not acknowledged: %s", ack.exception())


class AlertThrottle:
    """At most one alert per key and interval, the ones held back counted into the next (pure):
    per key (e.g. exchange and kind), an alert goes out only if the previous one that went out
    is ``interval_s`` old. Times are monotonic seconds.
    """

    def __init__(self, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._interval_s = interval_s
        self._state: dict[Hashable, tuple[float, int]] = {}  # key -> (last sent at, suppressed since)

    def admit(self, key: Hashable, now: float) -> int | None:
        """None when the alert is to be suppressed; else how many were suppressed before it."""
        state = self._state.get(key)
        if state is not None and now - state[0] < self._interval_s:
            self._state[key] = (state[0], state[1] + 1)
            return None
        self._state[key] = (now, 0)
        return 0 if state is None else state[1]


class AlertPublisher:
    """A service's alerts to ops.alerts.v1, throttled per key when ``interval_s`` is given."""

    def __init__(self, producer: Producer, service: str, *, interval_s: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._producer = producer
        self._service = service
        self._throttle = AlertThrottle(interval_s) if interval_s is not None else None
        self._monotonic = monotonic
        self._clock_ns = clock_ns

    def publish(self, kind: str, severity: Severity, message: str, labels: Mapping[str, str] | None = None, *,
                throttle_key: Hashable | None = None) -> bool:
        """Send the alert unless the throttle holds it back (then False). A throttled publisher
        adds the ``suppressed`` label (how many were held back since the last one went out),
        and says so in the message when there were any."""
        labels = dict(labels or {})
        if self._throttle is not None:
            suppressed = self._throttle.admit(kind if throttle_key is None else throttle_key, self._monotonic())
            if suppressed is None:
                return False
            if suppressed:
                message += f" ({suppressed} more like this since the last alert were suppressed)"
            labels["suppressed"] = str(suppressed)
        send_alert(self._producer, self._service, kind, severity, message, labels, ts_event=self._clock_ns())
        return True
