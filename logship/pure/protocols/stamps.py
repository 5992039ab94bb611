"""An event's ``timestamp`` as a number, for protocols that carry time as one. Pure.

Events carry their time as RFC 3339 text in UTC with microseconds
(``2026-11-24T10:00:00.123456Z``, see ``pure.event``). Splunk HEC wants
epoch seconds, Loki epoch nanoseconds: both are the same microseconds,
written differently, so a resent or replayed event keeps its exact time.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICRO = dt.timedelta(microseconds=1)


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
        when = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None  # a local time of an unknown zone: no number is right
    return (when - _EPOCH) // _MICRO
