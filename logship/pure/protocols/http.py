"""``protocol="http"``: a JSON array, NDJSON or msgpack body, judged by its HTTP status. Pure.

The encoder writes JSON events straight from ring items
(:class:`~logship.pure.eventjson.JsonEventWriter`) and msgpack events
through the event dicts; the reader maps a status to a verdict as SPEC
section 4 says (:func:`~logship.pure.retry.classify`), honouring
``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from logship.pure.encoding import CONTENT_TYPES, Encoding, gzip_compress, gzip_decompress
from logship.pure.event import EventBuilder, encode_items
from logship.pure.eventjson import JsonEventWriter
from logship.pure.protocols import Answer, Event, Outcome
from logship.pure.retry import Verdict, classify, parse_retry_after


class HttpEncoder:
    """Events as one body of ``encoding`` (``"json"``, ``"ndjson"`` or ``"msgpack"``)."""

    def __init__(self, encoding: str, compress: bool, builder: EventBuilder | None = None) -> None:
        self.name = encoding
        self.compress = compress
        self._encoding = Encoding(encoding)
        self.per_event_overhead = self._encoding.per_event_overhead
        self.body_overhead = self._encoding.body_overhead
        self._headers = {"Content-Type": CONTENT_TYPES[encoding]}
        if compress:
            self._headers["Content-Encoding"] = "gzip"
        self._builder = builder
        self._write: Callable[[Sequence[Any]], list[bytes]] | None = None
        if builder is not None and encoding in ("json", "ndjson"):
            self._write = JsonEventWriter(builder, self._encoding.encode_event).encode_many

    def units(self, items: Sequence[Any]) -> list[bytes]:
        """One encoded event per ring item (the JSON writer's fast path for JSON)."""
        if self._write is not None:
            return self._write(items)
        return encode_items(self._encoding.encode_event, self._builder, items)

    def unit(self, event: Event) -> bytes:
        """One event dict, encoded."""
        return self._encoding.encode_event(event)

    def body(self, units: Sequence[bytes]) -> tuple[bytes, int]:
        """The units joined (a JSON array, lines, or a msgpack array), gzipped when asked."""
        raw = self._encoding.join(units)
        return (gzip_compress(raw) if self.compress else raw), len(raw)

    def events_of(self, body: bytes) -> list[Event]:
        """The events of a body this encoder made."""
        raw = gzip_decompress(body) if self.compress else body
        return self._encoding.decode(raw)

    def units_of(self, body: bytes) -> list[bytes]:
        """The units of a body this encoder made (decoded and encoded again: the same bytes)."""
        return [self.unit(e) for e in self.events_of(body)]

    def headers(self) -> dict[str, str]:
        """``Content-Type``, and ``Content-Encoding: gzip`` when compressing."""
        return dict(self._headers)


class StatusReader:
    """An HTTP status decides for the whole batch (SPEC section 4)."""

    def read(self, answer: Answer, count: int) -> Outcome:
        """The outcome of ``answer``; no answer at all is retried."""
        if answer.status is None:
            return Outcome(
                Verdict.RETRY, reason=answer.error or "no answer", kind=answer.kind or "connection"
            )
        return Outcome(
            classify(answer.status),
            retry_after=parse_retry_after(answer.retry_after),
            reason=answer.body[:500],  # quoted in warnings and dead letters: bounded
            kind=f"http-{answer.status}",
        )


class Http:
    """``protocol="http"``: the body of ``encoding``, the token as ``Bearer``."""

    name = "http"
    default_path = ""
    auth = "Bearer"
    transport = "http"

    def encoder(self, opts: Any, builder: EventBuilder | None) -> HttpEncoder:
        """An encoder of the handler's ``encoding``, gzipped when ``compress``."""
        return HttpEncoder(opts.encoding, opts.compress, builder)

    def reader(self, opts: Any) -> StatusReader:
        """The status decides."""
        return StatusReader()


HTTP = Http()


def _decoder(name: str) -> Callable[[bool], HttpEncoder]:
    def make(compressed: bool) -> HttpEncoder:
        return HttpEncoder(name, compressed)

    return make


#: The encoders of this module by the name they record with a spilled batch.
DECODERS: dict[str, Callable[[bool], HttpEncoder]] = {
    name: _decoder(name) for name in CONTENT_TYPES
}
