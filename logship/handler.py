"""``ShipHandler``: the part of logship that runs on the application's threads.

``emit`` resolves what could change after the log call (the message, the
traceback text, the ``extra=`` values, the fields bound with
``logship.bind``/``logship.context``) and hands one item to the worker.
Everything else (the event, its uuid, encoding, compression, the network,
the spill) happens behind :class:`~logship.worker.Worker`, whose threads
start on the first record, not in ``__init__``: ``dictConfig`` builds
handlers while holding logging's module lock and may throw them away.
"""

from __future__ import annotations

import inspect
import logging
import operator
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

from logship import lifecycle, tracecontext
from logship.context import get_context
from logship.lifecycle import WORKER_THREADS
from logship.pure.event import (
    INIT_RECORD_ATTRS,
    STANDARD_RECORD_ATTRS,
    Origin,
    dict_message,
    format_exc_info,
    safe_repr,
    unformattable,
)
from logship.pure.options import (
    OPTION_NAMES,
    Options,
    build_options,
    check_names,
    make_folder,
)
from logship.pure.redact_url import redact_url
from logship.pure.snapshot import IMMUTABLE, N_INIT, extras_of, resolve
from logship.worker import Worker, spill_reserve
from logship.worker.diagnostics import Warner
from logship.worker.spill.folder import default_spill_dir, has_regions, has_spilled
from logship.worker.tokens import file_mode_problem

_get_ident = threading.get_ident
_yield_gil = time.sleep  # sleep(0) releases the GIL and takes it back
_new = tuple.__new__  # an Origin without NamedTuple.__new__'s Python-level call
# The record's attributes an Origin holds, read in one C call.
_origin_of = operator.attrgetter(*Origin._fields)
_LogRecord = logging.LogRecord
_reversed = reversed
# The logger logship speaks on (worker.diagnostics); its children are refused too.
_OWN_LOGGERS = frozenset({"logship"})
# For the attributes logging sets: True for those LogRecord.__init__ sets
# (extra= comes after them), False for those a Formatter adds (message, asctime).
_ROLE = {name: name in INIT_RECORD_ATTRS for name in STANDARD_RECORD_ATTRS}

# close() right after flush(None) (as logging.shutdown does) shares flush's
# deadline, so the pair never exceeds shutdown_timeout.
_SHARED_DEADLINE_WINDOW = 1.0


def _no_ids(_found: Any) -> None:
    """The trace reader of a handler without trace context (never called)."""
    return None


def _format_exception(record: logging.LogRecord) -> str | None:
    if record.exc_text:  # a Formatter already did the work
        return record.exc_text
    ei = record.exc_info
    if not ei or ei[0] is None:
        return None
    return format_exc_info(ei)


_H = TypeVar("_H", bound="ShipHandler")


class ShipHandler(logging.Handler):
    """A logging handler that ships structured events to an HTTP log aggregator.

    Every option is a keyword argument (the [configuration
    reference][configuration-reference] lists them); only ``url`` is
    required, from the argument or ``LOGSHIP_URL``.
    A wrong option raises ``TypeError`` or ``ValueError`` naming it.
    Delivery problems never raise into the application: they are retried,
    spilled or counted in [`stats()`][logship.ShipHandler.stats].
    """

    #: Records of the ``logship`` logger never enter this handler: logship's
    #: own warnings look for another handler to show them (see ``worker.diagnostics``).
    refuses_logship_records = True

    def __new__(cls: type[_H], *args: Any, **kwargs: Any) -> _H:
        # Python's own error for an unknown keyword names it but suggests
        # nothing; checking here, before __init__'s explicit parameters
        # refuse it, lets a typo in a dictConfig entry say what was meant.
        check_names(k for k in kwargs if k != "level")
        return super().__new__(cls)

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        level: int | str = logging.NOTSET,
        balance: Literal["failover", "round_robin"] = "failover",
        protocol: Literal["http", "forward", "splunk", "elasticsearch", "otlp", "loki"] = "http",
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        headers: Mapping[str, str] | None = None,
        fields: Mapping[str, Any] | None = None,
        encoding: Literal["json", "ndjson", "msgpack"] = "json",
        compress: bool = True,
        batch_max_records: int = 1000,
        batch_max_bytes: int = 1024 * 1024,
        flush_interval: float = 1.0,
        capacity: int = 10_000,
        capacity_bytes: int = 16 * 1024 * 1024,
        overflow: Literal["spill", "drop_oldest", "drop_newest", "block"] = "spill",
        spill: bool = True,
        spill_dir: str | os.PathLike[str] | None = None,
        spill_max_bytes: int = 256 * 1024 * 1024,
        spill_key: str | None = None,
        durability: Literal["memory", "crash"] = "memory",
        verify: bool = True,
        ca_file: str | os.PathLike[str] | None = None,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
        tls_min_version: Literal["1.2", "1.3"] = "1.2",
        timeout: float = 10.0,
        retry_max_backoff: float = 60.0,
        shutdown_timeout: float = 5.0,
        trace_context: bool = True,
        tag: str | None = None,
        index: str | None = None,
        source: str | None = None,
        sourcetype: str | None = None,
        labels: list[str] | None = None,
    ) -> None:
        """Check every option and build the handler; no thread starts here.

        The [configuration reference][configuration-reference] describes
        each option (one line each in ``logship.pure.options.Options``). A
        wrong option raises ``TypeError`` or ``ValueError`` naming it.
        """
        given = locals()
        opts = build_options({name: given[name] for name in OPTION_NAMES})
        try:
            super().__init__(level)
        except (TypeError, ValueError) as e:  # logging's own says neither option nor names
            raise type(e)(
                f"logship: option 'level' is {level!r}, not a level: a number, or a "
                "name logging knows, in capitals: 'DEBUG', 'INFO', 'WARNING', 'ERROR'..."
            ) from None
        self.options: Options = opts
        # Above this many characters one event could not fit the ring at all.
        self._max_event_chars = opts.capacity_bytes
        # Looked for now, not when logship is imported (SPEC section 10).
        trace = tracecontext.reader() if opts.trace_context else None
        self._trace_probe = trace.probe if trace is not None else None
        self._trace_read = trace.read if trace is not None else _no_ids
        self._start_lock = threading.Lock()
        self._closed = False
        self._exit_deadline: float | None = None
        self._flush_returned = 0.0
        self._spill_dir = (opts.spill_dir or default_spill_dir(opts.url)) if opts.spill else None
        if opts.spill and opts.spill_dir:
            make_folder("spill_dir", opts.spill_dir)
        self._new_worker()
        if opts.token_file:
            problem = file_mode_problem(opts.token_file)
            if problem:  # said now, where the configuration is made, and again if it persists
                self._warner.warn(
                    "token-file-mode", "logship: the token file %s %s.", opts.token_file, problem
                )
        lifecycle.track(self)
        if self._spill_dir and (has_spilled(self._spill_dir) or has_regions(self._spill_dir)):
            # Events spilled by an earlier run, or left in its region: replay
            # them now, even if this process never logs anything.
            self._worker.start()

    def _new_worker(self) -> None:
        # Everything with a lock or a thread is made anew here, so that a
        # forked child never inherits a lock some parent thread was holding.
        o = self.options
        self._warner = Warner(interval=max(60.0, o.retry_max_backoff))
        self._worker = Worker(o, self._spill_dir, self._warner)
        self._pid = os.getpid()

    # -- the application's thread --------------------------------------------

    def handle(self, record: logging.LogRecord) -> Any:
        """Apply the handler's filters, then [`emit`][logship.ShipHandler.emit] the record.

        ``logging`` calls this for every record that reaches the handler.
        Unlike ``logging.Handler.handle`` it takes no handler lock (the ring
        has its own), so logging threads never wait on each other here.
        Records of the ``logship`` logger, and records made on a logship
        worker thread, are refused before any filter sees them, so logging
        can never recurse into the worker or wait on a lock it holds.

        Args:
            record: The record to ship.

        Returns:
            ``True`` when the record was emitted, or on Python 3.12+ the
            record a filter returned in its place (the one emitted); a false
            value when the record was refused.
        """
        name = record.name
        try:
            if name in _OWN_LOGGERS or name[:8] == "logship.":
                return False
        except Exception:  # not text: a record made by hand (makeLogRecord); the event has its repr
            pass
        thread = record.thread
        if (thread if thread is not None else _get_ident()) in WORKER_THREADS:
            return False
        if not self.filters:  # the common case; skips a Python-level call
            self.emit(record)
            return True
        rv = self.filter(record)
        if not rv:
            return rv
        if isinstance(rv, _LogRecord):  # Python 3.12+: a filter may replace the record
            record = rv
        self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record`` for the worker threads; never blocks (unless ``overflow="block"``).

        On the calling thread it resolves what could change after the log
        call (``record.getMessage()``, the traceback text, the fields bound
        with [`context`][logship.context.context] or [`bind`][logship.bind]) and puts
        one item in the bounded ring; the first record starts the worker
        threads. It never touches the network or the disk, and never raises:
        a record that cannot be queued is counted in ``dropped``.

        When the ring is full, ``overflow`` decides: the worker moves the
        oldest events to the spill (``"spill"``; the ring drops them only if
        the worker falls behind), the oldest or this event is dropped
        (``"drop_oldest"``, ``"drop_newest"``), or the call waits for room
        (``"block"``). An event larger than ``capacity_bytes``
        characters is cut to fit and counted in ``truncated``.

        Args:
            record: The record to ship. ``logging`` calls this through
                [`handle`][logship.ShipHandler.handle]; calling it directly
                skips the filters (a ``RedactFilter`` among them).
        """
        try:
            try:
                message = record.getMessage()
            except Exception as e:
                message = unformattable(record, e)
            exception = _format_exception(record) if record.exc_info or record.exc_text else None
            stack = record.stack_info
            payload = None
            msg = record.msg
            if type(msg) is not str and isinstance(msg, dict) and not record.args:
                # structlog's event dict (or logger.info({...})): its fields are unpacked now,
                # while an exception it names is still the one being handled.
                fields, message, exception, stack = dict_message(msg, exception, stack)
                payload, size = resolve(fields)
                size += len(message)
            else:
                size = len(message)
            if exception is not None:
                size += len(exception)
            if stack is not None:
                size += len(stack)
            extras = None
            attrs = record.__dict__
            if len(attrs) > N_INIT:  # extra=, or attributes a filter or formatter added
                if type(record) is _LogRecord:
                    # Inline, and from the end: a record's extra= attributes come
                    # after those LogRecord.__init__ sets, and this runs on
                    # every call that passes extra= (see pure.snapshot).
                    for key in _reversed(attrs):
                        role = _ROLE.get(key)
                        if role is not None:
                            if role:
                                break  # the last attribute LogRecord.__init__ set
                            continue  # a formatter's
                        value = attrs[key]
                        kind = type(value)
                        if kind is str or kind is bytes:
                            size += len(value)
                        elif kind not in IMMUTABLE:
                            value, chars = resolve(value)
                            size += chars
                        if extras is None:
                            extras = {key: value}
                        else:
                            extras[key] = value
                    if extras is not None and len(extras) > 1:
                        extras = dict(_reversed(extras.items()))  # in the order given
                else:
                    extras, chars = extras_of(record)
                    size += chars
            # OpenTelemetry's current span: one C call finds none, in the common case.
            trace_probe = self._trace_probe
            if trace_probe is not None:
                found = trace_probe(None)
                if found:
                    ids = self._trace_read(found)
                    if ids is not None:  # extra= may set its own: it wins, as over fields=
                        extras = ids if extras is None else {**ids, **extras}
            if size > self._max_event_chars:
                message, exception, stack, extras, size = self._truncate(
                    message, exception, stack, extras
                )
            # What the worker reads of the record, copied now (see pure.event.Origin).
            try:
                origin: Any = _new(Origin, _origin_of(record))
            except Exception:  # an odd record: the worker reads what it can, else falls back
                origin = record
            # get_context(): the fields bound with logship.bind/context in this
            # thread or task (None when none are), one C call.
            if self._worker.put(
                origin, message, exception, stack, size, get_context(), extras, payload
            ):
                _yield_gil(0)
        except Exception:
            # Nothing may escape into the application's log call; count it.
            self._worker.lost()

    def _truncate(
        self,
        message: str,
        exception: str | None,
        stack: str | None,
        extras: dict[str, Any] | None,
    ) -> tuple[str, str | None, str | None, dict[str, Any] | None, int]:
        """Cut an event that could never fit the ring to at most ``capacity_bytes`` characters.

        Each present part (message, traceback, stack, each ``extra=`` value)
        gets an equal share; what a short part leaves unused goes to the
        parts after it. An ``extra=`` value that is not text is cut as its repr.
        """
        note = " …[truncated by logship]"
        names = list(extras or ())
        texts: list[str | None] = [message, exception, stack]
        for name in names:
            value = extras[name] if extras is not None else None
            texts.append(
                value
                if isinstance(value, str)
                else value.decode("utf-8", "backslashreplace")
                if isinstance(value, bytes)
                else None
                if value is None or isinstance(value, (int, float))
                else safe_repr(value)
            )
        present = sum(t is not None for t in texts)
        budget = self._max_event_chars
        out: list[str | None] = []
        for text in texts:
            if text is None:
                out.append(None)
                continue
            share = budget // present
            present -= 1
            if len(text) > share:
                text = text[: share - len(note)] + note if share > len(note) else text[:share]
            budget -= len(text)
            out.append(text)
        if extras is not None:
            extras = {
                name: extras[name] if cut is None else cut
                for name, cut in zip(names, out[3:], strict=True)
            }
        self._worker.note_truncated()
        return out[0] or "", out[1], out[2], extras, sum(len(t) for t in out if t)

    # -- lifecycle -----------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until every event emitted so far is delivered, or until a deadline.

        Args:
            timeout: Seconds to wait at most. ``None`` (what
                ``logging.shutdown`` passes) means ``shutdown_timeout``, less
                the time [`close`][logship.ShipHandler.close] keeps to spill
                what is still undelivered.

        Returns:
            ``True`` as soon as every event emitted before the call has left
            for good: delivered, or dropped or rejected and counted in
            [`stats()`][logship.ShipHandler.stats]. ``False`` when the
            deadline passes first; the undelivered events stay queued or
            spilled, and are still sent.

        Examples:
            >>> import logging, logship
            >>> handler = logship.ShipHandler(url="http://127.0.0.1:9880/app")
            >>> handler.flush(timeout=1.0)  # nothing emitted yet
            True
            >>> log = logging.getLogger("billing")
            >>> log.addHandler(handler)
            >>> # Shipping needs a receiver on 127.0.0.1:9880 (`logship receive`):
            >>> log.warning("invoice %s sent twice", "INV-7")  # doctest: +SKIP
            >>> handler.flush(timeout=5.0)  # doctest: +SKIP
            True
            >>> log.removeHandler(handler)
            >>> handler.close()
        """
        now = time.monotonic()
        if timeout is None:
            # logging.shutdown calls flush() then close() with one budget: stop
            # delivering early enough that close() can still spill the rest.
            self._exit_deadline = now + self.options.shutdown_timeout
            deadline = self._exit_deadline - spill_reserve(self.options.shutdown_timeout)
        else:
            deadline = now + max(0.0, timeout)
        try:
            return self._worker.flush(deadline, exiting=timeout is None)
        finally:
            self._flush_returned = time.monotonic()

    def close(self) -> None:
        """Stop the worker threads, delivering what can be delivered by a deadline.

        The deadline is ``shutdown_timeout`` seconds from now; right after
        ``flush()`` with no argument (as ``logging.shutdown`` calls them at
        interpreter exit) the two share one ``shutdown_timeout``. What is not
        delivered by then is spilled, to be replayed by the next handler for
        the same endpoint, or, with ``spill=False``, counted in ``dropped``.

        Idempotent. A record emitted after ``close()`` is counted in
        ``emitted`` and ``dropped``; it never raises.
        """
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
        now = time.monotonic()
        deadline = now + self.options.shutdown_timeout
        if self._exit_deadline is not None and now - self._flush_returned < _SHARED_DEADLINE_WINDOW:
            deadline = max(now + 0.01, min(deadline, self._exit_deadline))
        try:
            self._worker.close(deadline)
        finally:
            super().close()

    def stats(self) -> dict[str, Any]:
        """A consistent snapshot of the handler's counters, in a new dict.

        Cumulative counts since the handler was made: ``emitted``,
        ``adopted``, ``shipped``, ``dropped``, ``rejected``, ``spilled``,
        ``replayed``, ``retries``, ``corrupt``, ``truncated``,
        ``not_durable``. Current gauges: ``pending``, ``queued``,
        ``spill_bytes``, ``spill_refused``. The last delivery
        outcome: ``last_success``, ``last_error``, ``last_error_kind``,
        ``last_error_time``; ``cert_expiry``, when the server's
        certificate expires; and ``endpoints``, each endpoint's view.
        [The reference][the-keys-of-stats] says what each key means.

        Every event is in exactly one of shipped, dropped, rejected or
        pending: ``emitted + adopted == shipped + dropped + rejected +
        pending`` always holds.

        Returns:
            Each key above mapped to an ``int``; the ``last_*`` keys to a Unix
            time (``float``) or a ``str``, or ``None`` until there is one.

        Examples:
            >>> import logship
            >>> handler = logship.ShipHandler(url="http://127.0.0.1:9880/app")
            >>> s = handler.stats()
            >>> s["emitted"], s["shipped"], s["pending"], s["last_success"]
            (0, 0, 0, None)
            >>> accounted = s["shipped"] + s["dropped"] + s["rejected"] + s["pending"]
            >>> s["emitted"] + s["adopted"] == accounted
            True
            >>> handler.close()
        """
        return self._worker.stats()

    def _reset_after_fork(self) -> None:
        # The child starts empty: the parent still owns and delivers its own events.
        self._start_lock = threading.Lock()
        self._new_worker()
        self._exit_deadline = None
        if self._closed:
            self._worker.close(time.monotonic())

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        shown = ",".join(redact_url(u) for u in self.options.url)
        return f"<{type(self).__name__} url={shown!r} level={level}>"


# help() and inspect.signature() would show __new__'s (*args, **kwargs): show
# the options instead, as __init__ spells them out.
_init = inspect.signature(ShipHandler.__init__)
ShipHandler.__signature__ = _init.replace(  # type: ignore[attr-defined]
    parameters=list(_init.parameters.values())[1:]
)
del _init
