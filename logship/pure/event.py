"""The event schema: one log record in, one flat mapping out.

Runs on the worker. The caller's thread has already resolved the parts that
could change after the log call (the message, the traceback text, the
``extra=`` values, the fields bound with ``logship.bind``/``logship.context``:
see ``pure.snapshot``); the attributes logging itself set are read from the
record here.

A record whose ``msg`` is a dict and that has no ``args`` (structlog's
``ProcessorFormatter.wrap_for_formatter``, or ``logger.info({...})``) is
unpacked on the caller (:func:`dict_message`): the dict's ``event`` is the
message and its other keys become top-level fields.
"""

from __future__ import annotations

import logging
import math
import platform
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from logship.pure.options import CORE_FIELDS
from logship.pure.uuid7 import uuid7, uuid7_derived, uuid7_many

# Attributes every LogRecord has; anything else on a record came from
# `extra=` (or from a filter) and becomes a top-level event field.
#: The attributes ``LogRecord.__init__`` sets, always first in a record's ``__dict__``.
INIT_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
STANDARD_RECORD_ATTRS = INIT_RECORD_ATTRS | {
    "message",
    "asctime",
    "taskName",  # Python 3.12+
}

#: Prefix under which an `extra=` key that collides with a core field is kept.
COLLISION_PREFIX = "extra_"

_MAX_DEPTH = 32

# Below sys.int_info.default_max_str_digits (4300 digits, about 14,284 bits).
_MAX_INT_BITS = 14_000

#: Record attributes that structlog's ``ProcessorFormatter.wrap_for_formatter``
#: adds through ``extra=`` (the stdlib logger and the method name): plumbing,
#: not fields, on a record whose ``msg`` is structlog's event dict.
STRUCTLOG_RECORD_ATTRS = frozenset({"_logger", "_name"})

#: Keys ``ProcessorFormatter`` itself puts in an event dict; never fields.
_STRUCTLOG_META_KEYS = frozenset({"_record", "_from_structlog"})


def safe_repr(value: object) -> str:
    """``repr(value)``, or a placeholder when ``__repr__`` itself fails."""
    try:
        return repr(value)
    except Exception:
        if isinstance(value, int):  # over 4300 digits: Python will not write it
            return _long_int(value)
        return f"<unrepresentable {type(value).__name__}>"


def _long_int(value: int) -> str:
    return f"<int of {value.bit_length()} bits>"


def _utf8(text: str) -> str:
    """``text``, with what UTF-8 cannot carry (lone surrogates) escaped."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def jsonable(value: Any, strict: bool = False, _depth: int = 0) -> Any:
    """Return ``value`` with everything JSON (or msgpack) cannot carry replaced by its repr.

    ``strict`` is for msgpack: integers must fit 64 bits and strings must be
    valid UTF-8 (JSON escapes lone surrogates; msgpack cannot carry them).
    Cycles and absurd nesting stop at a fixed depth instead of recursing forever.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _utf8(value) if strict else value
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            # Python refuses to write an int of over 4300 digits as text (and
            # msgpack cannot hold one): say what it was instead.
            return _long_int(value)
        if strict and not (-(1 << 63) <= value < (1 << 64)):
            return str(value)
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else safe_repr(value)
    if _depth >= _MAX_DEPTH:
        return safe_repr(value) if not isinstance(value, (dict, list, tuple)) else "<too deep>"
    if isinstance(value, Mapping):
        out = {}
        try:
            items = list(value.items())
        except Exception:
            return safe_repr(value)
        for k, v in items:
            # int and float keys read as JSON would write them; others as their repr
            key = (
                k if isinstance(k, str) else str(k) if isinstance(k, int | float) else safe_repr(k)
            )
            out[_utf8(key) if strict else key] = jsonable(v, strict, _depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, strict, _depth + 1) for v in value]
    return safe_repr(value)


def _text(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return safe_repr(value)


def format_exc_info(ei: Any) -> str:
    """A ``(type, value, traceback)`` triple as traceback text, without the last newline."""
    return "".join(traceback.format_exception(*ei)).rstrip("\n")


def render_exc_info(value: Any) -> str | None:
    """The traceback text of an exception or an ``exc_info`` tuple; None for anything else.

    ``True`` (structlog's "the exception being handled") cannot be resolved
    here, on the worker, long after the ``except`` block: None.
    """
    if isinstance(value, BaseException):
        return format_exc_info((type(value), value, value.__traceback__))
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return format_exc_info(value)
    return None


def unformattable(record: logging.LogRecord, e: Exception, args_text: str | None = None) -> str:
    """What to ship for a message whose format string and arguments disagree.

    The format string, the arguments (or ``args_text`` in their place) and
    the error: the event is kept, and nothing is raised into the log call.
    """
    try:
        args = repr(record.args) if args_text is None else args_text
        return f"{record.msg!s} % {args} (logship: formatting failed: {e!r})"
    except Exception:
        return f"<unformattable log message> (logship: formatting failed: {e!r})"


def dict_message(
    msg: Mapping[Any, Any], exception: str | None, stack: str | None
) -> tuple[dict[Any, Any], str, str | None, str | None]:
    """Unpack a dict ``msg``: return its fields, the message, the exception and the stack.

    The message is the dict's ``event`` (``str()`` of it; ``""`` when absent),
    formatted with ``positional_args`` when structlog left them there. The
    strings that structlog's ``format_exc_info`` and ``StackInfoRenderer``
    put under ``exception`` and ``stack``, and an exception object or tuple
    under ``exc_info``, fill the core ``exception`` and ``stack`` fields when
    the record has none of its own (or has the same text). ``exc_info`` and
    ``stack_info`` are structlog's requests for a traceback, not fields:
    dropped, except a ``True`` that nothing answered on the caller's thread,
    which stays as a sign that a traceback was asked for and lost (see
    docs/structlog.md).
    """
    fields = {k: v for k, v in msg.items() if k not in _STRUCTLOG_META_KEYS}
    event = fields.pop("event", None)
    message = "" if event is None else event if isinstance(event, str) else _text(event)
    if "positional_args" in fields and isinstance(event, str):
        args = fields.pop("positional_args")
        try:
            # A lone mapping is the mapping to format with, as in logging.
            if isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], Mapping):
                args = args[0]
            message = event % args
        except Exception as e:
            message = f"{event} % {safe_repr(args)} (logship: formatting failed: {e!r})"
    # structlog's copy of the record's own traceback (log.exception() with
    # format_exc_info) is the same text: ship it once.
    rendered = fields.get("exception")
    if isinstance(rendered, str) and (exception is None or rendered == exception):
        exception = fields.pop("exception")
    rendered = fields.get("stack")
    if isinstance(rendered, str) and (stack is None or rendered == stack):
        stack = fields.pop("stack")
    if "exc_info" in fields:
        flag = fields.pop("exc_info")
        if exception is None:
            exception = render_exc_info(flag)
            if exception is None and flag is True:
                fields["exc_info"] = True
    if "stack_info" in fields:
        flag = fields.pop("stack_info")
        if stack is None and flag is True:
            fields["stack_info"] = True
    return fields, message, exception, stack


class Origin(NamedTuple):
    """What an event takes of a ``LogRecord``, under the same names.

    The builder and the encoders read these of a ring item's ``record``. The
    handler copies them at the call; the record itself is not kept: a
    handler or formatter after this one may change it (a coloured
    ``levelname``), and a record waiting in the ring with its ``__dict__`` is
    three objects the garbage collector scans on the application's thread,
    where this is one. (One it keeps tracking: the collector stops tracking
    only exact tuples whose items it does not track, and never a subclass;
    see docs/performance.md on full collections.) A region
    record (``pure.journal``) keeps them too, but not ``levelno`` (None: the
    level's name says it).
    """

    created: Any
    levelno: Any
    levelname: Any
    name: Any
    process: Any
    threadName: Any
    module: Any
    funcName: Any
    lineno: Any


def created_times(items: Sequence[Any]) -> list[float]:
    """The ``created`` time of each ring item's record.

    A record whose ``created`` cannot be read, or is not a number, gets the
    current time rather than costing its batch.
    """
    try:
        times = [item.record.created for item in items]
        if all(type(t) is float and 0.0 <= t < _LATEST for t in times):
            return times
    except Exception:
        pass
    return [created_time(item.record) for item in items]


# A Unix time beyond which time.gmtime fails on some platforms (year 5138).
_LATEST = 1e11


def usable_created(record: Any) -> float | None:
    """``record.created`` as a float, or None when it is unreadable or no usable number."""
    try:
        t = record.created
        if isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t < _LATEST:
            return float(t)
    except Exception:
        pass
    return None


def created_time(record: Any) -> float:
    """``record.created``, or the current time when it is unreadable or no usable number."""
    t = usable_created(record)
    return time.time() if t is None else t


def encode_safely(
    encode: Callable[[dict[str, Any]], bytes],
    builder: EventBuilder,
    event: dict[str, Any],
    message: str,
) -> bytes:
    """``encode(event)``; when even that fails, the builder's fallback event for ``message``."""
    try:
        return encode(event)
    except Exception as e:  # the event is replaced, never lost
        return encode(builder.fallback(message, e))


def encode_items(
    encode: Callable[[dict[str, Any]], bytes], builder: EventBuilder | None, items: Sequence[Any]
) -> list[bytes]:
    """One unit per ring item (``logship.ring.Item``): its event, ``encode``d safely."""
    if builder is None:
        raise RuntimeError("an encoder without an event builder cannot encode ring items")
    return [
        encode_safely(encode, builder, event, item.message)
        for event, item in zip(builder.build_many(items), items, strict=True)
    ]


class EventBuilder:
    """Turns records into events; holds the per-process facts every event carries.

    With a ``salt`` (``durability="crash"``), an event's uuid is made from
    the salt and its sequence number (``uuid7.uuid7_derived``), so that the
    event built again from the region after a crash has the same one;
    ``hostname`` and ``kernel_version`` are then the region's, which may
    predate a reboot.
    """

    def __init__(
        self,
        fields: Mapping[str, Any],
        salt: int | None = None,
        hostname: str | None = None,
        kernel_version: str | None = None,
    ) -> None:
        # ``fields`` come resolved (``pure.snapshot``) when the handler is
        # built: later changes to a value the application still holds are
        # not seen, and the JSON path encodes them once.
        self.fields = dict(fields)
        self.salt = salt
        self.hostname = socket.gethostname() if hostname is None else hostname
        self.kernel_version = platform.release() if kernel_version is None else kernel_version
        self._second = -1
        self._prefix = ""

    def uuids(self, items: Sequence[Any], millis: list[int]) -> list[str]:
        """The uuids of ring items (``logship.ring.Item``) made at ``millis``."""
        if self.salt is None:
            return uuid7_many(millis)
        return uuid7_derived(self.salt, [item.seq for item in items], millis)

    def timestamp(self, created: float) -> tuple[str, int]:
        """Return the RFC 3339 UTC text with microseconds, and the Unix milliseconds."""
        texts, millis = self.timestamps([created])
        return texts[0], millis[0]

    def timestamps(self, created: Sequence[float]) -> tuple[list[str], list[int]]:
        """:meth:`timestamp` for each of ``created``, in one pass: the texts, the milliseconds."""
        texts: list[str] = []
        millis: list[int] = []
        text, ms = texts.append, millis.append
        second, prefix = self._second, self._prefix
        for t in created:
            micros = int(t * 1_000_000)
            s, frac = divmod(micros, 1_000_000)
            if s != second:
                # Events cluster within a second; format the date part once per second.
                second, prefix = s, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
            text(f"{prefix}.{frac:06d}Z")
            ms(micros // 1000)
        self._second, self._prefix = second, prefix
        return texts, millis

    def build_many(self, items: Sequence[Any]) -> list[dict[str, Any]]:
        """Events for ring items (``logship.ring.Item``).

        The uuids of a batch are made under one lock. A record that cannot be
        read still yields an event (:meth:`fallback`), never an exception.
        """
        stamps, millis = self.timestamps(created_times(items))
        uuids = self.uuids(items, millis)
        return [
            self.build_item(item, stamp, uid)
            for item, stamp, uid in zip(items, stamps, uuids, strict=True)
        ]

    def build_item(self, item: Any, stamp: str, uid: str) -> dict[str, Any]:
        """The event of one ring item (``logship.ring.Item``); :meth:`fallback` when it fails."""
        try:
            return self.build(
                item.record,
                item.message,
                item.exception,
                item.stack,
                stamp,
                uid,
                item.context,
                item.extras,
                item.payload,
            )
        except Exception as e:  # a hostile record attribute must not lose the event
            return self.fallback(item.message, e)

    def build(
        self,
        record: logging.LogRecord,
        message: str,
        exception: str | None,
        stack: str | None,
        stamp: str | None = None,
        uid: str | None = None,
        context: Mapping[str, Any] | None = None,
        extras: Mapping[str, Any] | None = None,
        payload: Mapping[Any, Any] | None = None,
    ) -> dict[str, Any]:
        """Return the event for ``record``; core fields first, never overwritten.

        Then, each overriding the one before: ``fields``, ``context`` (what
        ``logship.bind``/``logship.context`` bound at the call), the fields of
        a dict ``msg`` (``payload``: :func:`dict_message`'s, unpacked at the
        call), and the record's ``extra=`` attributes (``extras``, resolved at
        the call). ``message``, ``exception`` and ``stack`` are a dict
        ``msg``'s when it has them.
        """
        if stamp is None or uid is None:
            stamp, unix_ms = self.timestamp(created_time(record))
            uid = uuid7(unix_ms)
        event: dict[str, Any] = {
            "timestamp": stamp,
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "hostname": self.hostname,
            "uuid": uid,
            "kernel_version": self.kernel_version,
            "pid": record.process,
            "thread": record.threadName,
            "module": record.module,
            "func": record.funcName,
            "line": record.lineno,
        }
        if exception is not None:
            event["exception"] = exception
        if stack is not None:
            event["stack"] = stack
        if self.fields:
            event.update(self.fields)
        if context:
            event.update(context)  # bind() and context() refuse core field names
        if payload is not None:
            for key, value in payload.items():
                if not isinstance(key, str):
                    key = str(key) if isinstance(key, int | float) else safe_repr(key)
                if key in CORE_FIELDS:
                    key = COLLISION_PREFIX + key
                event[key] = value
        if extras:
            skip = STRUCTLOG_RECORD_ATTRS if payload is not None else ()
            for key, value in extras.items():
                if key in skip:
                    continue
                if key in CORE_FIELDS:
                    key = COLLISION_PREFIX + key
                event[key] = value
        return event

    def fallback(self, message: str, error: BaseException) -> dict[str, Any]:
        """A minimal event for a record :meth:`build` could not read."""
        stamp, unix_ms = self.timestamp(time.time())
        return {
            "timestamp": stamp,
            "level": "ERROR",
            "logger": "logship",
            "message": message,
            "hostname": self.hostname,
            "uuid": uuid7(unix_ms),
            "kernel_version": self.kernel_version,
            "build_error": safe_repr(error),
        }
