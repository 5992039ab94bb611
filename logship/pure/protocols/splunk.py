"""``protocol="splunk"``: Splunk HTTP Event Collector (HEC) event envelopes. Pure.

A body is one JSON envelope per event, concatenated with nothing between
them (HEC reads a request as a stream of JSON objects, not an array)::

    {"time":1764000000.123456,"host":"web-1","source":"app","sourcetype":"_json","event":{…}}

``time`` is the event's ``timestamp`` in epoch seconds with its
microseconds, ``host`` its ``hostname``, ``source`` the ``source`` option
or else the event's logger, ``sourcetype`` the ``sourcetype`` option or
else ``_json``, ``index`` the ``index`` option (left out without it: the
token's default index), and ``event`` the whole event.

HEC answers with JSON: ``{"text": "Success", "code": 0}``, or a status
code of its own with ``text``. A request whose events HEC reads one by one
may fail part-way: ``"invalid-event-number": N`` then says that the events
before N were taken and event N was not. :class:`HecReader` turns that into
one verdict per event: the events before N delivered, event N rejected
(dead-lettered), the rest sent again. Otherwise the HTTP status decides as
for ``http`` (503 "Server is busy", code 9, is retried honouring
``Retry-After``; 401 and 403, a wrong token, are held).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from logship.pure.encoding import Encoding
from logship.pure.event import EventBuilder
from logship.pure.protocols import Answer, Event, Outcome
from logship.pure.protocols.http import StatusReader
from logship.pure.protocols.jsonbody import EventJsonEncoder
from logship.pure.protocols.stamps import epoch_micros
from logship.pure.retry import Verdict

#: The standard path of HEC's JSON event endpoint.
EVENT_PATH = "/services/collector/event"
#: The sourcetype of events whose ``sourcetype`` option is unset: Splunk's JSON one.
DEFAULT_SOURCETYPE = "_json"

#: HEC's ``code`` for "Incorrect index": the token may not write to the index every
#: event of a batch names (they all carry the ``index`` option), so none after N can pass.
INCORRECT_INDEX = 7

_JSON = Encoding("json")
_decoder = json.JSONDecoder()


class SplunkEncoder(EventJsonEncoder):
    """Events as concatenated HEC envelopes, gzipped when ``compress``."""

    name = "splunk"
    per_event_overhead = 0  # envelopes follow one another with nothing between
    body_overhead = 0

    def __init__(
        self,
        compress: bool,
        builder: EventBuilder | None = None,
        source: str | None = None,
        sourcetype: str | None = None,
        index: str | None = None,
    ) -> None:
        super().__init__(compress, builder)
        self._source = f'"source":{_quote(source)},' if source else None
        # The fields every envelope of this handler shares, between its source and its event.
        tail = f'"sourcetype":{_quote(sourcetype or DEFAULT_SOURCETYPE)},'
        if index:
            tail += f'"index":{_quote(index)},'
        self._tail = f'{tail}"event":'.encode("ascii")

    def unit(self, event: Event) -> bytes:
        """One event's envelope; values JSON cannot carry are replaced, never raised."""
        head = "{"
        micros = epoch_micros(event.get("timestamp"))
        if micros is not None and micros >= 0:  # else HEC stamps it with its arrival
            seconds, fraction = divmod(micros, 1_000_000)
            head += f'"time":{seconds}.{fraction:06d},'
        host = event.get("hostname")
        if isinstance(host, str) and host:
            head += f'"host":{_quote(host)},'
        if self._source is not None:
            head += self._source
        elif isinstance(logger := event.get("logger"), str) and logger:
            head += f'"source":{_quote(logger)},'
        return head.encode("ascii") + self._tail + _JSON.encode_event(event) + b"}"

    def body(self, units: Sequence[bytes]) -> tuple[bytes, int]:
        """The envelopes one after another, gzipped when asked."""
        return self.finished(b"".join(units))

    def units_of(self, body: bytes) -> list[bytes]:
        """The envelopes of a body this encoder made, in order, exactly as they were sent."""
        return [unit for unit, _envelope in _envelopes(self.raw(body))]

    def events_of(self, body: bytes) -> list[Event]:
        """The events of a body this encoder made."""
        return [_event_of(envelope) for _unit, envelope in _envelopes(self.raw(body))]


def _envelopes(raw: bytes) -> list[tuple[bytes, Any]]:
    """Each JSON object of a concatenation, as its bytes and decoded."""
    text = raw.decode("utf-8")
    out: list[tuple[bytes, Any]] = []
    at, end = 0, len(text)
    while True:
        while at < end and text[at].isspace():
            at += 1
        if at == end:
            return out
        envelope, stop = _decoder.raw_decode(text, at)
        out.append((text[at:stop].encode("utf-8"), envelope))
        at = stop


def _event_of(envelope: Any) -> Event:
    """The event an envelope carries (a bare string event becomes its message)."""
    event = envelope.get("event") if isinstance(envelope, dict) else envelope
    if isinstance(event, dict):
        return event
    return {"message": event if isinstance(event, str) else json.dumps(event)}


class HecReader:
    """HEC's answer: the HTTP status, and ``invalid-event-number`` when HEC gives one."""

    def __init__(self) -> None:
        self._status = StatusReader()

    def read(self, answer: Answer, count: int) -> Outcome:
        """The outcome of ``answer`` for a batch of ``count`` envelopes."""
        outcome = self._status.read(answer, count)
        if outcome.verdict not in (Verdict.REJECT, Verdict.RETRY) or answer.status is None:
            return outcome
        code, failed = hec_error(answer.body)
        if failed is None or not 0 <= failed < count:
            return outcome
        taken = tuple(range(failed))
        if outcome.verdict is Verdict.RETRY:  # "Server is busy" part-way: the rest again
            groups = [(Verdict.DELIVERED, taken), (Verdict.RETRY, tuple(range(failed, count)))]
        elif code == INCORRECT_INDEX:
            groups = [(Verdict.DELIVERED, taken), (Verdict.REJECT, tuple(range(failed, count)))]
        else:
            groups = [
                (Verdict.DELIVERED, taken),
                (Verdict.REJECT, (failed,)),
                (Verdict.RETRY, tuple(range(failed + 1, count))),
            ]
        parts = tuple((verdict, indices) for verdict, indices in groups if indices)
        if len(parts) == 1:
            return outcome  # the whole batch shares one verdict: the status said it
        worst = Verdict.RETRY if any(v is Verdict.RETRY for v, _i in parts) else Verdict.REJECT
        return Outcome(
            worst, parts, retry_after=outcome.retry_after, reason=outcome.reason, kind=outcome.kind
        )


def hec_error(text: str) -> tuple[int | None, int | None]:
    """HEC's ``code`` and ``invalid-event-number`` in an answer's body (None when absent).

    Absent too when the body cannot be read: the status then decides for the
    whole batch, as for an answer that names no event.
    """
    try:
        answer = json.loads(text)
    except Exception:  # not JSON, or nested past the parser's depth (RecursionError)
        return None, None
    if not isinstance(answer, dict):
        return None, None
    code, failed = answer.get("code"), answer.get("invalid-event-number")
    return (
        code if type(code) is int else None,
        failed if type(failed) is int else None,
    )


class Splunk:
    """``protocol="splunk"``: HEC envelopes to ``/services/collector/event``, ``Splunk`` token."""

    name = "splunk"
    default_path = EVENT_PATH
    auth = "Splunk"
    transport = "http"

    def encoder(self, opts: Any, builder: EventBuilder | None) -> SplunkEncoder:
        """An encoder with the handler's ``source``, ``sourcetype`` and ``index``."""
        return SplunkEncoder(opts.compress, builder, opts.source, opts.sourcetype, opts.index)

    def reader(self, opts: Any) -> HecReader:
        """The status, and HEC's ``invalid-event-number``."""
        return HecReader()


SPLUNK = Splunk()

#: The encoders of this module by the name they record with a spilled batch.
DECODERS: dict[str, Callable[[bool], SplunkEncoder]] = {SplunkEncoder.name: SplunkEncoder}
