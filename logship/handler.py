"""``ShipHandler``: the part of logship that runs on the application's threads.

``emit`` resolves what could change after the log call (the message, the
traceback text, the fields bound with ``logship.bind``/``logship.context``)
and puts one tuple in the ring. Everything else (the event, its uuid,
encoding, compression, HTTP) happens on the worker threads, which start on
the first record, not in ``__init__``: ``dictConfig`` builds handlers while
holding logging's module lock and may throw them away.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from typing import Any

from logship import lifecycle
from logship.context import get_context
from logship.lifecycle import WORKER_THREADS
from logship.pure.event import format_exc_info, unformattable
from logship.pure.options import Options, build_options
from logship.ring import Ring
from logship.worker import Worker, spill_reserve
from logship.worker.diagnostics import Warner
from logship.worker.pipeline import Pipeline
from logship.worker.spillfolder import default_spill_dir, has_spilled

_get_ident = threading.get_ident
_yield_gil = time.sleep  # sleep(0) releases the GIL and takes it back
_LogRecord = logging.LogRecord

# Sealed batches between pump and sender, the one in flight included; with
# the pump's open batch, memory holds at most capacity + 3 batches of events.
_MAX_READY = 2

# close() right after flush(None) (as logging.shutdown does) shares flush's
# deadline, so the pair never exceeds shutdown_timeout.
_SHARED_DEADLINE_WINDOW = 1.0


def _format_exception(record: logging.LogRecord) -> str | None:
    if record.exc_text:  # a Formatter already did the work
        return record.exc_text
    ei = record.exc_info
    if not ei or ei[0] is None:
        return None
    return format_exc_info(ei)


class ShipHandler(logging.Handler):
    """A logging handler that ships structured events to an HTTP log aggregator.

    Every option is a keyword argument (the [configuration
    reference][configuration-reference] lists them); only ``url`` is
    required, from the argument or ``LOGSHIP_URL``.
    A wrong option raises ``TypeError`` or ``ValueError`` naming it.
    Delivery problems never raise into the application: they are retried,
    spilled or counted in [`stats()`][logship.ShipHandler.stats].
    """

    def __init__(
        self, url: str | None = None, *, level: int | str = logging.NOTSET, **options: Any
    ):
        opts = build_options({"url": url, **options})
        super().__init__(level)
        self.options: Options = opts
        # Above this many characters one event could not fit the ring at all.
        self._max_event_chars = opts.capacity_bytes
        self._start_lock = threading.Lock()
        self._new_state()
        self._closed = False
        self._exit_deadline: float | None = None
        self._flush_returned = 0.0
        self._spill_dir = (opts.spill_dir or default_spill_dir(opts.url)) if opts.spill else None
        lifecycle.track(self)
        if self._spill_dir and has_spilled(self._spill_dir):
            # Events spilled by an earlier run: replay them now, even if this
            # process never logs anything.
            self._start()

    def _new_state(self) -> None:
        # Everything with a lock or a thread is made anew here, so that a
        # forked child never inherits a lock some parent thread was holding.
        o = self.options
        self._warner = Warner(interval=max(60.0, o.retry_max_backoff))
        # With the spill on, callers yield the GIL to a woken worker now and
        # then (see Ring.put): it keeps up with a burst, or spills it, instead
        # of the ring dropping it.
        pace = o.overflow == "spill" and o.spill
        self._ring = Ring(
            o.capacity, o.capacity_bytes, o.overflow, wake_at=o.batch_max_records, pace=pace
        )
        self._pipeline = Pipeline(self._ring, _MAX_READY)
        self._worker: Worker | None = None
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
        if name.startswith("logship") and (len(name) == 7 or name[7] == "."):
            return False
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
            size = len(message)
            if exception is not None:
                size += len(exception)
                # Don't let the ring keep the traceback's frames (and their locals) alive.
                record = copy.copy(record)
                record.exc_info = None
            if stack is not None:
                size += len(stack)
            if size > self._max_event_chars:
                message, exception, stack, size = self._truncate(message, exception, stack)
            if self._worker is None:
                self._start()
            # get_context(): the fields bound with logship.bind/context in this
            # thread or task (None when none are), one C call; merged on the worker.
            if self._ring.put(record, message, exception, stack, size, get_context()):
                _yield_gil(0)
        except Exception:
            # Nothing may escape into the application's log call; count it.
            with self._ring.lock:
                self._ring.emitted += 1
                self._ring.dropped += 1

    def _truncate(
        self, message: str, exception: str | None, stack: str | None
    ) -> tuple[str, str | None, str | None, int]:
        """Cut an event that could never fit the ring to at most ``capacity_bytes`` characters.

        Each present part (message, traceback, stack) gets an equal share;
        what a short part leaves unused goes to the parts after it.
        """
        note = " …[truncated by logship]"
        texts = (message, exception, stack)
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
        with self._ring.lock:
            self._ring.truncated += 1
        return out[0] or "", out[1], out[2], sum(len(t) for t in out if t)

    def _start(self) -> None:
        with self._start_lock:
            if self._worker is not None or self._closed:
                return
            if self._pid != os.getpid():  # forked without the at-fork hook (rare)
                self._new_state()
            worker = Worker(self.options, self._pipeline, self._warner, self._spill_dir)
            try:
                worker.start()
            except RuntimeError:
                # Python 3.12+ refuses new threads during interpreter shutdown.
                # The event stays in the ring; close() spills it from its own thread.
                pass
            self._worker = worker
            if lifecycle.uwsgi_without_threads():
                self._warner.warn(
                    "uwsgi",
                    "logship: uWSGI runs without enable-threads; logship's worker thread "
                    "cannot run and no log will be shipped. Start uWSGI with --enable-threads.",
                )

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
            worker = self._worker
            if worker is None:
                with self._ring.lock:
                    return not self._ring.items
            return worker.flush(deadline)
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
            if self._worker is not None:
                self._worker.close(deadline)
            else:
                self._ring.close()
        finally:
            super().close()

    def stats(self) -> dict[str, Any]:
        """A consistent snapshot of the handler's counters, in a new dict.

        Cumulative counts since the handler was made: ``emitted``,
        ``adopted``, ``shipped``, ``dropped``, ``rejected``, ``spilled``,
        ``replayed``, ``retries``, ``corrupt``, ``truncated``. Current
        gauges: ``pending``, ``queued``, ``spill_bytes``. The last delivery
        outcome: ``last_success``, ``last_error``, ``last_error_kind``,
        ``last_error_time``. [The reference][the-keys-of-stats] says what each
        key means.

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
        return self._pipeline.snapshot()

    def _reset_after_fork(self) -> None:
        # The child starts empty: the parent still owns and delivers its own events.
        self._start_lock = threading.Lock()
        self._new_state()
        self._exit_deadline = None
        if self._closed:
            self._ring.closed = True

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} url={self.options.url!r} level={level}>"
