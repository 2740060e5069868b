"""Which deliveries an event makes: one per channel its routes choose, rendered for that channel.

The delivery id is a UUID derived from (event id, channel id): the same event on the same
channel always has the same id, on every retry and after any restart, so a receiver dedupes
by ``X-Tradeflow-Delivery``.

Alerts the notifier raises itself about a failed delivery (kind ``notification_failed``, label
``channel``) never go to the channel that failed, and a failure to deliver one of them raises
no further alert: there is no alert loop.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tradeflow_notifier.domain.channels import ChannelSpec
from tradeflow_notifier.domain.events import Notification
from tradeflow_notifier.domain.rendering import render
from tradeflow_notifier.domain.routes import Route, channels_for

DELIVERY_NAMESPACE = uuid.UUID("6f1c2a52-8d0e-4c7b-9a53-2f4d1e0b7c11")
DELIVERY_FAILED = "notification_failed"


def delivery_id(event_id: str, channel_id: str) -> str:
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{event_id}\n{channel_id}"))


@dataclass(frozen=True, slots=True)
class Routing:
    """The channels and routes in force (a snapshot: changes make a new one)."""

    channels: Mapping[str, ChannelSpec]
    routes: Sequence[Route]


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    delivery_id: str
    event_id: str
    event_kind: str
    event_type: str
    channel_id: str
    title: str
    body: str
    ts_event: int
    traceparent: str | None
    alert_on_failure: bool


def is_delivery_failure_alert(notification: Notification, own_service: str) -> bool:
    return notification.kind == "alert" and notification.source == own_service and notification.type == DELIVERY_FAILED


def plan(notification: Notification, routing: Routing, own_service: str) -> list[PlannedDelivery]:
    """The deliveries of ``notification``; raises UnrenderableEvent when it cannot be rendered."""
    own_failure = is_delivery_failure_alert(notification, own_service)
    exclude = [notification.labels.get("channel", "")] if own_failure else []
    planned = []
    for channel_id in channels_for(notification, routing.routes, routing.channels, exclude):
        channel = routing.channels[channel_id]
        rendered = render(notification, channel.kind, channel.zone)
        planned.append(PlannedDelivery(
            delivery_id(notification.event_id, channel_id), notification.event_id, notification.kind,
            notification.type, channel_id, rendered.title, rendered.body, notification.ts_event,
            notification.traceparent, not own_failure))
    return planned
