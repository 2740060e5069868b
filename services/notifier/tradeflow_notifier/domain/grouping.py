"""Grouping of identical alerts (as Alertmanager's group_interval): one message per window.

Alerts are *identical* when service, kind, severity and labels are the same (the message text
may differ: it often carries a changing number; the ``suppressed`` label that throttled senders
add is ignored). The first alert of a key opens a window of ``window`` ns from its event time
and is delivered at once; identical alerts inside the window are only counted; when the window
has passed, one summary says how many there were (and shows the last one). An alert after the
window opens the next window. So a storm of 500 identical alerts becomes two messages, and one
more per window while it lasts.

Event time (not arrival time) decides, so a redelivered batch groups the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from types import MappingProxyType

from tradeflow.messages import Alert

from tradeflow_notifier.domain.events import Notification

IGNORED_LABELS = frozenset({"suppressed"})


@dataclass(frozen=True, slots=True)
class AlertGroup:
    """The current window of one group key."""

    key: str
    window_start: int
    window_end: int
    suppressed: int  # identical alerts inside the window not delivered on their own
    last: Alert  # the newest alert of the window
    summarized: bool = False


def group_key(alert: Alert) -> str:
    labels = sorted((k, v) for k, v in alert.labels.items() if k not in IGNORED_LABELS)
    identity = "\x1f".join([alert.service, alert.kind, alert.severity, *(f"{k}={v}" for k, v in labels)])
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Admission:
    deliver: bool  # send this alert now (it opened a window)
    summary: AlertGroup | None  # the closed window to summarize now (it opened the next one)
    group: AlertGroup  # the key's state after this alert


def admit(group: AlertGroup | None, alert: Alert, window_ns: int) -> Admission:
    """What to do with ``alert`` given its key's current window (None: never seen)."""
    if group is None or alert.ts_event >= group.window_end:
        closed = group if group is not None and group.suppressed and not group.summarized else None
        opened = AlertGroup(group_key(alert), alert.ts_event, alert.ts_event + window_ns, 0, alert)
        return Admission(True, closed, opened)
    newest = alert if alert.ts_event >= group.last.ts_event else group.last
    return Admission(False, None, replace(group, suppressed=group.suppressed + 1, last=newest))


def summary_due(group: AlertGroup, now_ns: int) -> bool:
    """A window that has passed with suppressed alerts not yet summarized."""
    return group.suppressed > 0 and not group.summarized and group.window_end <= now_ns


def summary_notification(group: AlertGroup, window_s: float) -> Notification:
    """The message that stands for a window's suppressed alerts (delivered like the alert itself)."""
    last = group.last
    return Notification(
        f"alert-group:{group.key}:{group.window_start}", "alert", last.kind, last.severity, last.ts_event,
        None, last, MappingProxyType(dict(last.labels)), count=group.suppressed, payload={"window_s": window_s})
