"""Rendering: a notification becomes the text (or JSON) one channel kind sends.

Two steps. A *template per event kind* (order, fill, risk, alert, report, test) turns the
notification into neutral :class:`Content` (a title and ``label: value`` lines), with amounts
exact (Decimal text, never floats) and times in the channel's time zone. A *formatter per
channel kind* turns that into the channel's format with its escaping and length limit:
Telegram HTML (4,096 characters), Discord markdown (2,000), Slack mrkdwn, a plain-text email
with a subject, or the webhook's JSON document (the event's fields plus the text).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from tradeflow.messages import Alert, Fill, OrderEvent, RiskEvent
from tradeflow.time import NS_PER_S, ns_to_datetime
from tradeflow_trading.money import mul
from tradeflow_trading.positions import split_symbol

from tradeflow_notifier.domain.daily_report import DailyReport
from tradeflow_notifier.domain.events import Notification, UnrenderableEvent

TELEGRAM_LIMIT = 4096
DISCORD_LIMIT = 2000
SLACK_LIMIT = 3000  # Slack shows longer texts collapsed; a notification should fit at a glance
EMAIL_SUBJECT_LIMIT = 200
MORE = "…"
NS = NS_PER_S


@dataclass(frozen=True, slots=True)
class Content:
    title: str
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rendered:
    """What a sender sends: ``body`` (text or JSON) and, for email, ``title`` as the subject."""

    title: str
    body: str


# --- values ---------------------------------------------------------------------------------

def amount(value: Decimal) -> str:
    """An exact decimal as people write it: no exponent, no trailing zeros (0.00000001, 50000)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def signed(value: Decimal) -> str:
    return ("+" if value > 0 else "") + amount(value)


def moment(ts_ns: int) -> datetime:
    return ns_to_datetime(ts_ns)


def when(ts_ns: int, zone: ZoneInfo) -> str:
    """``2026-03-02 11:00:00 CET``: the time in the reader's zone, to the second."""
    local = moment(ts_ns).astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or local.strftime("%z"))


def iso_utc(ts_ns: int) -> str:
    """ISO 8601 in UTC with milliseconds (webhook payloads)."""
    return moment(ts_ns).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- templates per event kind ---------------------------------------------------------------

def _fill(n: Notification, zone: ZoneInfo) -> Content:
    fill: Fill = n.message
    try:
        quote = split_symbol(fill.symbol)[1]
    except ValueError as exc:
        raise UnrenderableEvent(f"fill {fill.fill_id}: {exc}") from None
    lines = [f"Account: {fill.account_id}", f"Exchange: {fill.exchange}", f"Order: {fill.client_order_id}",
             f"Notional: {amount(mul(fill.quantity, fill.price))} {quote}",
             f"Fee: {amount(fill.fee)} {fill.fee_currency}"]
    if fill.liquidity != "unknown":
        lines.append(f"Liquidity: {fill.liquidity}")
    if fill.strategy_id:
        lines.append(f"Strategy: {fill.strategy_id}")
    lines.append(f"Time: {when(fill.ts_event, zone)}")
    return Content(f"Fill: {fill.side.upper()} {amount(fill.quantity)} {fill.symbol} @ {amount(fill.price)}",
                   tuple(lines))


def _order(n: Notification, zone: ZoneInfo) -> Content:
    event: OrderEvent = n.message
    what = " ".join(p for p in (event.side.upper() if event.side else "",
                                amount(event.quantity) if event.quantity is not None else "", event.symbol) if p)
    lines = [f"Account: {event.account_id}", f"Exchange: {event.exchange}", f"Order: {event.client_order_id}"]
    if event.filled_quantity:
        total = f" of {amount(event.quantity)}" if event.quantity is not None else ""
        lines.append(f"Filled: {amount(event.filled_quantity)}{total}")
    if event.average_price is not None:
        lines.append(f"Average price: {amount(event.average_price)}")
    if event.reason:
        lines.append(f"Reason: {event.reason}")
    if event.strategy_id:
        lines.append(f"Strategy: {event.strategy_id}")
    lines.append(f"Time: {when(event.ts_event, zone)}")
    return Content(f"Order {event.status.replace('_', ' ')}: {what}", tuple(lines))


def _risk(n: Notification, zone: ZoneInfo) -> Content:
    event: RiskEvent = n.message
    lines = [f"Account: {event.account_id}"]
    if event.message:
        lines.append(event.message)
    if event.state:
        lines.append(f"State: {event.state}")
    if event.client_order_id:
        lines.append(f"Order: {event.client_order_id}")
    lines.extend(f"{key}: {value}" for key, value in sorted(event.details.items()))
    lines.append(f"Time: {when(event.ts_event, zone)}")
    return Content(f"[{event.severity.upper()}] Risk {event.kind.replace('_', ' ')}: {event.reason}", tuple(lines))


def _alert(n: Notification, zone: ZoneInfo) -> Content:
    alert: Alert = n.message
    title = f"[{alert.severity.upper()}] {alert.service}: {alert.kind}"
    if n.count > 1:
        window = n.payload.get("window_s") if isinstance(n.payload, dict) else None
        within = f" within {window:g}s" if window else ""
        lines = [f"{n.count} more alerts like this{within}; the last one:", alert.message]
        title += f" (x{n.count})"
    else:
        lines = [alert.message]
    lines.extend(f"{key}: {value}" for key, value in sorted(alert.labels.items()))
    lines.append(f"Time: {when(alert.ts_event, zone)}")
    return Content(title, tuple(lines))


def _report(n: Notification, zone: ZoneInfo) -> Content:
    report: DailyReport = n.payload
    lines = [f"Period: {when(report.period_start_ns, zone)} to {when(report.period_end_ns, zone)}"]
    if not report.pnl:
        lines.append("P&L: no fills")
    for pnl in report.pnl:
        lines.append(f"P&L {pnl.currency}: {signed(pnl.net)} (realized {signed(pnl.realized)}, "
                     f"fees {amount(pnl.fees)})")
        lines.append(f"Max drawdown {pnl.currency}: {amount(pnl.max_drawdown)}")
    rate = "n/a" if report.win_rate is None else f"{amount((report.win_rate * 100).quantize(Decimal('0.1')))}%"
    lines.append(f"Trades: {report.trades} fills, {report.closing_trades} closing: {report.wins} won, "
                 f"{report.losses} lost, win rate {rate}")
    lines.append("Orders: " + ", ".join(f"{status} {count}" for status, count in report.orders.items()))
    if report.open_positions:
        lines.append("Open positions:")
        lines.extend(f"  {p.symbol} ({p.exchange}) {p.side} {amount(p.quantity)} @ {amount(p.average_price)}"
                     for p in report.open_positions)
    else:
        lines.append("Open positions: none")
    day = moment(report.period_start_ns).astimezone(zone).strftime("%Y-%m-%d")
    return Content(f"Daily report {report.account_id} {day}", tuple(lines))


def _test(n: Notification, zone: ZoneInfo) -> Content:
    return Content("Tradeflow test message",
                   (f"Channel {n.payload} is set up: this message came through it.", f"Time: {when(n.ts_event, zone)}"))


TEMPLATES: dict[str, Callable[[Notification, ZoneInfo], Content]] = {
    "fill": _fill, "order": _order, "risk": _risk, "alert": _alert, "report": _report, "test": _test,
}


def content(notification: Notification, zone: ZoneInfo) -> Content:
    return TEMPLATES[notification.kind](notification, zone)


# --- formatters per channel kind ------------------------------------------------------------

def _fit(head: str, lines: list[str], escape: Callable[[str], str], limit: int) -> str:
    """``head`` and the escaped lines that fit in ``limit`` characters; a cut line ends with '…'.

    Lines are cut as plain text and escaped again, so an escape sequence is never cut in two.
    """
    text = head
    for index, line in enumerate(lines):
        piece = "\n" + escape(line)
        reserve = len("\n" + MORE) if index < len(lines) - 1 else 0
        if len(text) + len(piece) + reserve <= limit:
            text += piece
            continue
        room = limit - len(text) - 1 - len(MORE)
        keep = min(len(line), max(room, 0))
        while keep > 0:
            escaped = len(escape(line[:keep]))
            if escaped <= room:
                break
            keep = min(keep - 1, keep * room // escaped)
        return text + "\n" + escape(line[:keep]) + MORE
    return text


_DISCORD_SPECIAL = re.compile(r"([\\*_~`|])")
_DISCORD_LINE_START = re.compile(r"^([>#-])")


def _discord_escape(text: str) -> str:
    return _DISCORD_LINE_START.sub(r"\\\1", _DISCORD_SPECIAL.sub(r"\\\1", text))


def _telegram_escape(text: str) -> str:
    return html.escape(text, quote=False)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _webhook_json(notification: Notification, text: Content) -> str:
    data: Any
    if notification.message is not None:
        data = msgspec.to_builtins(notification.message)
    elif notification.payload is not None:
        data = msgspec.to_builtins(notification.payload)
    else:
        data = None
    document = {
        "id": notification.event_id, "kind": notification.kind, "type": notification.type,
        "severity": notification.severity, "account_id": notification.account_id,
        "ts_event": iso_utc(notification.ts_event), "count": notification.count,
        "title": text.title, "text": "\n".join(text.lines), "data": data,
    }
    return msgspec.json.encode(document).decode()


def render(notification: Notification, channel_kind: str, zone: ZoneInfo) -> Rendered:
    """The notification as ``channel_kind`` sends it; :class:`UnrenderableEvent` if it cannot be."""
    try:
        text = content(notification, zone)
    except UnrenderableEvent:
        raise
    except (ArithmeticError, ValueError, OverflowError, AttributeError, KeyError) as exc:
        raise UnrenderableEvent(f"{notification.event_id}: {type(exc).__name__}: {exc}") from None
    lines = list(text.lines)
    if channel_kind == "telegram":
        body = _fit(f"<b>{_telegram_escape(text.title)}</b>", lines, _telegram_escape, TELEGRAM_LIMIT)
        return Rendered("", body)
    if channel_kind == "discord":
        body = _fit(f"**{_discord_escape(text.title)}**", lines, _discord_escape, DISCORD_LIMIT)
        return Rendered("", body)
    if channel_kind == "slack":
        return Rendered("", _fit(f"*{_slack_escape(text.title)}*", lines, _slack_escape, SLACK_LIMIT))
    if channel_kind == "email":
        subject = text.title if len(text.title) <= EMAIL_SUBJECT_LIMIT else text.title[:EMAIL_SUBJECT_LIMIT - 1] + MORE
        return Rendered(subject, "\n".join(lines) + "\n")
    if channel_kind == "webhook":
        return Rendered(text.title, _webhook_json(notification, text))
    raise ValueError(f"unknown channel kind {channel_kind!r}")
