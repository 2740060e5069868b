"""The HTTP channels over one shared aiohttp client session: Telegram, Discord, Slack and signed webhooks.

Each function makes one attempt and turns the answer into a :class:`SendResult` with the
receiver's own reason (Telegram's ``description``, Slack's ``channel_not_found``, ...) and its
``retry_after`` where it gave one:

- Telegram Bot API ``sendMessage`` (HTML): ``{"ok": false, "error_code": 429, "parameters":
  {"retry_after": 5}}`` on flood control.
- Discord webhook (``?wait=true``, mentions off): 429 with ``{"retry_after": 0.5}`` in the body
  and ``Retry-After`` / ``X-RateLimit-Reset-After`` headers.
- Slack incoming webhook: 200 ``ok``; errors as text (``invalid_payload``, ``no_service``); 429
  with ``Retry-After``.
- Webhook: the rendered JSON as is, with design.md's headers and a fresh signature per attempt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy

from tradeflow_notifier.domain.channels import DiscordChannel, SlackChannel, TelegramChannel, WebhookChannel
from tradeflow_notifier.domain.retry import SendResult, http_result, parse_retry_after
from tradeflow_notifier.domain.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)

USER_AGENT = "tradeflow-notifier/0.1"
MAX_REASON_CHARS = 200
MAX_ANSWER_BYTES = 64 * 1024  # what is read of an answer: enough for any reason, bounded for a hostile one


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    headers: CIMultiDictProxy[str]

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> dict:
        try:
            value = json.loads(self.body)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def reason(self) -> str:
        return self.body.decode("utf-8", "replace").strip()[:MAX_REASON_CHARS]


async def post(session: aiohttp.ClientSession, url: str, **kwargs) -> Answer:
    """One POST (no redirects: a webhook that moved is a configuration problem)."""
    async with session.post(url, allow_redirects=False, **kwargs) as response:
        body = await response.content.read(MAX_ANSWER_BYTES)
        return Answer(response.status, body, response.headers)


def _first_retry_after(*values: object) -> float | None:
    for value in values:
        seconds = parse_retry_after(str(value)) if value is not None else None
        if seconds is not None:
            return seconds
    return None


async def send_telegram(session: aiohttp.ClientSession, channel: TelegramChannel, body: str) -> SendResult:
    response = await post(
        session, f"{channel.url}/bot{channel.token.get_secret_value()}/sendMessage",
        json={"chat_id": channel.chat_id, "text": body, "parse_mode": "HTML", "disable_web_page_preview": True})
    answer = response.json()
    if response.is_success and answer.get("ok", True):
        return SendResult.delivered()
    parameters = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
    retry_after = _first_retry_after(parameters.get("retry_after"), response.headers.get("Retry-After"))
    reason = str(answer.get("description") or response.reason())[:MAX_REASON_CHARS]
    # ok=false on a 2xx would be a Bot API oddity: nothing says a retry would fare better.
    return http_result(response.status if not response.is_success else 400, reason, retry_after)


async def send_discord(session: aiohttp.ClientSession, channel: DiscordChannel, body: str) -> SendResult:
    response = await post(session, channel.url.get_secret_value(), params={"wait": "true"},
                          json={"content": body, "allowed_mentions": {"parse": []}})
    if response.is_success:
        return SendResult.delivered()
    answer = response.json()
    retry_after = _first_retry_after(answer.get("retry_after"), response.headers.get("Retry-After"),
                                     response.headers.get("X-RateLimit-Reset-After"))
    reason = str(answer.get("message") or response.reason())[:MAX_REASON_CHARS]
    return http_result(response.status, reason, retry_after)


async def send_slack(session: aiohttp.ClientSession, channel: SlackChannel, body: str) -> SendResult:
    response = await post(session, channel.url.get_secret_value(), json={"text": body})
    return http_result(response.status, "" if response.is_success else response.reason(),
                       _first_retry_after(response.headers.get("Retry-After")))


async def send_webhook(session: aiohttp.ClientSession, channel: WebhookChannel, body: str, event_kind: str,
                       delivery_id: str, timestamp_s: int) -> SendResult:
    raw = body.encode()
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: event_kind,
        DELIVERY_HEADER: delivery_id,
        SIGNATURE_HEADER: signature_header(channel.secret.get_secret_value(), timestamp_s, raw),
    }
    response = await post(session, channel.url, data=raw, headers=headers)
    return http_result(response.status, "" if response.is_success else response.reason(),
                       _first_retry_after(response.headers.get("Retry-After")))
