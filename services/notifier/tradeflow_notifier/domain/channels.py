"""Channel definitions (design.md, "Notifications"): where a delivery goes and how.

A channel is ``{"id", "kind", ...}`` with the design's fields per kind:

| kind | fields (secret ones in bold) |
|---|---|
| webhook | ``url``, **``secret``** (HMAC key of the signature) |
| telegram | ``url`` (Bot API base, default https://api.telegram.org), **``token``**, ``chat_id`` |
| discord | **``url``** (the webhook URL holds its token) |
| slack | **``url``** (the incoming-webhook URL is its credential) |
| email | ``host``, ``port``, ``username``, **``password``**, ``from``, ``to`` |

and, for every kind, ``timezone`` (IANA name; times in messages are shown in it, default UTC)
and ``rate_per_minute`` (at most this many messages a minute; default per kind below, 0 means
no limit). Email also takes ``security`` (``starttls`` default, ``tls``, ``none``) and
``ca_file`` (a CA bundle to verify the server with, e.g. a company relay's).

Secrets are ``SecretStr``: never in reprs or logs, shown masked by the API.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError, field_validator

CHANNEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MASK = "********"
# Conservative defaults under each service's documented limits: Telegram 20 messages a minute
# in a group (1/s in a private chat), Discord 5 per 2 s per webhook, Slack 1 per second.
DEFAULT_RATE_PER_MINUTE = {"telegram": 20, "discord": 30, "slack": 60, "email": 30, "webhook": 0}
TELEGRAM_API = "https://api.telegram.org"


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return value


class _Channel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    id: str = Field(pattern=CHANNEL_ID_PATTERN)
    timezone: str = "UTC"
    rate_per_minute: int | None = Field(default=None, ge=0, le=100_000)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def messages_per_minute(self) -> int:
        """The rate limit in force (0: none)."""
        return DEFAULT_RATE_PER_MINUTE[self.kind] if self.rate_per_minute is None else self.rate_per_minute

    def secret_values(self) -> list[str]:
        """Every secret's text, so error messages can be scrubbed of them."""
        values = []
        for name in SECRET_FIELDS[self.kind]:
            secret = getattr(self, name)
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        return values


class WebhookChannel(_Channel):
    kind: Literal["webhook"]
    url: str
    secret: SecretStr = Field(min_length=16)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)


class TelegramChannel(_Channel):
    kind: Literal["telegram"]
    url: str = TELEGRAM_API
    token: SecretStr = Field(min_length=1)
    chat_id: str = Field(min_length=1, max_length=128)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value).rstrip("/")

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat_id_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class DiscordChannel(_Channel):
    kind: Literal["discord"]
    url: SecretStr

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        _http_url(value.get_secret_value())
        return value


class SlackChannel(DiscordChannel):
    kind: Literal["slack"]  # type: ignore[assignment]


class EmailChannel(_Channel):
    kind: Literal["email"]
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    from_: str = Field(alias="from", min_length=3)
    to: list[str] = Field(min_length=1, max_length=100)
    security: Literal["starttls", "tls", "none"] = "starttls"
    ca_file: str | None = None

    @field_validator("to", mode="before")
    @classmethod
    def _to_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [address.strip() for address in value.split(",") if address.strip()]
        return value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        bad = [address for address in value if not _EMAIL.match(address)]
        if bad:
            raise ValueError(f"not email addresses: {', '.join(bad)}")
        return value

    @field_validator("from_")
    @classmethod
    def _from_address(cls, value: str) -> str:
        if not _EMAIL.search(value):
            raise ValueError("must hold an email address, e.g. Tradeflow <alerts@example.com>")
        return value


_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+")

ChannelSpec = Annotated[
    WebhookChannel | TelegramChannel | DiscordChannel | SlackChannel | EmailChannel, Field(discriminator="kind")
]
CHANNEL_KINDS = tuple(DEFAULT_RATE_PER_MINUTE)
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "webhook": ("secret",), "telegram": ("token",), "discord": ("url",), "slack": ("url",), "email": ("password",),
}
_CHANNEL = TypeAdapter(ChannelSpec)


class InvalidChannel(ValueError):
    """A channel definition that does not validate; ``errors`` are ``field: reason`` lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def describe_validation_error(error: ValidationError, prefix: str = "") -> list[str]:
    """``field: reason`` per error (a discriminated union's kind tag dropped from the path)."""
    lines = []
    for item in error.errors():
        loc = [str(p) for p in item.get("loc", ())]
        if loc and loc[0] in CHANNEL_KINDS:
            loc = loc[1:]
        if item.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            loc = ["kind"]
        name = ".".join("from" if p == "from_" else p for p in loc)
        message = item.get("msg", "invalid").removeprefix("Value error, ")
        lines.append(f"{prefix}{name}: {message}" if name else f"{prefix}{message}".rstrip(": "))
    return lines


def parse_channel(data: Any) -> ChannelSpec:
    """A channel from JSON-like data; :class:`InvalidChannel` naming each bad field."""
    if not isinstance(data, dict):
        raise InvalidChannel([f"a channel must be a JSON object, got {type(data).__name__}"])
    try:
        return _CHANNEL.validate_python(data)
    except ValidationError as exc:
        raise InvalidChannel(describe_validation_error(exc)) from None


def channel_schema() -> dict[str, Any]:
    """The JSON schema of a channel definition (for the OpenAPI docs)."""
    return _CHANNEL.json_schema(by_alias=True)


def public_fields(channel: ChannelSpec) -> dict[str, Any]:
    """The channel without its secrets (what is stored in clear)."""
    return channel.model_dump(mode="json", by_alias=True, exclude=set(SECRET_FIELDS[channel.kind]),
                              exclude_none=True)


def secret_fields(channel: ChannelSpec) -> dict[str, str]:
    """The channel's secrets in clear (to be encrypted before storage)."""
    values = {}
    for name in SECRET_FIELDS[channel.kind]:
        secret = getattr(channel, name)
        if secret is not None:
            values[name] = secret.get_secret_value()
    return values


def masked(channel: ChannelSpec) -> dict[str, Any]:
    """The channel as the API shows it: each secret replaced by a mask (a URL keeps its host)."""
    shown = public_fields(channel)
    for name, value in secret_fields(channel).items():
        if name == "url":
            parts = urlsplit(value)
            shown[name] = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/{MASK}"
        else:
            shown[name] = MASK
    shown.setdefault("rate_per_minute", channel.messages_per_minute)
    return shown


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value replaced by the mask (error messages may quote URLs)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
