"""``POST /v1/channels/{id}/test``: one test message through a channel, sent now, outcome returned.

Not a stored delivery: no retries, no rate limit; the caller sees at once whether the channel
works (or the receiver's reason why not).
"""

from __future__ import annotations

import uuid

from tradeflow.clock import SYSTEM_CLOCK, Clock

from tradeflow_notifier.adapters.senders.channel_senders import ChannelSenders
from tradeflow_notifier.domain.channels import ChannelSpec
from tradeflow_notifier.domain.events import Notification
from tradeflow_notifier.domain.rendering import render
from tradeflow_notifier.domain.retry import SendResult


class ChannelTester:
    def __init__(self, senders: ChannelSenders, clock: Clock = SYSTEM_CLOCK) -> None:
        self._senders = senders
        self._clock = clock

    async def send(self, channel: ChannelSpec) -> SendResult:
        notification = Notification(f"test:{uuid.uuid4()}", "test", "test", "info", self._clock.now_ns(),
                                    payload=f"{channel.id} ({channel.kind})")
        rendered = render(notification, channel.kind, channel.zone)
        return await self._senders.send(channel, delivery_id=str(uuid.uuid4()), event_kind="test",
                                        title=rendered.title, body=rendered.body)
