"""The protocol seam: how events become request bodies, and what an answer means. Pure.

Shipping is three parts, each owned by one module:

- an **encoder** (:class:`Encoder`): ring items (or event dicts) to wire
  units, one per event; units joined into a body (compressed when the
  protocol compresses); a body taken apart again into units and events;
- a **transport** (:class:`Transport`: ``logship.worker.transport`` for
  HTTP, ``logship.worker.stream`` for a stream socket): moves a body and its
  headers to the endpoint and brings back an :class:`Answer`; it knows
  nothing of events;
- an **answer reader** (:class:`AnswerReader`): an :class:`Answer` in, an
  :class:`Outcome` out: one :class:`Verdict` for the whole batch, or one
  per event for protocols whose answers judge each event.

The worker owns time, retries, the spill and the accounting for all of
them: a new protocol adds an encoder and a reader (and a transport when it
is not HTTP) and touches neither the pump nor the spill.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from logship.pure.retry import Verdict

Event = dict[str, Any]

__all__ = [
    "Answer",
    "AnswerReader",
    "Encoder",
    "Event",
    "Outcome",
    "Request",
    "Transport",
    "Verdict",
    "WireProtocol",
]


@dataclass(frozen=True)
class Request:
    """What a transport sends for one batch."""

    body: bytes  #: as the encoder made it
    headers: Mapping[str, str]  #: the encoder's (``Content-Type``, ``Content-Encoding``)
    key: str  #: the batch's Idempotency-Key: the same on every retry, and after a replay
    count: int  #: events in the body


@dataclass(frozen=True)
class Answer:
    """What came back for one request: a status, or an error with no status."""

    status: int | None
    retry_after: str | None = None
    location: str | None = None
    #: The answer's text, 2xx too (bounded). A refusal's is scrubbed of the secrets sent by
    #: the transport; a 2xx's is as sent, for readers to parse: scrub what is shown of it.
    body: str = ""
    error: str | None = None  # set when no answer came back
    cert_days_left: float | None = None  # of the server's certificate, checked now and then
    kind: str | None = None  # why no answer came back: see ``pure.diagnosis``
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What an answer means for a batch of ``count`` events.

    ``parts`` is empty when ``verdict`` holds for the whole batch; otherwise
    it lists ``(verdict, indices)`` groups that cover every event once, and
    ``verdict`` is the one that decides how long to wait (the worst).
    ``rejected``, with ``DELIVERED``: how many of the batch's events the
    server refused without saying which (OTLP's ``partialSuccess``).
    ``notes``, when given, holds one ``(kind, reason)`` per part: what the
    answer said of that group alone (see :meth:`part`).
    """

    verdict: Verdict
    parts: tuple[tuple[Verdict, tuple[int, ...]], ...] = ()
    retry_after: float | None = None  # seconds the server asked for
    reason: str = ""  # the server's words, for warnings and dead letters
    kind: str = ""  # a short name for stats()["last_error_kind"]: "http-503", "refused", …
    rejected: int = 0
    notes: tuple[tuple[str, str], ...] = ()

    def status(self, answered: int | None = None) -> int:
        """The HTTP status this outcome is about: its kind's (``http-403``), else ``answered``.

        They differ when a 2xx answer judges its events one by one: a bulk
        answer of 200 whose items were all refused with 403 is about a 403.
        0 when there is neither.
        """
        if self.kind.startswith("http-") and self.kind[5:].isdigit():
            return int(self.kind[5:])
        return answered or 0

    def part(self, i: int) -> Outcome:
        """This outcome as it concerns part ``i``: with that part's own kind and reason, if noted.

        A rejected group's dead letter then keeps the reason the server gave
        for its events, not a summary of the whole answer.
        """
        if i >= len(self.notes):
            return self
        kind, reason = self.notes[i]
        return replace(self, kind=kind, reason=reason)


class Encoder(Protocol):
    """Events to wire units and bodies, and back."""

    #: Recorded with every spilled batch: the encoder that can read its body.
    name: str
    compress: bool
    per_event_overhead: int
    body_overhead: int

    def units(self, items: Sequence[Any]) -> list[bytes]:
        """One unit per ring item (``logship.ring.Item``), never raising."""
        ...

    def unit(self, event: Event) -> bytes:
        """One event dict's unit, never raising (values it cannot carry are replaced)."""
        ...

    def body(self, units: Sequence[bytes]) -> tuple[bytes, int]:
        """The body for ``units``, and its size before compression."""
        ...

    def units_of(self, body: bytes) -> list[bytes]:
        """The units a body of this encoder holds (undoing compression)."""
        ...

    def events_of(self, body: bytes) -> list[Event]:
        """The events a body of this encoder holds, as dicts (for dead letters)."""
        ...

    def headers(self) -> dict[str, str]:
        """The headers that say what a body is (``Content-Type``, ``Content-Encoding``)."""
        ...


class Transport(Protocol):
    """Moves a request to the endpoint and brings back its answer (in ``logship.worker``)."""

    def send(self, request: Request) -> Answer:
        """Send one batch; every failure comes back as an :class:`Answer`, never raised."""
        ...

    def close(self) -> None:
        """Close the connections it keeps; a ``send`` still running may then fail."""
        ...

    def scrub(self, text: str) -> str:
        """``text`` without any secret this transport sends, each replaced by a mask."""
        ...


class AnswerReader(Protocol):
    """An answer to what it means for the batch."""

    def read(self, answer: Answer, count: int) -> Outcome:
        """The outcome of ``answer`` for a batch of ``count`` events."""
        ...


class WireProtocol(Protocol):
    """How the worker assembles one protocol: an encoder, a reader, and which transport."""

    #: The value of the ``protocol`` option.
    name: str
    #: The path a URL without one gets (``/v1/logs``); "" when the URL is used as given.
    default_path: str
    #: How the token is sent: ``Authorization: <auth> <token>``; "" when it is not a header
    #: (``forward`` uses it as the handshake's shared key).
    auth: str
    #: ``"http"``, or ``"stream"`` (msgpack over TCP, TLS or a Unix socket).
    transport: str

    def encoder(self, opts: Any, builder: Any) -> Encoder:
        """The encoder for ``opts`` (``builder``: the worker's ``EventBuilder``)."""
        ...

    def reader(self, opts: Any) -> AnswerReader:
        """The answer reader for ``opts``."""
        ...
