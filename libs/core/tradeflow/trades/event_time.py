"""Times as written in files, REST and command options: to integer nanoseconds since the epoch (UTC),
and back (:func:`format_event_time` to the millisecond, :func:`format_time_ns` to the nanosecond);
the time options of commands (:func:`parse_time_option`).

Two forms are accepted (shared/design.md, "Replay file"):

* epoch **milliseconds**, integer or decimal: ``1700000000123`` or ``1700000000123.456789``
  (up to 6 fractional digits, i.e. nanoseconds; no sign, no exponent);
* ISO 8601 **with an offset**: ``2023-11-14T22:13:20.123456789Z``,
  ``2023-11-14 23:13:20+01:00``. Fractional seconds keep up to 9 digits (nanoseconds);
  further digits are dropped.

An ISO time *without* an offset is rejected: the file cannot say which zone it meant, and
guessing UTC would silently shift a local-time export by hours.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)
_EPOCH_MS = re.compile(r"(\d+)(?:\.(\d{1,6}))?")
_OPTION_EPOCH_MS = re.compile(r"\d{1,16}")
_LOOKS_NUMERIC = re.compile(r"[-+]?[\d.]+(?:[eE][-+]?\d+)?")  # numbers that are not plain epoch ms
# The seconds fraction is cut out before datetime.fromisoformat, which keeps only microseconds.
_SECONDS_FRACTION = re.compile(r"(?<=[T ]\d\d:\d\d:\d\d)[.,](\d+)")


class EventTimeError(ValueError):
    """A time that is not epoch milliseconds or ISO 8601 with an offset."""


def parse_event_time_ns(text: str) -> int:
    """``text`` (epoch ms or ISO 8601 with offset) as ns since the epoch; raises EventTimeError."""
    text = text.strip()
    epoch_ms = _EPOCH_MS.fullmatch(text)
    if epoch_ms:
        whole, fraction = epoch_ms.groups()
        ns = int(whole) * NS_PER_MS
        if fraction:
            ns += int(fraction.ljust(6, "0"))
        return ns
    if _LOOKS_NUMERIC.fullmatch(text):
        raise EventTimeError(f"epoch milliseconds must be digits with at most 6 decimals: {text!r}")
    return _parse_iso_ns(text)


def _parse_iso_ns(text: str) -> int:
    fraction_ns = 0
    without_fraction = text
    fraction = _SECONDS_FRACTION.search(text)
    if fraction:
        fraction_ns = int(fraction.group(1)[:9].ljust(9, "0"))
        without_fraction = text[: fraction.start()] + text[fraction.end() :]
    try:
        moment = datetime.fromisoformat(without_fraction)
    except ValueError:
        raise EventTimeError(f"not epoch milliseconds or ISO 8601: {text!r}") from None
    if moment.utcoffset() is None:
        raise EventTimeError(f"ISO time without offset is ambiguous: {text!r} (add 'Z' or '+00:00')")
    whole_seconds = (moment - _EPOCH) // _ONE_SECOND
    return whole_seconds * NS_PER_S + fraction_ns



def parse_time_option(text: str, now_ms: int) -> int:
    """A command's time option (``--since``, ``--until``) as epoch milliseconds: digits (epoch
    ms), ``now``, or ISO 8601.

    Unlike a file's time, an ISO time without an offset (``2024-03-01`` or ``2024-03-01T12:00``)
    is UTC, the platform's time zone: the operator typed it for this platform. Any given offset
    is honoured.
    """
    value = text.strip()
    if value.lower() == "now":
        return now_ms
    if _OPTION_EPOCH_MS.fullmatch(value):
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected ISO 8601 (e.g. 2024-03-01T12:00Z) or epoch milliseconds, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_event_time(ts_ns: int) -> str:
    """``ts_ns`` as ISO 8601 in UTC with milliseconds and a ``Z`` (what files and JSON output print)."""
    whole_ms, _ = divmod(ts_ns, NS_PER_MS)
    moment = _EPOCH + timedelta(milliseconds=whole_ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_time_ns(ns: int) -> str:
    """``ns`` since the epoch as ISO 8601 in UTC with a ``Z`` (design.md: times in REST), the
    fraction of the second to the nanosecond where there is one: ``2023-11-14T22:13:20.123Z``."""
    seconds, fraction_ns = divmod(ns, NS_PER_S)
    text = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if fraction_ns:
        text += "." + f"{fraction_ns:09d}".rstrip("0")
    return text + "Z"
