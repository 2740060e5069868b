"""What the notifier delivers: a :class:`Notification`, made from a wire message.

Each notification has a stable ``event_id`` derived from the message's own identity, so a
redelivered message is recognised (the inbox) and its deliveries keep their ids:

- order event: ``order:<client_order_id>:<seq>``
- fill: ``fill:<fill_id>``
- risk event: ``risk:<event_id>``
- alert: ``alert:<hash of the encoded alert>`` (alerts carry no id; the same alert hashes the same)
- daily report: ``report:<account>:<period end>``; a grouped alert summary:
  ``alert-group:<group key>:<window start ns>``

A message that cannot be shown to a person (non-finite amounts, a time out of range) raises
:class:`UnrenderableEvent` with the reason; the service sends it to the DLQ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal

from tradeflow.codec import encode
from tradeflow.messages import Alert, Fill, Message, OrderEvent, RiskEvent
from tradeflow.time import datetime_to_ns

EventKind = Literal["order", "fill", "risk", "alert", "report", "test"]
Severity = Literal["info", "warning", "critical"]
EVENT_KINDS: tuple[str, ...] = ("order", "fill", "risk", "alert", "report")
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
SEVERITY_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}
# Order statuses worth a warning: the order did not do what was asked.
WARNING_ORDER_STATUSES = frozenset({"rejected", "expired"})
_EMPTY: Mapping[str, str] = MappingProxyType({})


class UnrenderableEvent(ValueError):
    """A message that cannot be rendered for people; the text says why (the DLQ reason)."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One thing to tell: the original message plus what routing and rendering need."""

    event_id: str
    kind: EventKind
    type: str  # order status, "fill", risk kind, alert kind, "daily", "test"
    severity: Severity
    ts_event: int
    account_id: str | None = None
    message: Message | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    count: int = 1  # a grouped alert summary stands for this many alerts
    payload: Any = None  # a daily report's figures, a test message's channel
    traceparent: str | None = None

    @property
    def source(self) -> str | None:
        """The service an alert came from (alerts only)."""
        return self.message.service if isinstance(self.message, Alert) else None


def severity_at_least(severity: str, minimum: str) -> bool:
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[minimum]


def alert_event_id(alert: Alert) -> str:
    return "alert:" + hashlib.sha256(encode(alert)).hexdigest()[:32]


def notification_from_message(message: Message, traceparent: str | None = None) -> Notification:
    """The notification of a consumed message; :class:`UnrenderableEvent` when it cannot be shown."""
    check_time(message.ts_event)
    if isinstance(message, Fill):
        for name in ("quantity", "price", "fee"):
            check_amount(f"fill {message.fill_id}: {name}", getattr(message, name))
        if message.quantity <= 0 or message.price <= 0:
            raise UnrenderableEvent(f"fill {message.fill_id}: quantity and price must be positive, "
                                    f"got {message.quantity} at {message.price}")
        return Notification(f"fill:{message.fill_id}", "fill", "fill", "info", message.ts_event,
                            message.account_id, message, traceparent=traceparent)
    if isinstance(message, OrderEvent):
        for name in ("quantity", "filled_quantity", "average_price"):
            value = getattr(message, name)
            if value is not None:
                check_amount(f"order {message.client_order_id}: {name}", value)
        suffix = str(message.seq) if message.seq > 0 else f"{message.status}:{message.ts_event}"
        severity: Severity = "warning" if message.status in WARNING_ORDER_STATUSES else "info"
        return Notification(f"order:{message.client_order_id}:{suffix}", "order", message.status, severity,
                            message.ts_event, message.account_id, message, traceparent=traceparent)
    if isinstance(message, RiskEvent):
        return Notification(f"risk:{message.event_id}", "risk", message.kind, message.severity, message.ts_event,
                            message.account_id, message, MappingProxyType(dict(message.details)),
                            traceparent=traceparent)
    if isinstance(message, Alert):
        return Notification(alert_event_id(message), "alert", message.kind, message.severity, message.ts_event,
                            None, message, MappingProxyType(dict(message.labels)), traceparent=traceparent)
    raise UnrenderableEvent(f"the notifier does not deliver {type(message).SCHEMA or type(message).__name__}")


def check_amount(what: str, value: Decimal) -> None:
    if not value.is_finite():
        raise UnrenderableEvent(f"{what} is {value}, not a finite amount")


_MIN_NS = datetime_to_ns(datetime(1970, 1, 2, tzinfo=UTC))
_MAX_NS = datetime_to_ns(datetime(9999, 1, 1, tzinfo=UTC))


def check_time(ts_event: int) -> None:
    """A time that a calendar can show in any zone (year 1970 to 9998)."""
    if not _MIN_NS <= ts_event < _MAX_NS:
        raise UnrenderableEvent(f"ts_event {ts_event} is not a time between 1970 and 9999 in ns since the epoch")
