"""Trace context: the ids of OpenTelemetry's current span, read on the calling thread.

When OpenTelemetry's API is installed and a span is recording in the thread
or asyncio task that logs, the event carries ``trace_id`` (32 lowercase hex
digits) and ``span_id`` (16), so a log line can be found from its trace and
the other way round (SPEC section 10). Importing logship never imports
OpenTelemetry: a handler looks for it when it is built (``trace_context=True``,
the default), and imports it then only if it is installed.

The current span lives in a context variable of OpenTelemetry's. A
:class:`Reader` is two steps: ``probe(None)``, that variable's own ``get``, a
single C call that the handler makes inline on every log call and that finds
nothing when no context is attached (the common case in a service between
requests, and in every test); and ``read(context)``, the ids of the span the
probe found, when one did. Going through ``opentelemetry.trace.get_current_span()``
on every call would cost ten times the probe. Where the variable is not where
this version of OpenTelemetry keeps it, the public API is used instead
(:func:`reader`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, NamedTuple, TypeAlias

#: The ids of a span: ``{"trace_id": ..., "span_id": ...}``, or None.
SpanIds: TypeAlias = "dict[str, str] | None"


class Reader(NamedTuple):
    """How the calling thread finds the current span's ids, in two steps (see the module)."""

    #: Called with None: something true when a span may be current, else a false value.
    probe: Callable[[None], Any]
    #: Called with what the probe returned: the span's ids, or None.
    read: Callable[[Any], SpanIds]

    def __call__(self) -> SpanIds:
        """Both steps: the current span's ids, or None."""
        found = self.probe(None)
        return self.read(found) if found else None


def _ids(span: Any) -> dict[str, str] | None:
    """The ids of ``span`` when it is recording; None for no span, or one not recording."""
    try:
        if span is None or not span.is_recording():
            return None
        ctx = span.get_span_context()
        trace_id, span_id = ctx.trace_id, ctx.span_id
        if not trace_id or not span_id:
            return None
        return {"trace_id": format(trace_id, "032x"), "span_id": format(span_id, "016x")}
    except Exception:  # a span of another implementation: no ids, never an error
        return None


def reader() -> Reader | None:
    """How to read the current span's ids on the calling thread; None without OpenTelemetry."""
    try:
        if importlib.util.find_spec("opentelemetry") is None:
            return None
        from opentelemetry import trace
    except (ImportError, ValueError):  # not installed, or not importable: no trace context
        return None
    fast = _context_reader()
    if fast is not None:
        return fast

    def always(_default: None) -> bool:
        return True

    def public(_found: Any) -> SpanIds:
        return _ids(trace.get_current_span())

    return Reader(always, public)


def _context_reader() -> Reader | None:
    """A reader of OpenTelemetry's context variable itself, when it is where expected."""
    try:
        import opentelemetry.context as otel_context
        from opentelemetry.trace.propagation import _SPAN_KEY
    except ImportError:
        return None
    variable = getattr(getattr(otel_context, "_RUNTIME_CONTEXT", None), "_current_context", None)
    if not isinstance(variable, ContextVar) or not isinstance(_SPAN_KEY, str):
        return None

    def read(current: Mapping[str, Any]) -> SpanIds:
        return _ids(current.get(_SPAN_KEY))

    # get(None): None when no context is attached, an empty one when it holds nothing.
    return Reader(variable.get, read)
