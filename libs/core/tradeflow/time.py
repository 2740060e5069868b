"""Time conventions of the platform, in one place (shared/design.md, "Data conventions").

Time is UTC. On the wire: integer nanoseconds since the epoch. In REST, files and command
options: ISO 8601 or epoch milliseconds. This module is the one parser and formatter for all
of them, and the one set of conversions and constants; nothing else parses times.

**The one rule for times without an offset**: an ISO 8601 time without an offset
(``2024-03-01``, ``2024-03-01T12:00``) and a naive :class:`~datetime.datetime` are UTC, the
platform's time zone. A given offset is always honoured.

Epoch milliseconds are digits, optionally with up to 6 decimals (``1700000000123.456789``,
i.e. nanoseconds); no sign, no exponent. ISO fractions of a second keep up to 9 digits
(nanoseconds); further digits are dropped. Every conversion is integer arithmetic (no float).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
NS_PER_SECOND = NS_PER_S
MS_PER_S = 1_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ONE_SECOND = timedelta(seconds=1)
_ONE_MICROSECOND = timedelta(microseconds=1)
_EPOCH_MS = re.compile(r"(\d+)(?:\.(\d{1,6}))?")
_LOOKS_NUMERIC = re.compile(r"[-+]?[\d.]+(?:[eE][-+]?\d+)?")  # numbers that are not plain epoch ms
# The seconds fraction is cut out before datetime.fromisoformat, which keeps only microseconds.
_SECONDS_FRACTION = re.compile(r"(?<=[T ]\d\d:\d\d:\d\d)[.,](\d+)")


class TimeFormatError(ValueError):
    """A time that is neither epoch milliseconds nor ISO 8601; the text quotes it."""


def parse_time_ns(text: str) -> int:
    """``text`` (epoch ms or ISO 8601; no offset = UTC) as ns since the epoch; TimeFormatError otherwise."""
    text = text.strip()
    epoch_ms = _EPOCH_MS.fullmatch(text)
    if epoch_ms:
        whole, fraction = epoch_ms.groups()
        ns = int(whole) * NS_PER_MS
        if fraction:
            ns += int(fraction.ljust(6, "0"))
        return ns
    if _LOOKS_NUMERIC.fullmatch(text):
        raise TimeFormatError(f"epoch milliseconds must be digits with at most 6 decimals (or give ISO 8601): "
                              f"{text!r}")
    fraction_ns = 0
    without_fraction = text
    fraction = _SECONDS_FRACTION.search(text)
    if fraction:
        fraction_ns = int(fraction.group(1)[:9].ljust(9, "0"))
        without_fraction = text[: fraction.start()] + text[fraction.end() :]
    try:
        moment = datetime.fromisoformat(without_fraction)
    except ValueError:
        raise TimeFormatError(f"expected ISO 8601 (e.g. 2024-03-01T12:00Z) or epoch milliseconds, got {text!r}") from None
    return datetime_to_ns(moment) + fraction_ns


def parse_time_ms(text: str) -> int:
    """:func:`parse_time_ns` in whole epoch milliseconds (the fraction of a millisecond is dropped)."""
    return parse_time_ns(text) // NS_PER_MS


def parse_time_option(text: str, now_ms: int) -> int:
    """A command's time option (``--since``, ``--until``) as epoch milliseconds: ``now`` (``now_ms``)
    or what :func:`parse_time_ns` reads. TimeFormatError (a ValueError) otherwise."""
    value = text.strip()
    if value.lower() == "now":
        return now_ms
    return parse_time_ms(value)


def parse_datetime(text: str) -> datetime:
    """:func:`parse_time_ns` as an aware UTC datetime (to the microsecond)."""
    return ns_to_datetime(parse_time_ns(text))


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is UTC (the one rule)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def datetime_to_ns(moment: datetime) -> int:
    """Epoch nanoseconds of ``moment``, exactly (a naive datetime is UTC)."""
    return (as_utc(moment) - EPOCH) // _ONE_MICROSECOND * NS_PER_US


def ns_to_datetime(ts_ns: int) -> datetime:
    """The aware UTC datetime of ``ts_ns`` (to the microsecond: the sub-microsecond part is dropped)."""
    return EPOCH + timedelta(microseconds=ts_ns // NS_PER_US)


def datetime_to_ms(moment: datetime) -> int:
    """Epoch milliseconds of ``moment`` (floored; a naive datetime is UTC)."""
    return datetime_to_ns(moment) // NS_PER_MS


def ms_to_datetime(ts_ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ts_ms)


def ms_to_ns(ts_ms: int) -> int:
    return ts_ms * NS_PER_MS


def ns_to_ms(ts_ns: int) -> int:
    """Whole milliseconds (floored, also before the epoch)."""
    return ts_ns // NS_PER_MS


def format_time_ms(ts_ns: int) -> str:
    """ISO 8601 in UTC to the millisecond with a ``Z``: ``2023-11-14T22:13:20.123Z`` (files, JSON output)."""
    moment = EPOCH + timedelta(milliseconds=ts_ns // NS_PER_MS)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_time_ns(ts_ns: int) -> str:
    """ISO 8601 in UTC with a ``Z`` (REST), the fraction of the second to the nanosecond where
    there is one: ``2023-11-14T22:13:20.123Z``, ``2023-11-14T22:13:20Z``."""
    seconds, fraction_ns = divmod(ts_ns, NS_PER_S)
    text = (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if fraction_ns:
        text += "." + f"{fraction_ns:09d}".rstrip("0")
    return text + "Z"


def format_datetime(moment: datetime) -> str:
    """``moment`` as ISO 8601 in UTC with a ``Z`` (to the microsecond where there is one)."""
    return as_utc(moment).isoformat().replace("+00:00", "Z")
