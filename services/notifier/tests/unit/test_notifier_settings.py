"""TRADEFLOW_NOTIFIER_* settings: channels and routes from the environment (secrets from mounted
files too), and errors that name the variable without ever echoing a secret."""

from __future__ import annotations

import json
from datetime import time

import pytest
from cryptography.fernet import Fernet
from tradeflow.settings import ConfigurationError, load_settings
from tradeflow_notifier.settings import NotifierSettings

TOKEN = "987654:super-secret-bot-token"


def load(monkeypatch, **env) -> NotifierSettings:
    for name, value in env.items():
        monkeypatch.setenv(f"TRADEFLOW_NOTIFIER_{name.upper()}", value if isinstance(value, str) else json.dumps(value))
    return load_settings(NotifierSettings)


def test_channels_and_routes_from_the_environment_with_a_secret_from_a_mounted_file(monkeypatch, tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    settings = load(monkeypatch, channels=[
        {"id": "tg", "kind": "telegram", "token_file": str(tmp_path / "token"), "chat_id": -1001},
        {"id": "ops", "kind": "email", "host": "smtp.example.com", "from": "a@example.com", "to": "x@example.com"}],
        routes=[{"channel": "tg", "events": ["fill"]}], report_time="07:30")
    telegram, email = settings.channels
    assert telegram.token.get_secret_value() == TOKEN and telegram.chat_id == "-1001"
    assert email.to == ["x@example.com"] and email.port == 587 and email.security == "starttls"
    assert settings.routes[0].events == ["fill"]
    assert settings.report_at == time(7, 30)


def test_a_bad_channel_names_the_variable_and_field_but_never_echoes_the_json(monkeypatch, capsys):
    with pytest.raises(ConfigurationError) as caught:
        load(monkeypatch, channels=[{"id": "tg", "kind": "telegram", "token": TOKEN}])
    message = str(caught.value)
    assert "TRADEFLOW_NOTIFIER_CHANNELS: [0] chat_id: Field required" in message
    assert TOKEN not in message


def test_a_bad_key_is_refused_without_echoing_it(monkeypatch):
    with pytest.raises(ConfigurationError) as caught:
        load(monkeypatch, secret_key="not-a-fernet-key-but-secret")
    assert "TRADEFLOW_NOTIFIER_SECRET_KEY: must be Fernet keys" in str(caught.value)
    assert "not-a-fernet-key-but-secret" not in str(caught.value)
    keys = [Fernet.generate_key().decode(), Fernet.generate_key().decode()]
    assert load(monkeypatch, secret_key=",".join(keys)).fernet_keys() == keys


@pytest.mark.parametrize("env, named", [
    ({"routes": [{"channel": "nope"}]}, "TRADEFLOW_NOTIFIER_ROUTES: routes[0].channel: unknown channel 'nope'"),
    ({"channels": "[{not json"}, "TRADEFLOW_NOTIFIER_CHANNELS: must be a JSON list"),
    ({"channels": [{"id": "a", "kind": "slack", "url": "http://x"}] * 2}, "repeated: a"),
    ({"channels": [{"id": "a", "kind": "slack", "url_file": "/nonexistent/x"}]}, "[0] url_file: cannot read"),
    ({"report_time": "25:00"}, "TRADEFLOW_NOTIFIER_REPORT_TIME: must be a time of day"),
    ({"report_timezone": "Europe/Atlantis"}, "TRADEFLOW_NOTIFIER_REPORT_TIMEZONE: unknown time zone"),
])
def test_configuration_errors_name_the_setting(monkeypatch, env, named):
    with pytest.raises(ConfigurationError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load(monkeypatch, **env)


def test_an_empty_report_time_turns_reports_off(monkeypatch):
    assert load(monkeypatch, report_time="").report_at is None
