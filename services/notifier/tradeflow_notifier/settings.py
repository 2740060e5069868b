"""Notifier configuration (``TRADEFLOW_*`` environment variables, validated at start).

The design fixes ``TRADEFLOW_NOTIFIER_CHANNELS`` and ``TRADEFLOW_NOTIFIER_ROUTES`` (JSON lists,
see domain/channels.py and domain/routes.py); every other setting of this service is named
``TRADEFLOW_NOTIFIER_*`` too. A secret field of a channel from the environment may instead be
read from a mounted file: ``"token_file": "/run/secrets/telegram-token"`` (likewise
``secret_file``, ``password_file``, ``url_file``).
"""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode
from tradeflow.settings import ServiceSettings, json_list
from tradeflow.topics import EXEC_FILLS, EXEC_ORDERS, OPS_ALERTS, RISK_EVENTS, TopicName
from tradeflow_db.settings import DatabasePoolSettings

from tradeflow_notifier.domain.channels import SECRET_FIELDS, ChannelSpec, InvalidChannel, parse_channel
from tradeflow_notifier.domain.retry import RetryPolicy
from tradeflow_notifier.domain.routes import InvalidRoutes, Route, parse_routes

_TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")
KEY_HINT = "generate one with `tradeflow notifier-key`"


def _secrets_from_files(entry: Any, index: int) -> Any:
    """``<secret>_file`` keys of an environment channel replaced by the file's text."""
    if not isinstance(entry, dict):
        return entry
    resolved = dict(entry)
    for name in {field for fields in SECRET_FIELDS.values() for field in fields}:
        path = resolved.pop(f"{name}_file", None)
        if path is None:
            continue
        if name in resolved:
            raise ValueError(f"[{index}] {name} and {name}_file: give one of them")
        try:
            resolved[name] = Path(path).read_text().strip()
        except OSError as exc:
            raise ValueError(f"[{index}] {name}_file: cannot read {path}: {exc.strerror}") from None
    return resolved


def _parse_channels(value: Any) -> list[ChannelSpec]:
    try:
        entries = json_list(value, "channels")
    except ValueError as exc:
        raise ValueError(f"TRADEFLOW_NOTIFIER_CHANNELS: {exc}") from None
    if not isinstance(entries, list):
        raise ValueError("TRADEFLOW_NOTIFIER_CHANNELS: must be a JSON list of channels")
    channels, errors = [], []
    for index, entry in enumerate(entries):
        try:
            channels.append(parse_channel(_secrets_from_files(entry, index)))
        except InvalidChannel as exc:
            errors.extend(f"[{index}] {error}" for error in exc.errors)
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise ValueError("TRADEFLOW_NOTIFIER_CHANNELS: " + "; ".join(errors))
    ids = [c.id for c in channels]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"TRADEFLOW_NOTIFIER_CHANNELS: channel ids must be unique, repeated: {', '.join(repeated)}")
    return channels


class NotifierSettings(ServiceSettings, DatabasePoolSettings):
    """Settings of the notifier service: its own fields are ``TRADEFLOW_NOTIFIER_<FIELD>`` (ADR 0014)."""

    service_name: ClassVar[str] = "notifier"

    channels: Annotated[list[ChannelSpec], NoDecode] = Field(
        default_factory=list, description="channels (JSON list of {id, kind, ...}; design.md)")
    routes: Annotated[list[Route], NoDecode] = Field(
        default_factory=list, description="routes (JSON list of {channel, events, min_severity}) to the channels above")
    secret_key: SecretStr | None = Field(
        default=None, description="Fernet key(s), comma-separated, the first encrypts: secrets of channels created "
                                  "through the API are stored under it; without it such channels are refused")
    # The design's topics; overridable so tests (and staging copies) can use their own.
    orders_topic: TopicName = EXEC_ORDERS.name
    fills_topic: TopicName = EXEC_FILLS.name
    risk_topic: TopicName = RISK_EVENTS.name
    alerts_topic: TopicName = OPS_ALERTS.name
    max_attempts: int = Field(default=8, ge=1, le=100, description="attempts before a delivery fails")
    retry_initial_s: float = Field(default=1.0, gt=0, le=3600, description="delay after the first failure")
    retry_max_s: float = Field(default=300.0, gt=0, le=86_400, description="the longest delay between attempts")
    send_timeout_s: float = Field(default=10.0, gt=0, le=120, description="one attempt's time limit")
    lease_s: float = Field(
        default=60.0, gt=0, le=3600,
        description="a claimed delivery is this replica's for this long; a crashed replica's are retried after it")
    poll_interval_s: float = Field(default=0.5, gt=0, le=60, description="how often due deliveries are looked for")
    webhook_concurrency: int = Field(
        default=16, ge=1, le=256, description="attempts in flight per webhook channel (chat and email channels: 1, in order)")
    group_window_s: float = Field(
        default=60.0, ge=0, le=86_400, description="identical alerts within this window become one message with a count (0: off)")
    report_time: str = Field(
        default="00:00", description="time of day (HH:MM[:SS]) of the daily report per account; empty turns it off")
    report_timezone: str = Field(default="UTC", description="time zone of report_time (IANA name)")
    retention_days: int = Field(
        default=30, ge=8, le=3650,
        description="finished deliveries and seen event ids are kept this long (longer than the topics' retention)")
    config_refresh_s: float = Field(
        default=5.0, gt=0, le=3600, description="how often channels and routes changed by other replicas are reloaded")

    @model_validator(mode="before")
    @classmethod
    def _channels_and_routes(cls, data: Any) -> Any:
        # A model-level check, so an error names the variable without echoing its value: the
        # channels' JSON holds tokens and passwords.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "channels" in data:
            data["channels"] = _parse_channels(data["channels"])
        if "routes" in data:
            try:
                entries = json_list(data["routes"], "routes")
                data["routes"] = parse_routes(entries)
            except (InvalidRoutes, ValueError) as exc:
                raise ValueError(f"TRADEFLOW_NOTIFIER_ROUTES: {exc}") from None
        return data

    @field_validator("report_time")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        if value.strip() and not _TIME_OF_DAY.match(value.strip()):
            raise ValueError("must be a time of day HH:MM or HH:MM:SS (24 h), or empty to send no reports")
        return value.strip()

    @field_validator("report_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin") from None
        return value

    @model_validator(mode="after")
    def _fernet_keys(self) -> NotifierSettings:
        # Here rather than in a field validator: the error must not echo the key.
        for key in self.fernet_keys():
            try:
                Fernet(key)
            except (ValueError, TypeError):
                raise ValueError("TRADEFLOW_NOTIFIER_SECRET_KEY: must be Fernet keys (32 url-safe base64-encoded "
                                 f"bytes each, comma-separated, the first encrypts); {KEY_HINT}") from None
        return self

    @model_validator(mode="after")
    def _routes_name_configured_channels(self) -> NotifierSettings:
        known = {c.id for c in self.channels}
        unknown = [f"routes[{i}].channel: unknown channel {r.channel!r} (routes from the environment name "
                   f"channels of TRADEFLOW_NOTIFIER_CHANNELS)" for i, r in enumerate(self.routes)
                   if r.channel not in known]
        if unknown:
            raise ValueError("TRADEFLOW_NOTIFIER_ROUTES: " + "; ".join(unknown))
        return self

    @property
    def report_at(self) -> time | None:
        """The daily report's time of day, or None when reports are off."""
        match = _TIME_OF_DAY.match(self.report_time)
        if match is None:
            return None
        hour, minute, second = match.groups()
        return time(int(hour), int(minute), int(second or 0))

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.retry_initial_s, self.retry_max_s)

    def fernet_keys(self) -> list[str]:
        if self.secret_key is None:
            return []
        return [key.strip() for key in self.secret_key.get_secret_value().split(",") if key.strip()]
