"""Routes (design.md): which events go to which channel.

A route is ``{"channel", "events", "min_severity"}``: ``events`` among ``order``, ``fill``,
``risk``, ``alert`` and ``*`` (the daily report is the event ``report``, which ``*`` includes),
``min_severity`` one of ``info`` < ``warning`` < ``critical``. Two optional fields narrow it
further (ADR 0016): ``accounts`` (only these accounts' events; events without an account, such
as operational alerts, then never match) and ``mute`` (event types not to send: order statuses
such as ``accepted``, risk kinds such as ``limits_changed``, alert kinds such as
``feed_websocket_recovered``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tradeflow_notifier.domain.channels import CHANNEL_ID_PATTERN, describe_validation_error
from tradeflow_notifier.domain.events import Notification, severity_at_least

RouteEvent = Literal["order", "fill", "risk", "alert", "report", "*"]


class Route(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: str = Field(pattern=CHANNEL_ID_PATTERN)
    events: list[RouteEvent] = Field(default_factory=lambda: ["*"], min_length=1)
    min_severity: Literal["info", "warning", "critical"] = "info"
    accounts: list[str] = Field(default_factory=list, max_length=1000)
    mute: list[str] = Field(default_factory=list, max_length=1000)

    def matches(self, notification: Notification) -> bool:
        if "*" not in self.events and notification.kind not in self.events:
            return False
        if not severity_at_least(notification.severity, self.min_severity):
            return False
        if self.accounts and notification.account_id not in self.accounts:
            return False
        return notification.type not in self.mute


_ROUTES = TypeAdapter(list[Route])


class InvalidRoutes(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def parse_routes(data: Any, known_channels: Iterable[str] | None = None) -> list[Route]:
    """Routes from JSON-like data; :class:`InvalidRoutes` naming ``routes[i].field`` of each error.

    With ``known_channels``, a route naming any other channel is an error too.
    """
    if not isinstance(data, list):
        raise InvalidRoutes([f"routes must be a JSON list, got {type(data).__name__}"])
    try:
        routes = _ROUTES.validate_python(data)
    except ValidationError as exc:
        lines = []
        for line in describe_validation_error(exc):
            index, _, rest = line.partition(".")
            lines.append(f"routes[{index}].{rest}" if index.isdigit() else f"routes: {line}")
        raise InvalidRoutes(lines) from None
    if known_channels is not None:
        known = set(known_channels)
        unknown = [f"routes[{i}].channel: unknown channel {r.channel!r}" for i, r in enumerate(routes)
                   if r.channel not in known]
        if unknown:
            raise InvalidRoutes(unknown)
    return routes


def channels_for(notification: Notification, routes: Sequence[Route], channels: Iterable[str],
                 exclude: Iterable[str] = ()) -> list[str]:
    """The channels ``notification`` goes to: each once, in route order, only existing ones."""
    available = set(channels) - set(exclude)
    chosen: list[str] = []
    for route in routes:
        if route.channel in available and route.channel not in chosen and route.matches(notification):
            chosen.append(route.channel)
    return chosen
