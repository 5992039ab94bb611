"""``protocol="loki"``: Grafana Loki's push API, JSON. Pure.

A body is one push request::

    {"streams":[{"stream":{"level":"INFO","service":"billing"},
                 "values":[["1764000000123456000","{\\"timestamp\\":…}"], …]}, …]}

Events are grouped into streams by their labels: the event fields the
``labels`` option names (by default ``level`` and the keys of ``fields``),
as strings, under names Loki takes (see :func:`label_name`). The line is
the whole event as JSON, label fields included: LogQL's ``| json`` sees
every field, and a line read back is the event as it was. Its time is the
event's ``timestamp`` in nanoseconds (a decimal string), and the values of
a stream are in time order.

Each event is encoded alone as a one-entry stream, so a unit is never
smaller than what it adds to a body: the bodies that ``batch_max_bytes``
bounds only shrink when :meth:`LokiEncoder.body` merges streams.

Loki answers 204. A 400 means the push broke a rule (a line too long or
too old, "entry too far behind", a label Loki refuses), and Loki keeps the
valid entries of such a push: the batch is rejected and never sent again.
429 and 5xx are retried as for ``http``, with the body as it was built,
so the same timestamps and lines go again.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from logship.pure.encoding import Encoding
from logship.pure.event import EventBuilder, safe_repr
from logship.pure.protocols import Event
from logship.pure.protocols.http import StatusReader
from logship.pure.protocols.jsonbody import EventJsonEncoder
from logship.pure.protocols.stamps import epoch_micros

#: The standard path of Loki's push endpoint.
PUSH_PATH = "/loki/api/v1/push"

#: The label every stream keeps when an event has none of the label fields: Loki
#: stores no stream without a label.
FALLBACK_LABEL = "level"

_JSON = Encoding("json")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
_STREAM = b'{"stream":'
_VALUES = b',"values":['  # structural: inside a JSON string every quote is escaped
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


def label_name(field: str) -> str:
    """``field`` as a Loki label name: ``[A-Za-z_][A-Za-z0-9_]*``, never starting with ``__``.

    Other characters become ``_``; a leading digit gets a ``_`` before it;
    names starting with ``__`` are reserved for Loki's own labels and keep one.
    """
    name = _NOT_NAME.sub("_", field)
    if name[:1].isdigit():
        name = "_" + name
    if name.startswith("__"):
        name = "_" + name.lstrip("_")
    return name


def label_value(value: Any) -> str | None:
    """A field's value as a label's: text as it is, anything else as JSON; None when empty."""
    if value is None or isinstance(value, str):
        return value or None
    try:
        return _dumps(value)
    except (TypeError, ValueError, RecursionError):  # not JSON: what it shows itself as
        return safe_repr(value)


class LokiEncoder(EventJsonEncoder):
    """Events as one Loki push request, grouped into streams by label, gzipped when ``compress``."""

    name = "loki"
    per_event_overhead = 1  # the comma between two streams
    body_overhead = len(b'{"streams":[]}')

    def __init__(
        self,
        compress: bool,
        builder: EventBuilder | None = None,
        labels: Iterable[str] = (FALLBACK_LABEL,),
    ) -> None:
        super().__init__(compress, builder)
        # (field, label name); a name two fields share goes to the first of them.
        named: dict[str, str] = {}
        for field in labels:
            named.setdefault(label_name(field), field)
        self._labels = [(field, name) for name, field in named.items()]

    def unit(self, event: Event) -> bytes:
        """One event as a stream of one entry: its labels, its time, its line."""
        labels = {}
        for field, name in self._labels:
            text = label_value(event.get(field))
            if text is not None:
                labels[name] = text
        if not labels:
            labels[FALLBACK_LABEL] = label_value(event.get(FALLBACK_LABEL)) or "unknown"
        micros = epoch_micros(event.get("timestamp"))
        if micros is None or micros < 0:
            micros = time.time_ns() // 1000  # Loki needs a time; a damaged stamp has none
        line = _JSON.encode_event(event).decode("ascii")
        return _stream(_dumps(labels).encode("ascii"), f'["{micros * 1000}",{_quote(line)}]')

    def body(self, units: Sequence[bytes]) -> tuple[bytes, int]:
        """One push request: the units' entries merged by stream, each stream in time order."""
        streams: dict[bytes, list[tuple[int, bytes]]] = {}
        for unit in units:
            cut = unit.index(_VALUES)
            value = unit[cut + len(_VALUES) : -2]
            nanos = int(value[2 : value.index(b'"', 2)])
            streams.setdefault(unit[len(_STREAM) : cut], []).append((nanos, value))
        joined = []
        for labels, values in streams.items():
            values.sort(key=_by_time)  # stable: entries of one instant keep their order
            joined.append(_stream(labels, b",".join(value for _t, value in values)))
        return self.finished(b'{"streams":[' + b",".join(joined) + b"]}")

    def units_of(self, body: bytes) -> list[bytes]:
        """The single-entry streams of a body this encoder made (its labels and lines as sent)."""
        return [
            _stream(_dumps(labels).encode("ascii"), _dumps(value))
            for labels, value in _entries(self.raw(body))
        ]

    def events_of(self, body: bytes) -> list[Event]:
        """The events of a body this encoder made: each line read back."""
        return [_event_of(labels, value) for labels, value in _entries(self.raw(body))]


def _by_time(entry: tuple[int, bytes]) -> int:
    return entry[0]


def _stream(labels: bytes, values: bytes | str) -> bytes:
    if isinstance(values, str):
        values = values.encode("ascii")
    return _STREAM + labels + _VALUES + values + b"]}"


def _entries(raw: bytes) -> list[tuple[dict[str, Any], list[Any]]]:
    """Every ``(labels, value)`` of a push request, stream by stream."""
    request = json.loads(raw)
    return [
        (stream.get("stream") or {}, value)
        for stream in request.get("streams") or ()
        for value in stream.get("values") or ()
    ]


def _event_of(labels: dict[str, Any], value: list[Any]) -> Event:
    """The event a line holds; a line that is not one becomes the message, with its labels."""
    line = value[1] if len(value) > 1 else ""
    try:
        event = json.loads(line)
    except (TypeError, ValueError):
        event = None
    if isinstance(event, dict):
        return event
    return {**labels, "message": line if isinstance(line, str) else str(line)}


class Loki:
    """``protocol="loki"``: a push request to ``/loki/api/v1/push``, the token as ``Bearer``."""

    name = "loki"
    default_path = PUSH_PATH
    auth = "Bearer"
    transport = "http"

    def encoder(self, opts: Any, builder: EventBuilder | None) -> LokiEncoder:
        """An encoder labelling streams by ``labels`` (default: ``level`` and ``fields``' keys)."""
        labels = opts.labels if opts.labels is not None else [FALLBACK_LABEL, *opts.fields]
        return LokiEncoder(opts.compress, builder, labels)

    def reader(self, opts: Any) -> StatusReader:
        """The status decides: 400 is rejected, 429 and 5xx retried (SPEC section 4)."""
        return StatusReader()


LOKI = Loki()

#: The encoders of this module by the name they record with a spilled batch.
DECODERS: dict[str, Callable[[bool], LokiEncoder]] = {LokiEncoder.name: LokiEncoder}
