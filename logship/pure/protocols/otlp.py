"""``protocol="otlp"``: OpenTelemetry OTLP/HTTP logs in the JSON encoding. Pure.

A body is one ``ExportLogsServiceRequest`` in the OTLP JSON encoding: a
``resourceLogs`` entry per resource (``service.name``, ``host.name``,
``os.type``, ``os.version``), in it one ``scopeLogs`` entry per logger
(the logger's name is the scope's), and in that the log records. 64-bit
integers are decimal strings, ``traceId``/``spanId`` lowercase hex, enums
integers (OTLP specification, "JSON Protobuf Encoding"). How each event
field maps is :meth:`RecordWriter.write`'s docstring and ``docs/aggregators/opentelemetry.md``.

**Units.** The pump sizes and batches events one at a time, but a body
groups them by resource and scope, so a unit carries its group with it:
``RESOURCE \\0 SCOPE \\n RECORD``, where ``SCOPE`` and ``RECORD`` are the
exact text :meth:`OtlpEncoder.body` writes (the scope's opening and the
record's JSON) and ``RESOURCE`` is empty for the encoder's own resource or
else the resource's opening text. A unit is therefore never shorter than
what its event can add to a body (a record, or a record opening a new
scope or resource group), and with :attr:`OtlpEncoder.per_event_overhead`
and :attr:`OtlpEncoder.body_overhead` the pump's count of a batch is an
upper bound of its body's size: ``batch_max_bytes`` holds.

**Answers.** 2xx is delivered; a ``partialSuccess`` whose
``rejectedLogRecords`` is above zero does not say which records it
rejected, so the reader reports the count (:attr:`Outcome.rejected`) and the
sender counts that many of the batch as rejected, the rest as shipped, and
dead-letters the whole batch with the count and the server's message. Only
429, 502, 503 and 504 are retried (honouring ``Retry-After``); 413 splits;
401, 403, 404 and redirects are held like every protocol's; every other
4xx and 5xx is rejected, as the specification says they must not be retried.
"""

from __future__ import annotations

import calendar
import json
import logging
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timezone
from json.encoder import encode_basestring_ascii
from typing import Any

from logship.pure.encoding import gzip_compress, gzip_decompress
from logship.pure.event import COLLISION_PREFIX, EventBuilder, safe_repr
from logship.pure.protocols import Answer, Event, Outcome
from logship.pure.protocols.stamps import parse_rfc3339
from logship.pure.retry import Verdict, classify, parse_retry_after

#: The name recorded with every batch this encoder makes (spill, dead letters).
ENCODER_NAME = "otlp-json"

#: What the OpenTelemetry SDK names two of Python's levels in ``severityText``
#: (the log data model's short names); every other level keeps its own name.
SEVERITY_TEXTS = {"WARNING": "WARN", "CRITICAL": "FATAL"}
_LEVEL_NAMES = {text: name for name, text in SEVERITY_TEXTS.items()}

#: Statuses the OTLP specification says a client should retry; every other
#: 4xx and 5xx must not be.
RETRYABLE = frozenset({429, 502, 503, 504})

#: The attribute keys logship derives from core event fields.
UID = "log.record.uid"
PID = "process.pid"
THREAD = "thread.name"
FUNCTION = "code.function.name"
LINE = "code.line.number"
STACK = "code.stacktrace"
EXC_TYPE = "exception.type"
EXC_MESSAGE = "exception.message"
EXC_STACKTRACE = "exception.stacktrace"

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_MAX_DEPTH = 32
_HEX_ID = re.compile(r"[0-9a-fA-F]+")
# An exception's line: its class, qualified, then ": " and its message, or nothing.
# Without a traceback above it, only a class name as classes are written counts.
_TYPE_LINE = re.compile(r"[A-Za-z_][\w.]*(?:: |$)")
_CLASS_LINE = re.compile(r"(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:: |$)")
_TRACEBACK = "Traceback (most recent call last):"
_GROUP = "  + Exception Group Traceback (most recent call last):"
_CACHE_MAX = 256

_json_encode = json.JSONEncoder(
    separators=(",", ":"), allow_nan=False, default=safe_repr, check_circular=False
).encode
_quote: Callable[[str], str] = encode_basestring_ascii


def _dumps(value: Any) -> bytes:
    return _json_encode(value).encode("ascii")  # ensure_ascii: always ASCII


# -- severity ------------------------------------------------------------------------------


def severity_number(levelno: int) -> int:
    """The ``severityNumber`` of a stdlib level, as the OpenTelemetry Python SDK maps it.

    Below DEBUG (10): 0, unspecified. From each stdlib level up: its
    severity (DEBUG 5, INFO 9, WARNING 13, ERROR 17, CRITICAL 21), then the
    next three numbers for the next three levels, the fourth for the rest
    up to the next stdlib level; 53 and above: 24.
    """
    if levelno < logging.DEBUG:
        return 0
    if levelno > 53:
        return 24
    tens, units = divmod(levelno, 10)
    return 4 * tens + 1 + min(units, 3)


def level_number(name: str) -> int | None:
    """The stdlib level called ``name`` (``"Level 15"`` too), or None when there is none."""
    number = logging.getLevelName(name)  # a number for a registered name, never raises
    if isinstance(number, int):
        return number
    if name.startswith("Level ") and name[6:].isdigit():
        return int(name[6:])
    return None


def level_name(text: str | None, number: int | None) -> str | None:
    """The stdlib level name back from ``severityText`` (else from ``severityNumber``)."""
    if text:
        return _LEVEL_NAMES.get(text, text)
    if number:
        stdlib = logging.getLevelName(10 * ((number - 1) // 4))
        return stdlib if isinstance(stdlib, str) else None
    return None


# -- times -------------------------------------------------------------------------------------


class Clock:
    """RFC 3339 event timestamps to Unix nanoseconds and back, the date part cached."""

    def __init__(self) -> None:
        self._prefix = ""
        self._seconds = 0

    def nanos(self, stamp: Any) -> int | None:
        """Unix nanoseconds of ``2026-11-24T10:00:00.123456Z`` or another ISO 8601 time, or None."""
        if not isinstance(stamp, str):
            return None
        if len(stamp) == 27 and stamp[19] == "." and stamp[26] == "Z" and stamp[20:26].isdigit():
            prefix = stamp[:19]
            if prefix != self._prefix:
                try:
                    self._seconds = calendar.timegm(time.strptime(prefix, "%Y-%m-%dT%H:%M:%S"))
                except ValueError:
                    return None
                self._prefix = prefix
            return (self._seconds * 1_000_000 + int(stamp[20:26])) * 1000
        when = parse_rfc3339(stamp)
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return calendar.timegm(when.utctimetuple()) * 1_000_000_000 + when.microsecond * 1000

    @staticmethod
    def stamp(nanos: int) -> str:
        """The event timestamp text of Unix nanoseconds (microseconds kept)."""
        seconds, micros = divmod(nanos // 1000, 1_000_000)
        return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{micros:06d}Z"


# -- values ------------------------------------------------------------------------------------


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    return str(key) if isinstance(key, (int, float)) else safe_repr(key)


def any_value(value: Any, depth: int = 0) -> dict[str, Any]:
    """``value`` as an OTLP ``AnyValue``; never raises.

    str, bool, int (as a decimal string; beyond 64 bits as a string), finite
    float, None (an empty ``AnyValue``), mappings (``kvlistValue``), lists,
    tuples and sets (``arrayValue``); anything else, NaN and infinities as
    their ``repr`` in a ``stringValue``. No ``bytesValue``: Fluent Bit 5.1
    drops a record that has one (answering 201).
    """
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        number = int(value)  # an IntEnum's str() is its name
        if _INT64_MIN <= number <= _INT64_MAX:
            return {"intValue": str(number)}
        return {"stringValue": safe_repr(number)}
    if isinstance(value, float):
        real = float(value)
        return {"doubleValue": real} if math.isfinite(real) else {"stringValue": repr(real)}
    if value is None:
        return {}
    if depth >= _MAX_DEPTH:
        return {"stringValue": "<too deep>"}
    try:
        if isinstance(value, Mapping):
            pairs = [
                {"key": _key(k), "value": any_value(v, depth + 1)} for k, v in list(value.items())
            ]
            return {"kvlistValue": {"values": pairs}}
        if isinstance(value, (list, tuple, set, frozenset)):
            return {"arrayValue": {"values": [any_value(v, depth + 1) for v in value]}}
    except Exception:  # a mapping whose items() raises: its repr, like any other object
        pass
    return {"stringValue": safe_repr(value)}


def plain_value(value: Any) -> Any:
    """An ``AnyValue`` back to the Python value it stands for."""
    if not isinstance(value, Mapping):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [plain_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        pairs = (value["kvlistValue"] or {}).get("values", [])
        return {p.get("key", ""): plain_value(p.get("value")) for p in pairs}
    if "bytesValue" in value:
        return value["bytesValue"]  # base64 text, as it came
    return None


def _attribute(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": any_value(value)}


def _utf8_strings(value: Any, depth: int = 0) -> Any:
    """``value`` with every string's lone surrogates escaped (protobuf strings are UTF-8)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {
            (_utf8_strings(k) if isinstance(k, str) else k): _utf8_strings(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_utf8_strings(v, depth + 1) for v in value]
    return value


# -- exceptions --------------------------------------------------------------------------------


def exception_parts(text: str) -> tuple[str | None, str | None]:
    """The ``exception.type`` and ``exception.message`` a traceback's text tells.

    The last exception of a chain is the one raised; an exception group's
    own line is read from the margin of its top-level block. Text that is not
    a Python traceback gives no type, and its last line as the message.
    """
    lines = text.splitlines()
    if lines and lines[0] == _GROUP:
        block = []
        for line in lines[1:]:
            if not line.startswith("  | "):
                break
            block.append(line[4:])
        lines = [_TRACEBACK, *block]
    start = max((i for i, line in enumerate(lines) if line == _TRACEBACK), default=-1) + 1
    if start:
        while start < len(lines) and lines[start][:1].isspace():
            start += 1  # the frames: indented
    rest = lines[start:]
    if rest and (_TYPE_LINE if start else _CLASS_LINE).match(rest[0]):
        kind, _sep, first = rest[0].partition(": ")
        message = "\n".join([first, *rest[1:]]) if first or rest[1:] else None
        return kind, message
    last = next((line.strip() for line in reversed(lines) if line.strip()), None)
    return None, last


# -- events to log records ----------------------------------------------------------------------


def hex_id(value: Any, digits: int) -> str | None:
    """``value`` as a trace or span id (``digits`` hex digits, not all zero), lowercase; or None."""
    if (
        isinstance(value, str)
        and len(value) == digits
        and _HEX_ID.fullmatch(value)
        and value.strip("0")
    ):
        return value.lower()
    return None


def default_service_name(environ: Mapping[str, str], executable: str | None) -> str:
    """``OTEL_SERVICE_NAME``, else ``unknown_service:`` and the executable, as the SDK names it."""
    name = environ.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        return name
    return f"unknown_service:{os.path.basename(executable)}" if executable else "unknown_service"


def os_type(system: str) -> str:
    """The semantic conventions' ``os.type`` of ``platform.system()`` (``SunOS`` is ``solaris``)."""
    name = system.lower()
    return "solaris" if name == "sunos" else name


#: A record's resource: host name, kernel version and service (None: the default).
ResourceKey = tuple[Any, Any, "str | None"]


def service_of(event: Event) -> str | None:
    """The event's ``service`` when it can name the resource's service (a non-empty string)."""
    service = event.get("service")
    return service if isinstance(service, str) and service else None


_ABSENT = object()


def value_text(value: Any) -> str:
    """The JSON text of ``value``'s ``AnyValue`` (:func:`any_value`); strings and ints directly."""
    kind = type(value)
    if kind is str:
        return '{"stringValue":' + _quote(value) + "}"
    if kind is int and _INT64_MIN <= value <= _INT64_MAX:
        return '{"intValue":"' + int.__repr__(value) + '"}'
    return _json_encode(any_value(value))


def attribute_text(key: str, value: Any) -> str:
    """The JSON text of one ``KeyValue`` attribute."""
    return '{"key":' + _quote(key) + ',"value":' + value_text(value) + "}"


class RecordWriter:
    """Events to OTLP log records' JSON text (:meth:`write`), with what repeats cached."""

    def __init__(self) -> None:
        self.clock = Clock()
        self._severities: dict[tuple[str, int | None], str] = {}
        #: The attributes of a record's origin (pid, thread, module, func, line),
        #: the same for every record from one place, with the fields they use.
        self._wheres: dict[tuple[Any, ...], Where] = {}

    def write(
        self, event: Event, observed: int, levelno: int | None = None
    ) -> tuple[Any, ResourceKey, str]:
        """The scope name, the resource and the OTLP log record (JSON text) of one event.

        - ``timestamp`` is ``timeUnixNano``; when the event was encoded is
          ``observedTimeUnixNano`` (``observed``);
        - ``level`` gives ``severityText`` and ``severityNumber`` as the SDK
          maps them (from ``levelno`` when the record's is known);
        - ``logger`` names the scope; ``message`` is the ``body``;
        - ``hostname``, ``kernel_version`` and ``service`` go to the resource
          (``host.name``, ``os.version``, ``service.name``);
        - ``uuid`` is ``log.record.uid``; ``pid`` ``process.pid``; ``thread``
          ``thread.name``; ``module`` and ``func`` ``code.function.name``
          (``module.func``, fully qualified as far as the event knows);
          ``line`` ``code.line.number``; ``stack`` ``code.stacktrace``;
        - ``exception`` is ``exception.stacktrace``, with ``exception.type``
          and ``exception.message`` read from it (:func:`exception_parts`);
        - ``trace_id`` and ``span_id`` of the right length are the record's
          ``traceId`` and ``spanId``;
        - every other field is an attribute of its own name; one that names an
          attribute derived here is kept as ``extra_`` and its name.
        """
        fields = dict(event)
        parts = []
        nanos = self.clock.nanos(fields.get("timestamp"))
        if nanos is not None and nanos >= 0:  # fixed64: a time before 1970 stays an attribute
            del fields["timestamp"]
            parts.append(f'"timeUnixNano":"{nanos}"')
        parts.append(f'"observedTimeUnixNano":"{observed}"')
        level = fields.pop("level", None)
        if isinstance(level, str):
            parts.append(self._severity(level, levelno))
        elif level is not None:
            fields["level"] = level
        scope = fields.pop("logger", "")
        if "message" in fields:
            parts.append('"body":' + value_text(fields.pop("message")))
        service = service_of(fields)
        if service is not None:
            del fields["service"]
        resource = (fields.pop("hostname", None), fields.pop("kernel_version", None), service)
        ids = []
        for field, name, digits in (("trace_id", "traceId", 32), ("span_id", "spanId", 16)):
            ident = hex_id(fields.get(field), digits)
            if ident is not None:  # one of another form stays an attribute
                del fields[field]
                ids.append(f'"{name}":"{ident}"')
        attributes, taken = self._derived(fields)
        for key, value in fields.items():
            name = _key(key)
            attributes.append(
                attribute_text(COLLISION_PREFIX + name if name in taken else name, value)
            )
        parts.append('"attributes":[' + ",".join(attributes) + "]")
        return scope, resource, "{" + ",".join(parts + ids) + "}"

    def _severity(self, level: str, levelno: int | None) -> str:
        known = self._severities.get((level, levelno))
        if known is None:
            number = levelno if levelno is not None else level_number(level)
            text = SEVERITY_TEXTS.get(level, level)
            known = f'"severityNumber":{severity_number(number) if number is not None else 0},'
            known += f'"severityText":{_quote(text)}'
            if len(self._severities) < _CACHE_MAX:
                self._severities[(level, levelno)] = known
        return known

    def _derived(self, fields: Event) -> tuple[list[str], set[str]]:
        """The attributes made from core fields, and their names; the fields taken out."""
        out, names = [], set()
        if "uuid" in fields:
            out.append(attribute_text(UID, fields.pop("uuid")))
            names.add(UID)
        get = fields.get
        where = (
            get("pid", _ABSENT),
            get("thread", _ABSENT),
            get("module", _ABSENT),
            get("func", _ABSENT),
            get("line", _ABSENT),
        )
        try:
            known = self._wheres.get(where)
        except TypeError:  # a value that cannot be a key: not cached
            known = None
        if known is None:
            known = _where(*where)
            try:
                if len(self._wheres) >= _CACHE_MAX:
                    self._wheres.clear()
                self._wheres[where] = known
            except TypeError:
                pass
        texts, used, made = known
        out += texts
        for field in used:
            del fields[field]
        names.update(made)
        exception = fields.get("exception")
        if isinstance(exception, str):
            del fields["exception"]
            kind, message = exception_parts(exception)
            if kind is not None:
                out.append(attribute_text(EXC_TYPE, kind))
            if message is not None:
                out.append(attribute_text(EXC_MESSAGE, message))
            out.append(attribute_text(EXC_STACKTRACE, exception))
            names.update((EXC_TYPE, EXC_MESSAGE, EXC_STACKTRACE))
        if isinstance(fields.get("stack"), str):
            out.append(attribute_text(STACK, fields.pop("stack")))
            names.add(STACK)
        return out, names


#: The attributes of a record's origin, the event fields they use, and their names.
Where = tuple[list[str], frozenset[str], frozenset[str]]


def _where(pid: Any, thread: Any, module: Any, func: Any, line: Any) -> Where:
    """The origin's attributes (``_ABSENT``: a field the event lacks)."""
    texts, used, names = [], [], []
    for field, name, value in (("pid", PID, pid), ("thread", THREAD, thread)):
        if value is not _ABSENT:
            texts.append(attribute_text(name, value))
            used.append(field)
            names.append(name)
    if isinstance(func, str):
        used.append("func")
        if isinstance(module, str):
            used.append("module")
            func = f"{module}.{func}"
        texts.append(attribute_text(FUNCTION, func))
        names.append(FUNCTION)
    if line is not _ABSENT:
        texts.append(attribute_text(LINE, line))
        used.append("line")
        names.append(LINE)
    return texts, frozenset(used), frozenset(names)


def resource_attributes(key: ResourceKey, default_service: str, system: str) -> dict[str, Any]:
    """The OTLP ``Resource`` of a record's resource key."""
    hostname, kernel, service = key
    attributes = [_attribute("service.name", service or default_service)]
    if hostname is not None:
        attributes.append(_attribute("host.name", hostname))
    attributes.append(_attribute("os.type", system))
    if kernel is not None:
        attributes.append(_attribute("os.version", kernel))
    return {"attributes": attributes}


# -- log records back to events -----------------------------------------------------------------


def event_of(
    resource: Mapping[str, Any], scope: Mapping[str, Any], record: Mapping[str, Any]
) -> Event:
    """The event a log record of this module stands for (the inverse of :meth:`RecordWriter.write`).

    A ``service.name`` that is a default (``unknown_service…``) is left out;
    ``exception.type`` and ``exception.message`` are left out when the
    traceback they came from is there.
    """
    res = {a.get("key"): plain_value(a.get("value")) for a in resource.get("attributes", [])}
    attrs = {a.get("key"): plain_value(a.get("value")) for a in record.get("attributes", [])}
    event: Event = {}
    if "timeUnixNano" in record:
        event["timestamp"] = Clock.stamp(int(record["timeUnixNano"]))
    level = level_name(record.get("severityText"), record.get("severityNumber"))
    if level is not None:
        event["level"] = level
    event["logger"] = scope.get("name", "")
    if "body" in record:
        event["message"] = plain_value(record["body"])
    if "host.name" in res:
        event["hostname"] = res["host.name"]
    if UID in attrs:
        event["uuid"] = attrs.pop(UID)
    if "os.version" in res:
        event["kernel_version"] = res["os.version"]
    for name, field in ((PID, "pid"), (THREAD, "thread")):
        if name in attrs:
            event[field] = attrs.pop(name)
    function = attrs.pop(FUNCTION, None)
    if isinstance(function, str):
        module, dot, func = function.rpartition(".")
        if dot:
            event["module"] = module
        event["func"] = func
    if LINE in attrs:
        event["line"] = attrs.pop(LINE)
    if EXC_STACKTRACE in attrs:
        event["exception"] = attrs.pop(EXC_STACKTRACE)
        attrs.pop(EXC_TYPE, None)
        attrs.pop(EXC_MESSAGE, None)
    if STACK in attrs:
        event["stack"] = attrs.pop(STACK)
    service = res.get("service.name")
    if isinstance(service, str) and not service.startswith("unknown_service"):
        event["service"] = service
    event.update(attrs)
    for name, field in (("traceId", "trace_id"), ("spanId", "span_id")):
        if record.get(name):
            event[field] = str(record[name]).lower()
    return event


def export_requests(raw: bytes) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """Every ``(resource, scope, record)`` of an uncompressed OTLP JSON body, in order."""
    doc = json.loads(raw)
    return [
        (rl.get("resource") or {}, sl.get("scope") or {}, record)
        for rl in doc.get("resourceLogs", [])
        for sl in rl.get("scopeLogs", [])
        for record in sl.get("logRecords", [])
    ]


# -- the encoder --------------------------------------------------------------------------------

_BODY_OPEN, _BODY_CLOSE = b'{"resourceLogs":[', b"]}"


def resource_open(resource: Mapping[str, Any]) -> bytes:
    """The text that opens a resource's group in a body."""
    return b'{"resource":' + _dumps(resource) + b',"scopeLogs":['


def scope_open(scope: Mapping[str, Any]) -> bytes:
    """The text that opens a scope's group in a body."""
    return b'{"scope":' + _dumps(scope) + b',"logRecords":['


class OtlpEncoder:
    """Events as an OTLP JSON ``ExportLogsServiceRequest``, gzipped when ``compress``.

    ``builder`` (the worker's) is needed only to encode ring items; its
    host name, kernel version and ``fields["service"]`` make the encoder's
    own resource. ``environ`` gives ``OTEL_SERVICE_NAME``; ``clock`` the
    observed time, in Unix nanoseconds.
    """

    name = ENCODER_NAME
    #: Unit separators not in the body, and what closing a group may add.
    per_event_overhead = 5

    def __init__(
        self,
        compress: bool,
        builder: EventBuilder | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.compress = compress
        self._builder = builder
        self._observed = clock
        self._writer = RecordWriter()
        self._default_service = default_service_name(
            os.environ if environ is None else environ, sys.executable
        )
        self._os_type = os_type(platform.system())
        self._headers = {"Content-Type": "application/json"}
        if compress:
            self._headers["Content-Encoding"] = "gzip"
        self._resources: dict[ResourceKey, bytes] = {}
        self._scopes: dict[Any, bytes] = {}
        self._own = b""
        if builder is not None:
            own_key = (builder.hostname, builder.kernel_version, service_of(builder.fields))
            self._own = self._resource_text(own_key)
            self._resources = {own_key: b""}
        #: The body's own wrapping and the encoder's resource group, once per body.
        self.body_overhead = len(_BODY_OPEN) + len(_BODY_CLOSE) + len(self._own) + 3

    def _resource_text(self, key: ResourceKey) -> bytes:
        resource = resource_attributes(key, self._default_service, self._os_type)
        return resource_open(_utf8_strings(resource))

    def _resource_key(self, key: ResourceKey) -> bytes:
        known = self._resources.get(key)
        if known is None:
            if len(self._resources) >= _CACHE_MAX:
                self._resources = {k: v for k, v in self._resources.items() if not v}
            known = self._resources[key] = self._resource_text(key)
        return known

    def _scope(self, name: Any) -> bytes:
        known = self._scopes.get(name)
        if known is None:
            if len(self._scopes) >= _CACHE_MAX:
                self._scopes.clear()
            known = scope_open({"name": _utf8_strings(_key(name))})
            try:
                self._scopes[name] = known
            except TypeError:  # a logger "name" that cannot be a key
                pass
        return known

    def _encode(self, event: Event, observed: int, levelno: int | None = None) -> bytes:
        scope, resource, text = self._writer.write(event, observed, levelno)
        if "\\ud" in text:  # a surrogate: maybe a lone one, which protobuf refuses
            scope, resource, text = self._writer.write(_utf8_strings(event), observed, levelno)
        return (
            self._resource_key(resource) + b"\0" + self._scope(scope) + b"\n" + text.encode("ascii")
        )

    def _safely(self, event: Event, observed: int, levelno: int | None, message: str) -> bytes:
        try:
            return self._encode(event, observed, levelno)
        except Exception as e:  # the event is replaced, never lost
            if self._builder is None:
                raise
            return self._encode(self._builder.fallback(message, e), observed)

    def units(self, items: Sequence[Any]) -> list[bytes]:
        """One unit per ring item (``logship.ring.Item``), never raising."""
        builder = self._builder
        if builder is None:
            raise RuntimeError("an encoder without an event builder cannot encode ring items")
        observed = self._observed()
        out = []
        for event, item in zip(builder.build_many(items), items, strict=True):
            try:
                levelno = item.record.levelno
                levelno = levelno if type(levelno) is int else None
            except Exception:
                levelno = None
            out.append(self._safely(event, observed, levelno, item.message))
        return out

    def unit(self, event: Event) -> bytes:
        """One event dict's unit (its level's number found from its name)."""
        message = event.get("message")
        return self._safely(
            event, self._observed(), None, message if isinstance(message, str) else ""
        )

    def body(self, units: Sequence[bytes]) -> tuple[bytes, int]:
        """The units grouped by resource, then scope, in order of appearance; gzipped when asked."""
        groups: dict[bytes, dict[bytes, list[bytes]]] = {}
        for unit in units:
            head, _nl, record = unit.partition(b"\n")
            resource, _nul, scope = head.partition(b"\0")
            groups.setdefault(resource, {}).setdefault(scope, []).append(record)
        raw = (
            _BODY_OPEN
            + b",".join(
                (resource or self._own)
                + b",".join(scope + b",".join(records) + b"]}" for scope, records in scopes.items())
                + b"]}"
                for resource, scopes in groups.items()
            )
            + _BODY_CLOSE
        )
        return (gzip_compress(raw) if self.compress else raw), len(raw)

    def _raw(self, body: bytes) -> bytes:
        return gzip_decompress(body) if self.compress else body

    def units_of(self, body: bytes) -> list[bytes]:
        """The units of a body this encoder made (the same bytes :meth:`body` joined)."""
        units = []
        for resource, scope, record in export_requests(self._raw(body)):
            text = resource_open(resource)
            head = (b"" if text == self._own else text) + b"\0" + scope_open(scope)
            units.append(head + b"\n" + _dumps(record))
        return units

    def events_of(self, body: bytes) -> list[Event]:
        """The events of a body this encoder made (see :func:`event_of`)."""
        return [event_of(*parts) for parts in export_requests(self._raw(body))]

    def headers(self) -> dict[str, str]:
        """``Content-Type: application/json``, and ``Content-Encoding: gzip`` when compressing."""
        return dict(self._headers)


# -- answers ------------------------------------------------------------------------------------


def verdict_of(status: int) -> Verdict:
    """What an HTTP status means under the OTLP specification's rules.

    2xx delivered, 413 split, 429/502/503/504 retried; 401, 403, 404 and
    redirects held (SPEC section 4: a configuration problem, nothing is
    dropped); every other 4xx and 5xx rejected: the specification says they
    must not be retried.
    """
    if status in RETRYABLE:
        return Verdict.RETRY
    verdict = classify(status)
    if verdict is Verdict.RETRY and 400 <= status < 600:
        return Verdict.REJECT  # 408, 500, 501, …
    return verdict


def _json_object(text: str) -> dict[str, Any]:
    """The JSON object of an answer's body; ``{}`` for anything else, whatever the body holds."""
    try:
        doc = json.loads(text)
    except Exception:
        # Not only ValueError: an answer nested deeper than the parser
        # follows raises RecursionError. An answer that cannot be read says
        # nothing, and its status decides alone.
        return {}
    return doc if isinstance(doc, dict) else {}


def _count(value: Any) -> int:
    """A ``rejectedLogRecords`` (an int64: a decimal string, or a number); 0 if it is none.

    ``1e999`` reads as infinity and ``int`` of it raises OverflowError: a
    count that is no whole number, or not finite, is no count.
    """
    if isinstance(value, bool):
        return 0
    if isinstance(value, float):
        return max(0, int(value)) if value.is_integer() else 0  # not integral: inf, nan too
    if isinstance(value, int | str):
        try:
            return max(0, int(value))
        except ValueError:  # not digits, or more digits than int() reads
            return 0
    return 0


def partial_success(text: str) -> tuple[int, str]:
    """``rejectedLogRecords`` and ``errorMessage`` of an ``ExportLogsServiceResponse``.

    ``(0, "")`` for a body that is empty, not one, or cannot be read (Fluent
    Bit answers 201 with none): the 2xx says the request was accepted, and a
    count the server did not give is no reason to count anything rejected, nor
    to send again what it took. A count that is no whole number counts as 0.
    """
    partial = _json_object(text).get("partialSuccess")
    if not isinstance(partial, dict):
        return 0, ""
    message = partial.get("errorMessage")
    return _count(partial.get("rejectedLogRecords")), message if isinstance(message, str) else ""


def status_message(text: str) -> str:
    """The ``message`` of a failure's ``google.rpc.Status``, else the answer's text."""
    message = _json_object(text).get("message")
    return message if isinstance(message, str) and message else text


class OtlpReader:
    """An OTLP/HTTP answer to what it means for the batch (module docstring)."""

    def read(self, answer: Answer, count: int) -> Outcome:
        """The outcome of ``answer`` for a batch of ``count`` events."""
        status = answer.status
        if status is None:
            return Outcome(
                Verdict.RETRY, reason=answer.error or "no answer", kind=answer.kind or "connection"
            )
        kind = f"http-{status}"
        verdict = verdict_of(status)
        if verdict is Verdict.DELIVERED:
            rejected, message = partial_success(answer.body)
            if not rejected:
                return Outcome(Verdict.DELIVERED, kind=kind)
            reason = f"partialSuccess: {rejected} of {count} log records rejected"
            reason += f": {message}" if message else " (no errorMessage)"
            if rejected >= count:
                return Outcome(Verdict.REJECT, reason=reason, kind=kind)
            return Outcome(Verdict.DELIVERED, rejected=rejected, reason=reason, kind=kind)
        return Outcome(
            verdict,
            retry_after=parse_retry_after(answer.retry_after),
            reason=status_message(answer.body),
            kind=kind,
        )


class Otlp:
    """``protocol="otlp"``: OTLP/HTTP JSON to ``/v1/logs``, the token as ``Bearer``."""

    name = "otlp"
    default_path = "/v1/logs"
    auth = "Bearer"
    transport = "http"

    def encoder(self, opts: Any, builder: EventBuilder | None) -> OtlpEncoder:
        """An encoder gzipping when ``compress``; ``OTEL_SERVICE_NAME`` is read now."""
        return OtlpEncoder(opts.compress, builder)

    def reader(self, opts: Any) -> OtlpReader:
        """The OTLP rules of the module docstring."""
        return OtlpReader()


OTLP = Otlp()


def _decoder(compressed: bool) -> OtlpEncoder:
    return OtlpEncoder(compressed)


#: The encoder of this module by the name it records with a spilled batch.
DECODERS: dict[str, Callable[[bool], OtlpEncoder]] = {ENCODER_NAME: _decoder}
