"""One entry point for every channel kind: :meth:`ChannelSenders.send` makes one attempt.

A component holding the shared aiohttp client session (connection pooling and keep-alive for
every HTTP channel; aiohttp rather than httpx: measured, ADR 0016). Errors come back as
:class:`SendResult` with the channel's secrets scrubbed from their text (a Telegram URL holds
the bot token); aiohttp's client logs no requests.
"""

from __future__ import annotations

import aiohttp
from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.time import NS_PER_S

from tradeflow_notifier.adapters.senders.email import send_email
from tradeflow_notifier.adapters.senders.http_channels import (
    USER_AGENT,
    send_discord,
    send_slack,
    send_telegram,
    send_webhook,
)
from tradeflow_notifier.domain.channels import ChannelSpec, scrub
from tradeflow_notifier.domain.retry import SendResult


class ChannelSenders:
    name = "channel-senders"

    def __init__(self, timeout_s: float, max_connections: int = 256, clock: Clock = SYSTEM_CLOCK) -> None:
        self._timeout_s = timeout_s
        self._clock = clock
        self._max_connections = max_connections
        self._client: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout_s), headers={"User-Agent": USER_AGENT},
            connector=aiohttp.TCPConnector(limit=self._max_connections))

    async def stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def send(self, channel: ChannelSpec, *, delivery_id: str, event_kind: str, title: str, body: str) -> SendResult:
        try:
            result = await self._send(channel, delivery_id, event_kind, title, body)
        except TimeoutError:
            result = SendResult.retry(f"no answer within {self._timeout_s:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            result = SendResult.retry(f"{type(exc).__name__}: {exc}")
        if result.error:
            return SendResult(result.outcome, scrub(result.error, channel.secret_values()), result.retry_after_s)
        return result

    async def _send(self, channel: ChannelSpec, delivery_id: str, event_kind: str, title: str, body: str) -> SendResult:
        if channel.kind == "email":
            return await send_email(channel, title, body, delivery_id, self._timeout_s)
        if self._client is None:
            raise RuntimeError("channel senders are not started")
        if channel.kind == "webhook":
            return await send_webhook(self._client, channel, body, event_kind, delivery_id,
                                      self._clock.now_ns() // NS_PER_S)
        if channel.kind == "telegram":
            return await send_telegram(self._client, channel, body)
        if channel.kind == "discord":
            return await send_discord(self._client, channel, body)
        return await send_slack(self._client, channel, body)
