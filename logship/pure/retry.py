"""What an HTTP answer means for a batch, and how long to wait before trying again.

Pure functions and a small immutable policy, testable without a network.
"""

from __future__ import annotations

import email.utils
import enum
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass


class Verdict(enum.Enum):
    """What the sender does with a batch after an answer (or a failure)."""

    DELIVERED = "delivered"  # 2xx
    SPLIT = "split"  # 413: halve the batch and send each half
    RETRY = "retry"  # transient: back off and send the same batch again
    HOLD = "hold"  # configuration problem: keep the batch, retry at the ceiling, warn
    REJECT = "reject"  # the server will never take this batch: dead-letter it


_HOLD_HINTS = {
    401: "authentication was refused: check the token (token, token_file, LOGSHIP_TOKEN)",
    403: "access is forbidden: check the token's permissions for this endpoint",
    404: "the endpoint path was not found: check the URL's path",
}


def classify(status: int) -> Verdict:
    """Map an HTTP status to a verdict, following SPEC section 4."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 413:
        return Verdict.SPLIT
    if status in (408, 429) or status >= 500:
        return Verdict.RETRY
    if status in _HOLD_HINTS or 300 <= status < 400:
        # A redirect is held too: following it would turn the POST into a GET
        # or send logs somewhere the user did not name.
        return Verdict.HOLD
    if 400 <= status < 500:
        return Verdict.REJECT
    return Verdict.RETRY  # 1xx or a status no server should send


def hold_hint(status: int, location: str | None = None) -> str:
    """The fix to try for a held status."""
    if 300 <= status < 400:
        where = f" to {location}" if location else ""
        return f"the endpoint redirects{where}: set url to the final address"
    return _HOLD_HINTS.get(status, f"the server answered {status}")


#: Retry-After values beyond this are treated as nonsense and capped.
RETRY_AFTER_CAP = 300.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    Returns ``None`` for a missing or unreadable value (``nan``, ``inf``, a
    date no calendar holds), so the caller falls back to its own back-off;
    never negative. A large value is returned as it is: the caller caps it.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            if when.tzinfo is None:
                return None
            seconds = when.timestamp() - (time.time() if now is None else now)
        except Exception:
            # The header is the server's to write: a year past what datetime
            # holds raises OverflowError, and the date parser has raised
            # TypeError, IndexError and ValueError for other nonsense. An
            # unreadable value must cost the server its say, never the batch.
            return None
    if not math.isfinite(seconds):  # nan, inf, or digits past what a float holds
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with equal jitter, capped at ``ceiling`` seconds."""

    ceiling: float = 60.0
    base: float = 0.5

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        cap = min(self.ceiling, self.base * 2.0 ** min(attempt, 62))
        # Half fixed, half random: retries from many processes spread out,
        # yet never collapse to an immediate retry.
        return cap / 2 + rand() * cap / 2

    def after(self, attempt: int, retry_after: float | None) -> float:
        """The wait for a retry, honouring the server's ``Retry-After`` when it gave one.

        Never less than the back-off itself: ``Retry-After: 0`` from an
        overloaded server would otherwise make every client retry at once.
        """
        delay = self.delay(attempt)
        if retry_after is not None:
            return max(delay, min(retry_after, max(self.ceiling, RETRY_AFTER_CAP)))
        return delay
