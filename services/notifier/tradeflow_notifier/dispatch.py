"""The dispatcher: sends the stored deliveries, with retries, rate limits and pauses per channel.

One *lane* per channel. A lane takes claimed deliveries up to its capacity: in flight plus
queued at most twice its concurrency (1 for chat and email channels, so their messages go in
order; ``webhook_concurrency`` for webhooks), and no more than its token bucket allows
(``rate_per_minute``). The claim loop asks the store for each lane's capacity in one query
when woken (new deliveries, a lane half empty) or every ``poll_interval_s`` (retries due,
other replicas' deliveries).

An attempt's :class:`SendResult` becomes an outcome: delivered; failed (rejected, or the last
attempt), with an alert on the alerts topic written in the same transaction (unless the
delivery was itself such an alert: no alert loops); or pending again after the policy's
backoff. A ``retry_after`` pauses the whole lane: its queued deliveries go back unsent
(``deferred``, not counted as attempts). Outcomes are written in batches every few
milliseconds; a crash before that write sends those deliveries again, with the same ids.

Each attempt is a span that continues the trace of the event it delivers.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Protocol

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.messages import Alert
from tradeflow.telemetry import Telemetry
from tradeflow.time import NS_PER_S, datetime_to_ns

from tradeflow_notifier import metrics
from tradeflow_notifier.adapters.delivery_store import ClaimedDelivery, DeliveryOutcome, DeliveryStore
from tradeflow_notifier.domain.channels import ChannelSpec
from tradeflow_notifier.domain.planning import DELIVERY_FAILED
from tradeflow_notifier.domain.rate_limit import TokenBucket
from tradeflow_notifier.domain.retry import RetryPolicy, SendResult

log = logging.getLogger(__name__)
WRITE_INTERVAL_S = 0.01
WRITE_BATCH = 1000
RETRY_WRITE_S = 1.0
FAILURE_LOG_INTERVAL_S = 60.0


class Sender(Protocol):
    """One attempt through a channel (``adapters.senders.channel_senders.ChannelSenders``)."""

    async def send(self, channel: ChannelSpec, *, delivery_id: str, event_kind: str, title: str,
                   body: str) -> SendResult: ...


class _Lane:
    """The deliveries of one channel that this replica holds: queued and in flight."""

    def __init__(self, channel: ChannelSpec, concurrency: int, now: float) -> None:
        self.queue: deque[ClaimedDelivery] = deque()
        self.in_flight = 0
        self.paused_until = 0.0
        self.configure(channel, concurrency, now)

    def configure(self, channel: ChannelSpec, concurrency: int, now: float) -> None:
        """(Re)apply the channel's definition; what is queued and in flight stays."""
        self.channel = channel
        self.concurrency = concurrency
        rate = channel.messages_per_minute
        self.bucket = TokenBucket(rate, now) if rate > 0 else None

    @property
    def max_held(self) -> int:
        return 2 * self.concurrency

    def capacity(self, now: float) -> int:
        """How many more deliveries to claim now (0 while paused or out of tokens)."""
        if now < self.paused_until:
            return 0
        room = self.max_held - len(self.queue) - self.in_flight
        if room < max(1, self.max_held // 2):  # claim in half-lane batches, not one by one
            return 0
        return min(room, self.bucket.available(now)) if self.bucket is not None else room


class Dispatcher:
    name = "dispatcher"

    def __init__(self, store: DeliveryStore, channel_of: Callable[[str], ChannelSpec | None],
                 channel_ids: Callable[[], list[str]], senders: Sender, telemetry: Telemetry, *,
                 policy: RetryPolicy, lease_s: float, poll_interval_s: float, webhook_concurrency: int,
                 own_service: str, rng: random.Random | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._clock = clock
        self._channel_of = channel_of
        self._channel_ids = channel_ids
        self._senders = senders
        self._tracer = telemetry.tracer
        self._policy = policy
        self._lease_s = lease_s
        self._poll_interval_s = poll_interval_s
        self._webhook_concurrency = webhook_concurrency
        self._own_service = own_service
        self._rng = rng or random.Random()
        self._lanes: dict[str, _Lane] = {}
        self._sends: set[asyncio.Task] = set()
        self._outcomes: list[DeliveryOutcome] = []
        self._wakeup = asyncio.Event()
        self._outcome_ready = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task | None = None
        self._writer_task: asyncio.Task | None = None
        self._deliveries = metrics.deliveries(telemetry)
        self._attempts = metrics.attempts(telemetry)
        self._latency = metrics.delivery_latency(telemetry)
        self._send_time = metrics.send_time(telemetry)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._writer_task = asyncio.create_task(self._write_outcomes(), name="dispatcher-writer")
        self._loop_task = asyncio.create_task(self._claim_loop(), name="dispatcher-claims")

    async def stop(self) -> None:
        """Stop claiming, give queued deliveries back, let sends in flight finish, write outcomes."""
        self._stopping = True
        self._wakeup.set()
        if self._loop_task is not None:
            await asyncio.gather(self._loop_task, return_exceptions=True)
        queued = [d.id for lane in self._lanes.values() for d in lane.queue]
        for lane in self._lanes.values():
            lane.queue.clear()
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)
        try:
            await self._store.release(queued)
        except Exception:  # noqa: BLE001 - their leases run out instead
            log.exception("could not release %d queued deliveries; they are retried after their lease", len(queued))
        self._outcome_ready.set()
        if self._writer_task is not None:
            await asyncio.gather(self._writer_task, return_exceptions=True)

    def wake(self) -> None:
        """New deliveries are stored: claim now rather than at the next poll."""
        self._wakeup.set()

    # --- claiming -------------------------------------------------------------------------------

    def _lane(self, channel: ChannelSpec, now: float) -> _Lane:
        concurrency = self._webhook_concurrency if channel.kind == "webhook" else 1
        lane = self._lanes.get(channel.id)
        if lane is None:
            lane = self._lanes[channel.id] = _Lane(channel, concurrency, now)
        elif lane.channel != channel:  # redefined: its new URL, limits and secrets from now on
            lane.configure(channel, concurrency, now)
        return lane

    async def _claim_loop(self) -> None:
        logged_at = -FAILURE_LOG_INTERVAL_S
        while not self._stopping:
            # Cleared before the claim: a wake-up during it (a send done, new deliveries) is kept.
            self._wakeup.clear()
            try:
                claimed = await self._claim_once()
            except Exception:  # noqa: BLE001 - the database may be away: try again at the next poll
                if self._clock.monotonic() - logged_at >= FAILURE_LOG_INTERVAL_S:  # an outage: one line a minute
                    logged_at = self._clock.monotonic()
                    log.exception("claiming deliveries failed; retrying every %.1fs", self._poll_interval_s)
                claimed = 0
            if claimed:
                continue  # there may be more due: ask again at once
            await self._wait_for_wakeup()

    async def _wait_for_wakeup(self) -> None:
        """Until woken or ``poll_interval_s`` of the clock's time has passed."""
        if self._wakeup.is_set():
            return
        woken = asyncio.ensure_future(self._wakeup.wait())
        polled = asyncio.ensure_future(self._clock.sleep(self._poll_interval_s))
        try:
            await asyncio.wait((woken, polled), return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            polled.cancel()

    async def _claim_once(self) -> int:
        now = self._clock.monotonic()
        capacity = {}
        for channel_id in self._channel_ids():
            channel = self._channel_of(channel_id)
            if channel is not None:
                capacity[channel_id] = self._lane(channel, now).capacity(now)
        claimed = await self._store.claim(capacity, self._lease_s)
        now = self._clock.monotonic()
        for delivery in claimed:
            lane = self._lanes[delivery.channel_id]
            lane.queue.append(delivery)
            if lane.bucket is not None:
                lane.bucket.take(1, now)
        for lane in {self._lanes[d.channel_id] for d in claimed}:
            self._pump(lane)
        return len(claimed)

    def _pump(self, lane: _Lane) -> None:
        while lane.queue and lane.in_flight < lane.concurrency and not self._stopping:
            delivery = lane.queue.popleft()
            lane.in_flight += 1
            task = asyncio.create_task(self._attempt(lane, delivery), name=f"deliver-{delivery.id}")
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    # --- one attempt ----------------------------------------------------------------------------

    async def _attempt(self, lane: _Lane, delivery: ClaimedDelivery) -> None:
        try:
            self._emit(self._outcome_of(lane, delivery, await self._send(lane.channel, delivery)))
        except Exception:  # noqa: BLE001 - never lose the lane slot; the lease brings the delivery back
            log.exception("delivery %s to %s failed unexpectedly", delivery.id, delivery.channel_id)
        finally:
            lane.in_flight -= 1
            if lane.queue:
                self._pump(lane)
            if lane.capacity(self._clock.monotonic()):
                self._wakeup.set()

    async def _send(self, channel: ChannelSpec, delivery: ClaimedDelivery) -> SendResult:
        parent = propagate.extract({"traceparent": delivery.traceparent}) if delivery.traceparent else Context()
        attempt = delivery.attempts + 1
        with self._tracer.start_as_current_span(
            f"notifier deliver {channel.kind}", context=parent, kind=SpanKind.CLIENT,
            attributes={"tradeflow.delivery.id": delivery.id, "tradeflow.event.id": delivery.event_id,
                        "tradeflow.event.kind": delivery.event_kind, "tradeflow.channel.id": channel.id,
                        "tradeflow.channel.kind": channel.kind, "tradeflow.delivery.attempt": attempt},
        ) as span:
            started = self._clock.monotonic()
            result = await self._senders.send(channel, delivery_id=delivery.id, event_kind=delivery.event_kind,
                                              title=delivery.title, body=delivery.body)
            self._send_time.labels(channel.id).observe(self._clock.monotonic() - started)
            span.set_attribute("tradeflow.delivery.outcome", result.outcome)
            if result.error:
                span.set_attribute("tradeflow.delivery.error", result.error)
            if result.retry_after_s is not None:
                span.set_attribute("tradeflow.delivery.retry_after_s", result.retry_after_s)
            if result.outcome != "delivered":
                span.set_status(Status(StatusCode.ERROR, result.error))
        return result

    def _outcome_of(self, lane: _Lane, delivery: ClaimedDelivery, result: SendResult) -> DeliveryOutcome:
        channel_id = delivery.channel_id
        attempt = delivery.attempts + 1
        self._attempts.labels(channel_id, result.outcome).inc()
        if result.outcome == "delivered":
            self._deliveries.labels(channel_id, "delivered").inc()
            self._latency.labels(channel_id).observe(
                max(0.0, (self._clock.now_ns() - datetime_to_ns(delivery.created_at)) / NS_PER_S))
            return DeliveryOutcome(delivery.id, "delivered", True)
        if result.outcome == "retry" and not self._policy.is_last(attempt):
            delay = self._policy.delay(attempt, self._rng, result.retry_after_s)
            if result.retry_after_s is not None:
                self._pause(lane, delay)
            self._deliveries.labels(channel_id, "retried").inc()
            log.info("delivery %s to %s: attempt %d failed (%s); next in %.1fs", delivery.id, channel_id, attempt,
                     result.error, delay, extra={"delivery_id": delivery.id, "channel": channel_id})
            return DeliveryOutcome(delivery.id, "pending", True, delay, result.error)
        self._deliveries.labels(channel_id, "failed").inc()
        why = "rejected" if result.outcome == "rejected" else f"failed after {attempt} attempts"
        log.warning("delivery %s of %s to %s %s: %s", delivery.id, delivery.event_id, channel_id, why, result.error,
                    extra={"delivery_id": delivery.id, "channel": channel_id})
        alert = self._failure_alert(delivery, attempt, why, result.error) if delivery.alert_on_failure else None
        return DeliveryOutcome(delivery.id, "failed", True, 0.0, result.error, alert)

    def _pause(self, lane: _Lane, delay_s: float) -> None:
        """The receiver asked this channel to wait: hand its queued deliveries back unsent."""
        lane.paused_until = max(lane.paused_until, self._clock.monotonic() + delay_s)
        while lane.queue:
            delivery = lane.queue.popleft()
            self._deliveries.labels(delivery.channel_id, "deferred").inc()
            self._emit(DeliveryOutcome(delivery.id, "pending", False, delay_s))

    def _failure_alert(self, delivery: ClaimedDelivery, attempts: int, why: str, error: str) -> Alert:
        return Alert(
            service=self._own_service, severity="warning", kind=DELIVERY_FAILED,
            message=(f"delivery {delivery.id} of {delivery.event_kind} event {delivery.event_id} to channel "
                     f"{delivery.channel_id} {why} ({attempts} attempt{'s' if attempts > 1 else ''}): {error}"),
            labels={"channel": delivery.channel_id, "event_kind": delivery.event_kind}, ts_event=self._clock.now_ns())

    # --- outcomes -------------------------------------------------------------------------------

    def _emit(self, outcome: DeliveryOutcome) -> None:
        self._outcomes.append(outcome)
        self._outcome_ready.set()

    async def _write_outcomes(self) -> None:
        while True:
            await self._outcome_ready.wait()
            await self._clock.sleep(WRITE_INTERVAL_S)  # gather a batch
            self._outcome_ready.clear()
            while self._outcomes:
                batch, self._outcomes = self._outcomes[:WRITE_BATCH], self._outcomes[WRITE_BATCH:]
                try:
                    await self._store.record(batch)
                except Exception:  # noqa: BLE001 - keep them and try again; the leases outlast a short outage
                    log.exception("writing %d delivery outcomes failed; retrying", len(batch))
                    self._outcomes[:0] = batch
                    if self._stopping and not self._sends:
                        return
                    await self._clock.sleep(RETRY_WRITE_S)
            if self._stopping and not self._sends and not self._outcomes:
                return
