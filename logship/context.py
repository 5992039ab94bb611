"""Per-request and per-task fields: :func:`context`, :func:`bind` and :func:`unbind`.

The fields live in one :class:`contextvars.ContextVar` holding an immutable
mapping (a new one for every change, never mutated), so each thread and each
asyncio task sees its own: a task starts with a copy of its creator's
context, a new thread starts with none. ``ShipHandler.emit`` captures the
current mapping with one ``ContextVar.get()``; the worker merges it into the
event after ``fields`` and before ``extra=``.

>>> import logship
>>> with logship.context(request_id="r-1"):
...     dict(logship.context.current())
{'request_id': 'r-1'}
>>> dict(logship.context.current())
{}
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType, TracebackType
from typing import Any

from logship.pure.options import CORE_FIELDS
from logship.pure.snapshot import resolve

__all__ = ["bind", "context", "unbind"]

Fields = Mapping[str, Any]

_EMPTY: Fields = MappingProxyType({})

#: ``None`` while nothing is bound, so the worker has nothing to merge.
CONTEXT: ContextVar[Fields | None] = ContextVar("logship_context", default=None)

#: What ``ShipHandler.emit`` calls: one C-level call, no Python frame.
get_context = CONTEXT.get


def _bindable(kv: dict[str, Any]) -> dict[str, Any]:
    # Refused here, where the mistake is made, as `fields=` is at construction:
    # an event's core fields are never replaced.
    core = sorted(k for k in kv if k in CORE_FIELDS)
    if core:
        raise ValueError(f"logship: context may not set the core event field(s) {core}")
    # Resolved once, here, as extra= values are at each call: a list changed
    # after it was bound ships as it was bound, and no __repr__ of a bound
    # object ever runs on the worker (or, with durability="crash", inside the
    # log call's critical section).
    return {key: resolve(value)[0] for key, value in kv.items()}


def _merged(kv: dict[str, Any]) -> Fields:
    current = CONTEXT.get()
    return MappingProxyType({**current, **kv} if current else kv)


def bind(**fields: Any) -> None:
    """Add ``fields`` to every event logged from now on in this thread or asyncio task.

    They stay until [`unbind`][logship.unbind], or until the task ends; a
    key bound again takes the new value. A thread that serves one request
    after another keeps them across requests: there, prefer
    ``with logship.context(...)``, which restores what was bound before.

    Args:
        **fields: Event fields and their values, resolved now as ``extra=``
            values are at each log call: strings, numbers, booleans and
            None as they are, dicts, lists and tuples copied, any other
            object as its ``repr``.

    Raises:
        ValueError: A name of a core event field (``message``, ``level``,
            ``uuid``, …), which is never replaced.

    Examples:
        >>> import logship
        >>> logship.bind(tenant="acme", job="nightly")
        >>> dict(logship.context.current())
        {'tenant': 'acme', 'job': 'nightly'}
        >>> logship.unbind("job")
        >>> dict(logship.context.current())
        {'tenant': 'acme'}
        >>> logship.unbind("tenant")
    """
    if fields:
        CONTEXT.set(_merged(_bindable(fields)))


def unbind(*keys: str) -> None:
    """Remove ``keys`` from the fields bound in this thread or task; absent keys are ignored.

    It undoes [`bind`][logship.bind]. Inside a ``with logship.context(...)``
    block, the block's exit restores what was bound before it, keys
    removed meanwhile included.

    Args:
        *keys: Names of bound fields.
    """
    current = CONTEXT.get()
    if not current or not any(k in current for k in keys):
        return
    rest = {k: v for k, v in current.items() if k not in keys}
    CONTEXT.set(MappingProxyType(rest) if rest else None)


class context:  # lower case: used like a function, `with logship.context(...)`
    """Add ``fields`` to the events logged inside a ``with`` block, then restore the previous ones.

    ``with logship.context(request_id=rid): ...`` binds on entry and restores
    what was bound before on exit, even on an exception, in this thread or
    asyncio task only. Blocks nest; an inner block's value for a key wins
    until it exits. The ``as`` target is the whole mapping in effect inside
    the block (read-only). One ``context`` object can be entered again once
    it has exited, but not while it is entered.

    Args:
        **fields: Event fields and their values, as for [`bind`][logship.bind].

    Raises:
        ValueError: A name of a core event field (``message``, ``level``,
            ``uuid``, …), when the object is made.

    Examples:
        >>> import logship
        >>> with logship.context(request_id="r-1", user="ada") as bound:
        ...     with logship.context(user="bob"):
        ...         dict(logship.context.current())
        ...     dict(bound)
        {'request_id': 'r-1', 'user': 'bob'}
        {'request_id': 'r-1', 'user': 'ada'}
        >>> dict(logship.context.current())
        {}
    """

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = _bindable(fields)
        self._token: Token[Fields | None] | None = None

    @staticmethod
    def current() -> Fields:
        """The fields bound in this thread or task now, as a read-only mapping.

        Examples:
            >>> import logship
            >>> with logship.context(request_id="r-1"):
            ...     logship.context.current()["request_id"]
            'r-1'
        """
        return CONTEXT.get() or _EMPTY

    def __enter__(self) -> Fields:
        if self._token is not None:
            raise RuntimeError("logship: this context() block is already entered")
        merged = _merged(dict(self._fields))
        self._token = CONTEXT.set(merged)
        return merged

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            CONTEXT.reset(token)
