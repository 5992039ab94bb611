"""An event's ``timestamp`` as a number, for protocols that carry time as one. Pure.

Events carry their time as RFC 3339 text in UTC with microseconds
(``2026-11-24T10:00:00.123456Z``, see ``pure.event``). Splunk HEC wants
epoch seconds, Loki epoch nanoseconds: both are the same microseconds,
written differently, so a resent or replayed event keeps its exact time.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICRO = dt.timedelta(microseconds=1)

# RFC 3339 date-time, its zone optional: any number of fraction digits (Python
# 3.10's fromisoformat takes only 3 or 6), "t" or a space between date and time.
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d\d):(\d\d))?"
)


def parse_rfc3339(stamp: str) -> dt.datetime | None:
    """The time ``stamp`` says, to the microsecond; naive when it names no zone; None if no time.

    Digits past the sixth of the fraction are dropped, not rounded.
    """
    m = _RFC3339.fullmatch(stamp)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, z, sign, zh, zm = m.groups()
    zone: dt.tzinfo | None = None
    if z:
        zone = dt.timezone.utc
    elif sign:
        offset = dt.timedelta(hours=int(zh), minutes=int(zm))
        if offset >= dt.timedelta(days=1):
            return None
        zone = dt.timezone(-offset if sign == "-" else offset)
    try:
        return dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=zone,
        )
    except ValueError:  # a month 13, a second 61
        return None


@functools.lru_cache(maxsize=256)
def _second(prefix: str) -> int:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS`` in UTC (events cluster within a second)."""
    return int(dt.datetime.fromisoformat(prefix).replace(tzinfo=dt.timezone.utc).timestamp())


def epoch_micros(stamp: Any) -> int | None:
    """Microseconds since the epoch of an RFC 3339 ``stamp``; None when it is not one.

    The form logship writes is read directly; any other RFC 3339 text with
    a zone (from an event another encoder spilled) goes through ``datetime``.
    """
    if not isinstance(stamp, str):
        return None
    try:
        fraction = stamp[20:26]
        if len(stamp) == 27 and stamp[19] == "." and stamp[26] == "Z" and fraction.isdecimal():
            return _second(stamp[:19]) * 1_000_000 + int(fraction)
    except ValueError:
        return None
    when = parse_rfc3339(stamp)
    if when is None or when.tzinfo is None:
        return None  # not a time, or a local time of an unknown zone: no number is right
    return (when - _EPOCH) // _MICRO
