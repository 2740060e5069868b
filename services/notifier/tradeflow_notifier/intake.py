"""The service layer's way in: decoded messages become stored deliveries, in one transaction.

:meth:`Intake.accept` takes a batch of messages (no Kafka types: the bus adapter decodes them,
tests call it directly) and, per message: makes its notification, plans and renders its
deliveries (a message that cannot be rendered is *rejected* with the reason, for the DLQ, and
nothing of it is stored), then in one transaction records the new event ids in the inbox (a
redelivered message is skipped whole), keeps the fills and order events for the daily report,
groups identical alerts and stores the deliveries as pending. Only after this commit does the
consumer commit its offsets, so a crash loses no event and repeats no effect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from tradeflow.messages import Alert, Fill, Message, OrderEvent
from tradeflow.telemetry import Telemetry
from tradeflow.time import NS_PER_S

from tradeflow_notifier import metrics
from tradeflow_notifier.adapters.delivery_store import DeliveryStore
from tradeflow_notifier.adapters.trading_facts import TradingFacts
from tradeflow_notifier.domain.events import Notification, UnrenderableEvent, notification_from_message
from tradeflow_notifier.domain.grouping import AlertGroup, admit, group_key, summary_notification
from tradeflow_notifier.domain.planning import PlannedDelivery, Routing, plan

log = logging.getLogger(__name__)


class Transactions(Protocol):
    """Where the intake's writes commit together (``tradeflow_db.Database``)."""

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...


@dataclass(frozen=True, slots=True)
class Incoming:
    """A consumed message and the W3C traceparent it came with (its trace continues in the delivery)."""

    message: Message
    traceparent: str | None = None


@dataclass(slots=True)
class IntakeResult:
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index in the batch, reason)
    new_events: int = 0
    duplicates: int = 0
    grouped: int = 0
    deliveries: list[PlannedDelivery] = field(default_factory=list)


class Intake:
    def __init__(self, database: Transactions, deliveries: DeliveryStore, facts: TradingFacts,
                 routing: Callable[[], Routing], telemetry: Telemetry, *, own_service: str, group_window_s: float,
                 on_deliveries: Callable[[], None] = lambda: None) -> None:
        self._database = database
        self._deliveries = deliveries
        self._facts = facts
        self._routing = routing
        self._own_service = own_service
        self._window_s = group_window_s
        self._window_ns = int(group_window_s * NS_PER_S)
        self._on_deliveries = on_deliveries
        self._events = metrics.events(telemetry)
        self._queued = metrics.deliveries(telemetry)

    async def accept(self, batch: Sequence[Incoming]) -> IntakeResult:
        result = IntakeResult()
        routing = self._routing()
        planned: dict[str, tuple[Notification, list[PlannedDelivery]]] = {}
        for index, incoming in enumerate(batch):
            try:
                notification = notification_from_message(incoming.message, incoming.traceparent)
                deliveries = plan(notification, routing, self._own_service)
            except UnrenderableEvent as exc:
                result.rejected.append((index, f"unrenderable: {exc}"))
                self._events.labels(_kind_of(incoming.message), "dead_lettered").inc()
                continue
            if notification.event_id in planned:
                result.duplicates += 1
                continue
            planned[notification.event_id] = (notification, deliveries)
        if not planned:
            return result
        async with self._database.transaction() as conn:
            new = await self._deliveries.take_new(conn, [(n.event_id, n.kind) for n, _ in planned.values()])
            fresh = [planned[event_id] for event_id in planned if event_id in new]
            result.new_events = len(fresh)
            result.duplicates += len(planned) - len(fresh)
            await self._facts.add(conn, [n.message for n, _ in fresh if isinstance(n.message, Fill)],
                                  [n.message for n, _ in fresh if isinstance(n.message, OrderEvent)])
            to_store = await self._group_alerts(conn, fresh, routing, result)
            await self._deliveries.insert(conn, to_store)
        result.deliveries = to_store
        self._count(fresh, result)
        if to_store:
            self._on_deliveries()
        return result

    async def _group_alerts(self, conn, fresh: list[tuple[Notification, list[PlannedDelivery]]], routing: Routing,
                            result: IntakeResult) -> list[PlannedDelivery]:
        """The deliveries to store: every non-alert's; an alert's only when it opens a window,
        plus the summary of each window it closes."""
        to_store: list[PlannedDelivery] = []
        alerts = [(n, d) for n, d in fresh if isinstance(n.message, Alert)]
        for notification, deliveries in fresh:
            if not isinstance(notification.message, Alert) or self._window_ns <= 0:
                to_store.extend(deliveries)
        if not alerts or self._window_ns <= 0:
            return to_store
        groups: dict[str, AlertGroup] = await self._deliveries.lock_groups(
            conn, (group_key(n.message) for n, _ in alerts))
        changed: set[str] = set()
        for notification, deliveries in alerts:
            key = group_key(notification.message)
            admission = admit(groups.get(key), notification.message, self._window_ns)
            groups[key] = admission.group
            changed.add(key)
            if admission.summary is not None:
                to_store.extend(self._summary_deliveries(admission.summary, routing))
            if admission.deliver:
                to_store.extend(deliveries)
            else:
                result.grouped += 1
        await self._deliveries.save_groups(conn, (groups[k] for k in changed))
        return to_store

    def _summary_deliveries(self, group: AlertGroup, routing: Routing) -> list[PlannedDelivery]:
        try:
            return plan(summary_notification(group, self._window_s), routing, self._own_service)
        except UnrenderableEvent as exc:  # its alerts rendered, so this is not expected; never block intake
            log.error("summary of %d grouped alerts could not be rendered: %s", group.suppressed, exc)
            return []

    async def accept_notification(self, notification: Notification) -> int:
        """Store the deliveries of a notification the service made itself (a daily report) once:
        the number stored (0 when its id was seen before, e.g. by another replica)."""
        deliveries = plan(notification, self._routing(), self._own_service)
        async with self._database.transaction() as conn:
            if not await self._deliveries.take_new(conn, [(notification.event_id, notification.kind)]):
                return 0
            await self._deliveries.insert(conn, deliveries)
        self._events.labels(notification.kind, "routed" if deliveries else "unrouted").inc()
        for delivery in deliveries:
            self._queued.labels(delivery.channel_id, "queued").inc()
        if deliveries:
            self._on_deliveries()
        return len(deliveries)

    async def flush_due_groups(self, now_ns: int) -> int:
        """Summarize the grouping windows that have passed; the number of summaries made."""
        if self._window_ns <= 0:
            return 0
        routing = self._routing()
        async with self._database.transaction() as conn:
            due = await self._deliveries.due_groups(conn, now_ns)
            if not due:
                return 0
            deliveries = [d for group in due for d in self._summary_deliveries(group, routing)]
            await self._deliveries.insert(conn, deliveries)
            await self._deliveries.save_groups(conn, (replace(g, summarized=True) for g in due))
        for delivery in deliveries:
            self._queued.labels(delivery.channel_id, "queued").inc()
        if deliveries:
            self._on_deliveries()
        return len(due)

    def _count(self, fresh: list[tuple[Notification, list[PlannedDelivery]]], result: IntakeResult) -> None:
        for notification, deliveries in fresh:
            self._events.labels(notification.kind, "routed" if deliveries else "unrouted").inc()
        if result.grouped:
            self._events.labels("alert", "grouped").inc(result.grouped)
        if result.duplicates:
            self._events.labels("any", "duplicate").inc(result.duplicates)
        for delivery in result.deliveries:
            self._queued.labels(delivery.channel_id, "queued").inc()


def _kind_of(message: Message) -> str:
    return {"Fill/1": "fill", "OrderEvent/1": "order", "RiskEvent/1": "risk", "Alert/1": "alert"}.get(
        type(message).SCHEMA, "unknown")
