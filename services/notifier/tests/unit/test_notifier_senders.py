"""Each channel's sender against a loopback fake that speaks the real API: delivered, the
receiver's rate-limit answers read as Retry-After, 4xx failing at once with the receiver's
reason, and email through a real SMTP server with STARTTLS and login."""

from __future__ import annotations

import asyncio

import pytest
from tradeflow_notifier.adapters.senders.channel_senders import ChannelSenders
from tradeflow_notifier.adapters.senders.email import send_email
from tradeflow_notifier.domain.channels import parse_channel
from tradeflow_notifier.domain.signing import EVENT_HEADER, SIGNATURE_HEADER

from tests.fakes.fake_notification_receivers import TELEGRAM_TOKEN, FakeReceivers
from tests.fakes.fake_smtp_server import FakeSmtpServer

DELIVERY = "0b0e9b3e-0000-5000-8000-000000000001"


@pytest.fixture
async def receivers():
    fake = await FakeReceivers().start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def senders():
    channel_senders = ChannelSenders(timeout_s=2.0)
    await channel_senders.start()
    try:
        yield channel_senders
    finally:
        await channel_senders.stop()


async def send(senders, definition: dict, body: str = "hello <b>", title: str = "t"):
    return await senders.send(parse_channel(definition), delivery_id=DELIVERY, event_kind="fill", title=title, body=body)


async def test_telegram_send_message_flood_control_and_its_refusals(receivers, senders):
    telegram = receivers.channels()["telegram"]
    assert (await send(senders, telegram, "<b>Fill</b>")).outcome == "delivered"
    (sent,) = receivers.by_service("telegram")
    assert sent.json == {"chat_id": "-100777", "text": "<b>Fill</b>", "parse_mode": "HTML",
                         "disable_web_page_preview": True}
    receivers.rate_limit("telegram", 1, retry_after=3)
    flood = await send(senders, telegram)
    assert (flood.outcome, flood.retry_after_s) == ("retry", 3.0)
    assert flood.error == "HTTP 429: Too Many Requests: retry after 3"
    wrong_chat = await send(senders, {**telegram, "chat_id": "1"})
    assert (wrong_chat.outcome, wrong_chat.error) == ("rejected", "HTTP 400: Bad Request: chat not found")
    wrong_token = await send(senders, {**telegram, "token": "999:nope"})
    assert (wrong_token.outcome, wrong_token.error) == ("rejected", "HTTP 401: Unauthorized")


async def test_discord_webhook_and_its_rate_limit_body_and_headers(receivers, senders):
    discord = receivers.channels()["discord"]
    assert (await send(senders, discord, "**Fill**")).outcome == "delivered"
    (sent,) = receivers.by_service("discord")
    assert sent.json == {"content": "**Fill**", "allowed_mentions": {"parse": []}}
    receivers.rate_limit("discord", 1, retry_after=0.75)
    limited = await send(senders, discord)
    assert (limited.outcome, limited.retry_after_s) == ("retry", 0.75)  # the body's exact value, not the header's 1
    unknown = await send(senders, {**discord, "url": receivers.base + "/api/webhooks/1/wrong"})
    assert (unknown.outcome, unknown.error) == ("rejected", "HTTP 404: Unknown Webhook")


async def test_slack_webhook_retry_after_and_refusal(receivers, senders):
    slack = receivers.channels()["slack"]
    assert (await send(senders, slack, "*Fill*")).outcome == "delivered"
    assert receivers.by_service("slack")[0].json == {"text": "*Fill*"}
    receivers.rate_limit("slack", 1, retry_after=7)
    assert (await send(senders, slack)).retry_after_s == 7.0
    gone = await send(senders, {**slack, "url": receivers.base + "/services/T/B/revoked"})
    assert (gone.outcome, gone.error) == ("rejected", "HTTP 404: no_service")
    receivers.fail("slack", 1, 410, "channel_is_archived")
    assert (await send(senders, slack)).error == "HTTP 410: channel_is_archived"
    receivers.fail("slack", 1, 503, "")
    assert (await send(senders, slack)).outcome == "retry"


async def test_a_signed_webhook_keeps_its_delivery_id_and_body_and_signs_each_attempt_anew(receivers, senders):
    webhook = receivers.channels()["webhook"]
    receivers.fail("webhook", 1, 500, "oops")
    assert (await send(senders, webhook, '{"id":"fill:1"}')).outcome == "retry"
    await asyncio.sleep(1.05)  # the next attempt is signed at a later second
    assert (await send(senders, webhook, '{"id":"fill:1"}')).outcome == "delivered"
    assert receivers.bad_signatures == []
    (sent,) = receivers.by_service("webhook")
    assert sent.body == b'{"id":"fill:1"}' and sent.delivery_id == DELIVERY and sent.headers[EVENT_HEADER] == "fill"
    assert sent.headers["Content-Type"] == "application/json"
    wrong_secret = await send(senders, {**webhook, "secret": "whsec_another_secret_value"}, '{"id":"fill:1"}')
    assert (wrong_secret.outcome, wrong_secret.error.split(":")[0]) == ("rejected", "HTTP 401")
    assert SIGNATURE_HEADER in sent.headers


async def test_no_answer_within_the_time_limit_is_retried(receivers):
    slow = ChannelSenders(timeout_s=0.3)
    await slow.start()
    receivers.hold.clear()
    try:
        result = await send(slow, receivers.channels()["webhook"], "{}")
    finally:
        receivers.hold.set()
        await slow.stop()
    assert (result.outcome, result.error) == ("retry", "no answer within 0.3s")


async def test_an_unreachable_receiver_is_retried_and_the_error_never_shows_the_token(senders):
    telegram = {"id": "t", "kind": "telegram", "url": "http://127.0.0.1:9", "token": TELEGRAM_TOKEN, "chat_id": "1"}
    result = await send(senders, telegram)
    assert result.outcome == "retry" and TELEGRAM_TOKEN not in result.error


@pytest.fixture
def smtp(tmp_path):
    server = FakeSmtpServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


async def test_email_over_starttls_with_login(smtp):
    channel = parse_channel(smtp.channel(timezone="Europe/Berlin"))
    result = await send_email(channel, "Fill: BUY 0.001 BTC/USDT", "Account: alice\n", DELIVERY, timeout_s=5)
    assert result.outcome == "delivered", result.error
    (message,) = smtp.messages
    assert smtp.tls_used == [True]
    assert message["Subject"] == "Fill: BUY 0.001 BTC/USDT" and message["To"] == "ops@example.com"
    assert message["Message-ID"] == f"<{DELIVERY}@tradeflow.notifier>"
    assert message.get_payload(decode=True).decode().replace("\r\n", "\n") == "Account: alice\n"


async def test_email_refusals_fail_at_once_and_a_server_away_is_retried(smtp, tmp_path):
    wrong_login = await send_email(parse_channel(smtp.channel(password="wrong")), "s", "b", DELIVERY, 5)
    assert wrong_login.outcome == "rejected" and wrong_login.error.startswith("SMTP 535")
    assert "wrong" not in wrong_login.error
    smtp.refused_recipients.add("ops@example.com")
    refused = await send_email(parse_channel(smtp.channel()), "s", "b", DELIVERY, 5)
    assert refused.outcome == "rejected" and "ops@example.com: 550" in refused.error
    untrusted = await send_email(parse_channel({**smtp.channel(), "ca_file": None}), "s", "b", DELIVERY, 5)
    assert untrusted.outcome == "rejected" and untrusted.error.startswith("TLS: the server's certificate does not verify")
    away = await send_email(parse_channel({**smtp.channel(), "port": 9}), "s", "b", DELIVERY, 5)
    assert away.outcome == "retry"
    assert smtp.messages == []
