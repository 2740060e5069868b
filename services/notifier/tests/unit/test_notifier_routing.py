"""Channels and routes: validation that names the field, masking, which channels an event goes
to, and that the notifier's own failure alerts avoid the failing channel."""

from __future__ import annotations

import pytest
from tradeflow_notifier.domain.channels import MASK, InvalidChannel, masked, parse_channel, scrub
from tradeflow_notifier.domain.events import notification_from_message
from tradeflow_notifier.domain.planning import DELIVERY_FAILED, Routing, delivery_id, plan
from tradeflow_notifier.domain.routes import InvalidRoutes, channels_for, parse_routes

from services.notifier.tests.unit.notifier_samples import alert, channel, fill, order_event, risk_event


@pytest.mark.parametrize("definition, named", [
    ({"id": "w", "kind": "webhook", "url": "ftp://x", "secret": "0123456789abcdef"}, "url: must be an http(s) URL"),
    ({"id": "w", "kind": "webhook", "url": "http://x"}, "secret: Field required"),
    ({"id": "t", "kind": "telegram", "token": "1:A"}, "chat_id: Field required"),
    ({"id": "e", "kind": "email", "host": "h", "from": "nobody", "to": ["a@b.c"]}, "from: must hold an email address"),
    ({"id": "e", "kind": "email", "host": "h", "from": "a@b.c", "to": ["not-an-address"]}, "to: not email addresses"),
    ({"id": "s", "kind": "slack", "url": "http://x", "timezone": "Mars/Olympus"}, "timezone: unknown time zone"),
    ({"id": "x", "kind": "pager"}, "kind: Input tag 'pager'"),
    ({"id": "bad id!", "kind": "slack", "url": "http://x"}, "id: String should match"),
    ({"id": "d", "kind": "discord", "url": "http://x", "colour": "red"}, "colour: Extra inputs are not permitted"),
])
def test_an_invalid_channel_names_the_field(definition, named):
    with pytest.raises(InvalidChannel) as caught:
        parse_channel(definition)
    assert any(error.startswith(named) for error in caught.value.errors), caught.value.errors


def test_secrets_are_masked_and_a_secret_url_keeps_only_its_host():
    assert masked(channel("telegram"))["token"] == MASK
    assert masked(channel("webhook"))["secret"] == MASK and masked(channel("webhook"))["url"] == "http://127.0.0.1:9/hook"
    assert masked(channel("slack"))["url"] == f"http://127.0.0.1:9/{MASK}"
    assert masked(channel("email", password="hunter2"))["password"] == MASK
    assert "hunter2" not in repr(channel("email", password="hunter2"))
    assert scrub("POST http://h/bot123:ABC/sendMessage failed", channel("telegram").secret_values()) == \
        f"POST http://h/bot{MASK}/sendMessage failed"


def test_routes_choose_by_event_kind_severity_account_and_mute():
    routes = parse_routes([
        {"channel": "tg", "events": ["fill", "order"], "accounts": ["alice"], "mute": ["accepted"]},
        {"channel": "slack", "events": ["alert", "risk"], "min_severity": "warning"},
        {"channel": "hook", "events": ["*"]},
        {"channel": "tg", "events": ["*"]},  # a second route to tg: still one delivery
    ])
    channels = ["tg", "slack", "hook"]

    def chosen(message):
        return channels_for(notification_from_message(message), routes, channels)

    assert chosen(fill()) == ["tg", "hook"]
    assert chosen(fill(account_id="bob")) == ["hook", "tg"]
    assert chosen(order_event(status="accepted")) == ["hook", "tg"]  # muted on the first tg route only
    assert chosen(risk_event(severity="info")) == ["hook", "tg"]
    assert chosen(alert(severity="warning")) == ["slack", "hook", "tg"]
    assert channels_for(notification_from_message(fill()), routes, ["hook"]) == ["hook"]  # unknown channels skipped


def test_invalid_routes_name_the_route_and_field():
    with pytest.raises(InvalidRoutes) as caught:
        parse_routes([{"channel": "a"}, {"channel": "b", "events": ["fills"], "min_severity": "loud"}])
    assert [e.split(":")[0] for e in caught.value.errors] == ["routes[1].events.0", "routes[1].min_severity"]
    with pytest.raises(InvalidRoutes, match=r"routes\[0\].channel: unknown channel 'nope'"):
        parse_routes([{"channel": "nope"}], known_channels=["a"])


def test_a_delivery_id_is_the_same_for_the_same_event_and_channel_only():
    assert delivery_id("fill:1", "hook") == delivery_id("fill:1", "hook")
    assert len({delivery_id("fill:1", "hook"), delivery_id("fill:1", "tg"), delivery_id("fill:2", "hook")}) == 3


def test_the_notifiers_own_failure_alert_skips_the_failing_channel_and_raises_no_further_alert():
    routing = Routing({c.id: c for c in (channel("slack"), channel("webhook"))},
                      parse_routes([{"channel": "slack", "events": ["alert"]}, {"channel": "webhook", "events": ["*"]}]))
    failure = alert(service="notifier", kind=DELIVERY_FAILED, severity="warning", labels={"channel": "slack"})
    deliveries = plan(notification_from_message(failure), routing, own_service="notifier")
    assert [d.channel_id for d in deliveries] == ["webhook"]
    assert deliveries[0].alert_on_failure is False
    other = plan(notification_from_message(alert(severity="warning")), routing, own_service="notifier")
    assert [(d.channel_id, d.alert_on_failure) for d in other] == [("slack", True), ("webhook", True)]
