"""Loopback fakes of what the notifier delivers to, on one aiohttp server (127.0.0.1, free port).

* Telegram Bot API: ``POST /bot<token>/sendMessage``; ``{"ok": true, "result": {...}}``; a wrong
  token is 401 ``Unauthorized``, an unknown chat 400 ``Bad Request: chat not found``; flood control
  is 429 ``{"ok": false, "error_code": 429, "description": "Too Many Requests: retry after N",
  "parameters": {"retry_after": N}}``.
* Discord webhook: ``POST /api/webhooks/<id>/<token>`` (``?wait=true``: 200 with the message,
  else 204); an unknown webhook is 404 ``{"message": "Unknown Webhook", "code": 10015}``; more
  than 2,000 characters 400; rate limits are 429 ``{"message": "You are being rate limited.",
  "retry_after": N, "global": false}`` with ``Retry-After`` and ``X-RateLimit-Reset-After``.
* Slack incoming webhook: ``POST /services/<T>/<B>/<secret>``: 200 ``ok``; unknown 404
  ``no_service``, 429 with ``Retry-After``.
* A webhook receiver, ``POST /hooks/<name>``, that verifies design.md's signature under
  ``WEBHOOK_SECRET`` (401 when it does not verify) and records each delivery id.

Controls: :meth:`rate_limit` and :meth:`fail` (the next N requests of a service), ``hold``
(webhook requests wait, unanswered, until it is set; ``hold_after``: once N were accepted), :meth:`stop`/:meth:`start` (down and back
on the same port). ``received`` holds what was accepted *and answered* (a request whose client
went away before the answer is not acknowledged, so not received); ``attempts`` every request.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from tradeflow_notifier.domain.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    BadSignature,
    verify,
)

TELEGRAM_TOKEN = "123456:TEST-telegram-token"
TELEGRAM_CHAT = "-100777"
DISCORD_PATH = "/api/webhooks/1234/discord-token-xyz"
SLACK_PATH = "/services/T000/B000/slack-secret-xyz"
WEBHOOK_SECRET = "whsec_test_0123456789abcdef"


@dataclass(frozen=True)
class Received:
    service: str
    path: str
    body: bytes
    headers: dict[str, str]
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The message text as a person sees it (webhooks: the JSON's ``text`` under its title)."""
        document = self.json
        if self.service == "telegram":
            return document["text"]
        if self.service == "discord":
            return document["content"]
        if self.service == "slack":
            return document["text"]
        return document["title"] + "\n" + document["text"]

    @property
    def delivery_id(self) -> str | None:
        return self.headers.get(DELIVERY_HEADER)


@dataclass
class _Trouble:
    times: int
    status: int
    retry_after: float | None = None
    reason: str = ""


@dataclass
class FakeReceivers:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    attempts: list[tuple[str, float, int]] = field(default_factory=list)  # (service, time, status)
    bad_signatures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        self.hold = asyncio.Event()
        self.hold.set()
        self.hold_after: int | None = None  # webhook deliveries accepted before ``hold`` is cleared by itself
        self._trouble: dict[str, _Trouble] = {}
        self._runner: web.AppRunner | None = None
        self.arrived = asyncio.Event()  # set on every accepted request (tests wait on it)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def channels(self, prefix: str = "") -> dict[str, dict]:
        """Channel definitions of every kind pointing here (ids ``<prefix>telegram`` ...)."""
        return {
            "telegram": {"id": f"{prefix}telegram", "kind": "telegram", "url": self.base, "token": TELEGRAM_TOKEN,
                         "chat_id": TELEGRAM_CHAT, "rate_per_minute": 600},
            "discord": {"id": f"{prefix}discord", "kind": "discord", "url": self.base + DISCORD_PATH,
                        "rate_per_minute": 600},
            "slack": {"id": f"{prefix}slack", "kind": "slack", "url": self.base + SLACK_PATH, "rate_per_minute": 600},
            "webhook": {"id": f"{prefix}webhook", "kind": "webhook", "url": f"{self.base}/hooks/{prefix or 'main'}",
                        "secret": WEBHOOK_SECRET},
        }

    # --- controls -------------------------------------------------------------------------------

    def rate_limit(self, service: str, times: int, retry_after: float) -> None:
        self._trouble[service] = _Trouble(times, 429, retry_after)

    def fail(self, service: str, times: int, status: int, reason: str = "") -> None:
        self._trouble[service] = _Trouble(times, status, None, reason)

    async def start(self) -> FakeReceivers:
        app = web.Application()
        app.router.add_post("/bot{token}/sendMessage", self._telegram)
        app.router.add_post("/api/webhooks/{id}/{token}", self._discord)
        app.router.add_post("/services/{t}/{b}/{secret}", self._slack)
        app.router.add_post("/hooks/{name}", self._webhook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        """Down: the port refuses connections until :meth:`start`."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def by_service(self, service: str) -> list[Received]:
        return [r for r in self.received if r.service == service]

    def delivery_counts(self) -> Counter:
        return Counter(r.delivery_id for r in self.received if r.service == "webhook")

    async def wait_for(self, condition, timeout_s: float = 20.0) -> None:
        """Until ``condition(self)`` holds (checked on every accepted request and every 0.2 s)."""
        deadline = time.monotonic() + timeout_s
        while not condition(self):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; received {[(r.service, r.text[:60]) for r in self.received]}"
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), min(0.2, remaining))
            except TimeoutError:
                pass

    # --- the services ---------------------------------------------------------------------------

    def _trouble_for(self, service: str) -> _Trouble | None:
        trouble = self._trouble.get(service)
        if trouble is None or trouble.times <= 0:
            return None
        trouble.times -= 1
        return trouble

    def _accept(self, service: str, request: web.Request, body: bytes) -> None:
        self.received.append(Received(service, request.path, body, dict(request.headers), time.time()))
        self.attempts.append((service, time.time(), 200))
        self.arrived.set()

    async def _telegram(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.match_info["token"] != TELEGRAM_TOKEN:
            return self._refused("telegram", web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401))
        document = json.loads(body)
        trouble = self._trouble_for("telegram")
        if trouble is not None and trouble.status == 429:
            return self._refused("telegram", web.json_response(
                {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {trouble.retry_after:g}",
                 "parameters": {"retry_after": trouble.retry_after}}, status=429))
        if trouble is not None:
            return self._refused("telegram", web.json_response(
                {"ok": False, "error_code": trouble.status, "description": trouble.reason}, status=trouble.status))
        if str(document.get("chat_id")) != TELEGRAM_CHAT:
            return self._refused("telegram", web.json_response(
                {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}, status=400))
        self._accept("telegram", request, body)
        return web.json_response({"ok": True, "result": {"message_id": len(self.received), "text": document["text"]}})

    async def _discord(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path != DISCORD_PATH:
            return self._refused("discord", web.json_response({"message": "Unknown Webhook", "code": 10015}, status=404))
        trouble = self._trouble_for("discord")
        if trouble is not None and trouble.status == 429:
            return self._refused("discord", web.json_response(
                {"message": "You are being rate limited.", "retry_after": trouble.retry_after, "global": False},
                status=429, headers={"Retry-After": str(math.ceil(trouble.retry_after)),
                                     "X-RateLimit-Reset-After": str(trouble.retry_after), "X-RateLimit-Scope": "user"}))
        if trouble is not None:
            return self._refused("discord", web.json_response({"message": trouble.reason}, status=trouble.status))
        content = json.loads(body).get("content", "")
        if len(content) > 2000:
            return self._refused("discord", web.json_response({"content": ["Must be 2000 or fewer in length."]},
                                                              status=400))
        self._accept("discord", request, body)
        if request.query.get("wait") == "true":
            return web.json_response({"id": str(len(self.received)), "content": content})
        return web.Response(status=204)

    async def _slack(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path != SLACK_PATH:
            return self._refused("slack", web.Response(status=404, text="no_service"))
        trouble = self._trouble_for("slack")
        if trouble is not None and trouble.status == 429:
            return self._refused("slack", web.Response(status=429, text="rate_limited",
                                                       headers={"Retry-After": f"{trouble.retry_after:g}"}))
        if trouble is not None:
            return self._refused("slack", web.Response(status=trouble.status, text=trouble.reason))
        self._accept("slack", request, body)
        return web.Response(text="ok")

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(WEBHOOK_SECRET, request.headers.get(SIGNATURE_HEADER, ""), body, now=time.time())
        except BadSignature as exc:
            self.bad_signatures.append(str(exc))
            return self._refused("webhook", web.Response(status=401, text=f"bad signature: {exc}"))
        if not request.headers.get(DELIVERY_HEADER) or not request.headers.get(EVENT_HEADER):
            return self._refused("webhook", web.Response(status=400, text="missing delivery or event header"))
        trouble = self._trouble_for("webhook")
        if trouble is not None:
            return self._refused("webhook", web.Response(status=trouble.status, text=trouble.reason,
                                                         headers={"Retry-After": f"{trouble.retry_after:g}"}
                                                         if trouble.retry_after is not None else None))
        if self.hold_after is not None and len(self.by_service("webhook")) >= self.hold_after:
            self.hold.clear()
            self.hold_after = None
        await self.hold.wait()
        if request.transport is None or request.transport.is_closing():
            return web.Response(status=499)  # the sender went away: nothing was acknowledged
        self._accept("webhook", request, body)
        return web.Response(status=204)

    def _refused(self, service: str, response: web.Response) -> web.Response:
        self.attempts.append((service, time.time(), response.status))
        return response
