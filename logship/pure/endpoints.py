"""Several endpoints: which one the next batch goes to, and when a failed one is tried again. Pure.

Each endpoint has its own health and back-off. ``balance="failover"``
sends to the first endpoint that answers, in the order given, and goes back
to an earlier one as soon as its back-off has passed and it answers again;
``balance="round_robin"`` takes the endpoints that answer in turn. A batch
that fails on one endpoint is tried at once on the next that may be tried,
with the same Idempotency-Key (the caller keeps it); only when every
endpoint is backing off does the sender wait, for the first to come back.

Nothing here reads a clock or touches a network: the sender passes ``now``
(monotonic seconds) and reports outcomes; tested from tables
(``tests/test_endpoints.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from logship.pure.retry import Backoff

Balance = Literal["failover", "round_robin"]


@dataclass
class Endpoint:
    """One endpoint's state."""

    url: str  #: as shown: secrets removed
    state: str = "unknown"  #: "unknown" (not tried yet), "up", "down", "held"
    attempt: int = 0  #: failures in a row: the back-off's exponent
    next_try: float = 0.0  #: monotonic time before which it is not tried
    delivered: int = 0  #: events delivered here
    failures: int = 0  #: requests that failed here (no answer, or one to retry or hold)
    last_error: str | None = None

    def view(self) -> dict[str, Any]:
        """What ``stats()["endpoints"]`` shows of it."""
        return {
            "url": self.url,
            "state": self.state,
            "delivered": self.delivered,
            "failures": self.failures,
            "last_error": self.last_error,
        }


@dataclass
class EndpointSet:
    """The endpoints of one handler, in the order given."""

    endpoints: list[Endpoint]
    balance: Balance = "failover"
    backoff: Backoff = field(default_factory=Backoff)
    _turn: int = 0  # round robin: where the next search starts

    def pick(self, now: float) -> int | None:
        """The endpoint for the next attempt, or None when every one is backing off."""
        n = len(self.endpoints)
        start = self._turn if self.balance == "round_robin" else 0
        for k in range(n):
            i = (start + k) % n
            if self.endpoints[i].next_try <= now:
                if self.balance == "round_robin":
                    self._turn = (i + 1) % n
                return i
        return None

    def until_next(self, now: float) -> float:
        """Seconds until some endpoint may be tried again (0 when one may be now)."""
        return max(0.0, min(e.next_try for e in self.endpoints) - now)

    def any_up(self, now: float) -> bool:
        """Whether some endpoint may take a batch now and did not fail its last attempt."""
        return any(e.next_try <= now and e.state != "down" for e in self.endpoints)

    def succeeded(self, i: int, events: int) -> None:
        """Endpoint ``i`` took ``events`` events."""
        e = self.endpoints[i]
        e.state, e.attempt, e.next_try = "up", 0, 0.0
        e.delivered += events

    def answered(self, i: int) -> None:
        """Endpoint ``i`` answered, though not with a success (a batch rejected for good)."""
        e = self.endpoints[i]
        e.state, e.attempt, e.next_try = "up", 0, 0.0

    def failed(self, i: int, now: float, error: str, retry_after: float | None = None) -> float:
        """Endpoint ``i`` failed an attempt: back off; returns the back-off in seconds."""
        e = self.endpoints[i]
        delay = self.backoff.after(e.attempt, retry_after)
        e.state, e.attempt, e.next_try = "down", e.attempt + 1, now + delay
        e.failures += 1
        e.last_error = error
        return delay

    def held(self, i: int, now: float, error: str) -> None:
        """Endpoint ``i`` answered with a configuration problem (401, 403, 404, a redirect).

        Tried again at the back-off ceiling; the others carry the traffic meanwhile.
        """
        e = self.endpoints[i]
        e.state, e.next_try = "held", now + self.backoff.ceiling
        e.failures += 1
        e.last_error = error

    def views(self) -> list[dict[str, Any]]:
        """Every endpoint's :meth:`Endpoint.view`, in the order given."""
        return [e.view() for e in self.endpoints]
