"""What the calling thread takes of a record, so that what it hands over cannot change later.

Runs on the application's thread, inside the log call. The ``extra=``
values (and a dict ``msg``, and bound context) are *resolved* here: strings,
numbers, bytes, booleans and None are immutable and kept as they are;
dicts, lists and tuples are copied; anything else becomes its ``repr``,
which is what every encoder would have written for it anyway. So:

- a value the application changes after the call ships as it was at the
  call, not as it is when the worker gets to it;
- no user code (a ``__repr__``, a property) ever runs on logship's worker:
  a slow or failing one costs the thread that logged it, and its own event
  at most, never the shipping of everyone else's;
- the characters of string and bytes values are counted, so that
  ``capacity_bytes`` bounds them too.

Cheap for the common record: ``LogRecord.__init__`` always sets the same
attributes first, so a record's ``extra=`` keys are those after them, and
a record with none costs one ``len``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from itertools import islice
from typing import Any

from logship.pure.event import INIT_RECORD_ATTRS, STANDARD_RECORD_ATTRS, safe_repr

#: How many attributes ``LogRecord.__init__`` sets: a record with no more has no ``extra=``.
N_INIT = len(INIT_RECORD_ATTRS)

#: Types whose values cannot change: kept as they are.
IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})
_MAX_DEPTH = 32
#: The most values one ``extra=`` value may hold, every level counted: past
#: it the rest is cut. A value that holds itself twice (``l.append(l)``
#: twice) has 2**32 paths to its depth limit, a huge list takes the caller
#: as long to copy as to build: either would stall the log call.
MAX_VALUES = 10_000
#: Characters a number, a boolean or None inside a container counts for in
#: ``capacity_bytes``, about what JSON writes for it: a list of a million
#: integers must weigh something in the ring's bound.
SCALAR_CHARS = 8
_LogRecord = logging.LogRecord


def resolve(value: Any) -> tuple[Any, int]:
    """``value`` made safe to hand to another thread, and the characters of its text.

    Immutable scalars are kept; dicts, lists and tuples are copied (tuples
    as lists, as JSON and msgpack write them); anything else is its
    ``repr``. Keys that are not strings become text as JSON writes them
    (:func:`key_text`). A container past 32 levels of nesting is
    ``"<too deep>"``, one that holds itself ``"<cycle>"``; past
    :data:`MAX_VALUES` values in all, the rest of a container is cut,
    and a last item (a list's) or key ``"…"`` (a dict's) says how many
    values went.
    """
    kind = type(value)
    if kind in IMMUTABLE:
        return value, len(value) if kind is str or kind is bytes else 0
    return _Copy().of(value, 0)


class _Copy:
    """One :func:`resolve`: the containers on the current path, and the values left."""

    __slots__ = ("left", "path")

    def __init__(self) -> None:
        self.path: set[int] = set()
        self.left = MAX_VALUES

    def of(self, value: Any, depth: int) -> tuple[Any, int]:
        kind = type(value)
        if kind in IMMUTABLE:
            return value, len(value) if kind is str or kind is bytes else SCALAR_CHARS
        # Subclasses of str, int and float (enums among them) are written as
        # their plain value by every encoder: take that value, never a __str__.
        if isinstance(value, str):
            text = str.__str__(value)
            return text, len(text)
        if isinstance(value, int):
            return int.__index__(value), SCALAR_CHARS
        if isinstance(value, float):
            return float.__float__(value), SCALAR_CHARS
        is_dict = isinstance(value, dict)
        if not (is_dict or isinstance(value, (list, tuple))):
            text = safe_repr(value)
            return text, len(text)
        if depth >= _MAX_DEPTH:
            return "<too deep>", 10
        key = id(value)
        if key in self.path:
            return "<cycle>", 7
        self.path.add(key)
        try:
            return self._dict(value, depth) if is_dict else self._list(value, depth)
        finally:
            self.path.discard(key)

    def _dict(self, value: dict[Any, Any], depth: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        chars = 2
        # No more than the budget can take: a dict of a million keys is not copied whole.
        pairs = list(islice(value.items(), max(self.left, 0) + 1))
        for n, (k, v) in enumerate(pairs):
            if self.left <= 0:
                out["…"] = cut = f"<{len(value) - n} more cut>"
                return out, chars + len(cut) + 1
            self.left -= 1
            k = k if type(k) is str else key_text(k)
            out[k], size = self.of(v, depth + 1)
            chars += size + len(k)
        return out, chars

    def _list(self, value: list[Any] | tuple[Any, ...], depth: int) -> tuple[list[Any], int]:
        items = []
        chars = 2
        values = list(islice(value, max(self.left, 0) + 1))
        for n, v in enumerate(values):
            if self.left <= 0:
                items.append(cut := f"<{len(value) - n} more cut>")
                return items, chars + len(cut)
            self.left -= 1
            v, size = self.of(v, depth + 1)
            items.append(v)
            chars += size
        return items, chars


def key_text(key: Any) -> str:
    """A mapping key that is not a plain string, as JSON writes it (``1``, ``true``, ``null``).

    Any other key becomes its ``repr``: every encoding then ships the same keys.
    """
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return safe_repr(int.__index__(key))  # past 4300 digits: "<int of N bits>"
    if isinstance(key, float):
        return float.__repr__(key)
    if isinstance(key, str):
        return str.__str__(key)
    return safe_repr(key)


def resolve_mapping(mapping: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """Each value of ``mapping`` resolved (see :func:`resolve`), and their characters."""
    out: dict[str, Any] = {}
    chars = 0
    for key, value in mapping.items():
        if type(value) in IMMUTABLE:
            if type(value) is str or type(value) is bytes:
                chars += len(value)
        else:
            value, n = resolve(value)
            chars += n
        out[key] = value
    return out, chars


def extras_of(record: logging.LogRecord) -> tuple[dict[str, Any] | None, int]:
    """The record's ``extra=`` attributes, resolved, and their characters; None when it has none.

    Attributes a filter or another handler's formatter added are taken too
    (a formatter's ``message`` and ``asctime`` are not extras).
    """
    attrs = record.__dict__
    # Past the attributes __init__ sets, in order; a record of another type
    # (a factory's subclass) may set its own among them: read them all.
    tail = islice(attrs.items(), N_INIT, None) if type(record) is _LogRecord else attrs.items()
    out: dict[str, Any] | None = None
    chars = 0
    for key, value in tail:
        if key in STANDARD_RECORD_ATTRS:
            continue
        kind = type(value)
        if kind is str or kind is bytes:
            chars += len(value)
        elif kind not in IMMUTABLE:
            value, n = resolve(value)
            chars += n
        if out is None:
            out = {}
        out[key] = value
    return out, chars
