"""Ring items straight to JSON text, one event at a time, without the dict in between.

:class:`~logship.pure.event.EventBuilder` makes each event a dict and the
encoder then walks that dict again. For the common record (a plain ``msg``,
``extra=`` values that are strings and numbers) both passes are needless:
the worker shares the GIL with the application, and building plus encoding
was the largest part of its CPU per event. :class:`JsonEventWriter` writes
the same JSON text directly: the per-process facts and field names are
escaped once, the few strings that repeat (level, logger, thread, module,
function) are escaped once each, and only the message and the ``extra=``
values are escaped per event.

Bound context (``logship.bind``/``logship.context``) is one immutable
mapping shared by every event of a request: its text is written once per
mapping.

Any record outside that common case (a dict ``msg``, a key ``extra=`` shares
with a core field, the context or ``fields=``, a value that is not a plain
scalar, an attribute that is not what logging puts there) goes through the
builder and the general encoder instead, so both paths give the same event;
``tests/test_eventjson.py`` holds them to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from logship.pure.event import EventBuilder, created_times, encode_safely
from logship.pure.options import CORE_FIELDS

# The caches are cleared when they grow this large.
_CACHE_MAX = 4096

_SCALARS = {
    str: _quote,
    int: int.__repr__,
    bool: lambda v: "true" if v else "false",
    type(None): lambda v: "null",
}


class JsonEventWriter:
    """Encodes ring items as JSON events (ASCII, compact), one ``bytes`` per event."""

    def __init__(self, builder: EventBuilder, encode_event: Callable[[dict[str, Any]], bytes]):
        self.builder = builder
        #: The general path: a built event dict to its bytes (never raises).
        self.encode_event = encode_event
        #: JSON fragments for the few combinations of level, logger, pid,
        #: thread, module and function that a process logs from.
        self._fragments: dict[tuple[Any, ...], tuple[str, str]] = {}
        #: For each layout of a record's attributes (its keys in order), the
        #: ``extra=`` keys with their quoted ``,"key":`` prefix; None when one
        #: collides with a core field or a ``fields=`` key (the builder's rules).
        self._layouts: dict[tuple[Any, ...], tuple[tuple[str, str], ...] | None] = {}
        #: For each bound-context mapping (by identity, kept alive here so its
        #: id is not reused): its keys and its ``,"key":value`` text; None
        #: when a key or value is not one the fast path writes.
        self._contexts: dict[int, tuple[Any, tuple[frozenset[str], str] | None]] = {}
        self._hostname = f',"hostname":{_quote(builder.hostname)},"uuid":"'
        self._kernel = f'","kernel_version":{_quote(builder.kernel_version)},"pid":'
        # fields= values are constant: encoded once, by the general path.
        fields = encode_event(dict(builder.fields)).decode("ascii")[1:-1]
        self._fields_text = f",{fields}" if fields else ""

    def encode_many(self, items: Sequence[Any]) -> list[bytes]:
        """The events of ring items (``logship.ring.Item``).

        Every item yields one event: a record the fast path does not take, or
        that fails in it, is built and encoded by the general path.
        """
        builder = self.builder
        stamps, millis = builder.timestamps(created_times(items))
        uuids = builder.uuids(items, millis)
        fragments, layouts, contexts = self._fragments, self._layouts, self._contexts
        if max(len(fragments), len(layouts), len(contexts)) >= _CACHE_MAX:
            fragments.clear()  # loggers or threads made per request: stay bounded
            layouts.clear()
            contexts.clear()
        hostname, kernel, fields = self._hostname, self._kernel, self._fields_text
        out: list[bytes] = []
        append = out.append
        for item, stamp, uid in zip(items, stamps, uuids, strict=True):
            record = item.record
            try:
                pid, line, extras = record.process, record.lineno, item.extras
                if extras is None:
                    layout: tuple[tuple[str, str], ...] | None = ()
                else:
                    layout = layouts.get(key := tuple(extras), _UNSEEN)
                    if layout is _UNSEEN:
                        layout = layouts[key] = self._layout(key)
                context = item.context
                bound = self._context_text(context, layout) if context else ""
                # dict messages have fields to merge: the builder's job
                if (
                    layout is not None
                    and bound is not None
                    and item.payload is None
                    # (True == 1: a bool must not find an int's cached text)
                    and type(pid) is int
                    and type(line) is int
                ):
                    origin = (
                        record.levelname,
                        record.name,
                        pid,
                        record.threadName,
                        record.module,
                        record.funcName,
                    )
                    head, tail = fragments.get(origin) or self._origin(origin)
                    text = (
                        f'{{"timestamp":"{stamp}",{head}{_quote(item.message)}'
                        f"{hostname}{uid}{kernel}{tail}{line}"
                    )
                    if item.exception is not None:
                        text += f',"exception":{_quote(item.exception)}'
                    if item.stack is not None:
                        text += f',"stack":{_quote(item.stack)}'
                    text += fields + bound
                    if extras is not None:
                        for prefix, name in layout:
                            value = extras[name]
                            scalar = _SCALARS.get(type(value))
                            if scalar is None:
                                scalar = _finite_float  # or a ValueError: the general path
                            text += prefix + scalar(value)
                    append(f"{text}}}".encode("ascii"))
                    continue
            except Exception:  # anything unusual: let the builder decide
                pass
            event = builder.build_item(item, stamp, uid)
            append(encode_safely(self.encode_event, builder, event, item.message))
        return out

    def _layout(self, keys: tuple[Any, ...]) -> tuple[tuple[str, str], ...] | None:
        extras = []
        for name in keys:
            if type(name) is not str or name in CORE_FIELDS or name in self.builder.fields:
                return None  # renamed or overriding: the builder's rules
            extras.append((f",{_quote(name)}:", name))
        return tuple(extras)

    def _context_text(self, context: Any, layout: tuple[tuple[str, str], ...] | None) -> str | None:
        """The text of a bound context, or None when the builder must merge it.

        The builder writes context after ``fields=`` and before ``extra=``; a
        key in both would sit elsewhere, so a shared key goes to the builder.
        """
        cached = self._contexts.get(id(context))
        if cached is None or cached[0] is not context:
            cached = self._contexts[id(context)] = (context, self._context_entry(context))
        entry = cached[1]
        if entry is None or layout is None:
            return None
        keys, text = entry
        if any(name in keys for _prefix, name in layout):
            return None
        return text

    def _context_entry(self, context: Any) -> tuple[frozenset[str], str] | None:
        text = ""
        try:
            for key, value in context.items():
                if type(key) is not str or key in CORE_FIELDS or key in self.builder.fields:
                    return None
                scalar = _SCALARS.get(type(value))
                if scalar is None:
                    scalar = _finite_float  # or a ValueError: the builder's path
                text += f",{_quote(key)}:{scalar(value)}"
            return frozenset(context), text
        except Exception:  # a value the fast path does not write, or an odd mapping
            return None

    def _origin(self, key: tuple[Any, ...]) -> tuple[str, str]:
        """The fragments around the message for ``(levelname, name, pid, thread, module, func)``.

        ``"level":…,"logger":…,"message":`` before it, and ``pid`` to
        ``"line":`` after the uuid and kernel version.
        """
        level, name, pid, thread, module, func = key
        texts = self._fragments[key] = (
            f'"level":{_string(level)},"logger":{_string(name)},"message":',
            f'{pid},"thread":{"null" if thread is None else _string(thread)},'
            f'"module":{_string(module)},"func":{_string(func)},"line":',
        )
        return texts


_UNSEEN: Any = object()


def _finite_float(value: Any) -> str:
    """A float as JSON writes it; ValueError for NaN, infinities and anything else."""
    if type(value) is not float or value != value or value in (math.inf, -math.inf):
        raise ValueError(value)
    return float.__repr__(value)


def _string(text: Any) -> str:
    """``text`` as a JSON string; TypeError for anything but a ``str``."""
    if type(text) is not str:
        raise TypeError(text)
    return _quote(text)
