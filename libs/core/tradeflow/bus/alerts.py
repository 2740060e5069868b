"""Operational alerts on ops.alerts.v1, sent without waiting (the caller must never block on them)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

from tradeflow.bus.producer import Producer
from tradeflow.messages import Alert
from tradeflow.topics import OPS_ALERTS

log = logging.getLogger(__name__)


def send_alert(producer: Producer, service: str, kind: str, severity: Literal["info", "warning", "critical"],
               message: str, labels: dict[str, str]) -> None:
    """Send an :class:`Alert` to ops.alerts.v1 (key: the service name) without waiting for its
    ack; a failure to send or to deliver it is logged."""
    alert = Alert(service=service, severity=severity, kind=kind, message=message, labels=labels,
                  ts_event=time.time_ns())
    try:
        ack = producer.send(OPS_ALERTS, service, alert)
    except Exception as exc:  # noqa: BLE001 - a stopping producer must not stop the caller
        log.error("alert %s not sent: %s", kind, exc)
        return
    ack.add_done_callback(_log_alert_failure)


def _log_alert_failure(ack: asyncio.Future) -> None:
    if not ack.cancelled() and ack.exception() is not None:
        log.error("an alert was not acknowledged: %s", ack.exception())
