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
from logship.worker.spillfolder import default_spill_dir, has_spilled, load_folder_lock

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

    Every option is a keyword argument (SPEC section 2); only ``url`` is
    required, from the argument or ``LOGSHIP_URL``. A wrong option raises
    ``TypeError`` or ``ValueError`` naming it. Delivery problems never raise
    into the application: they are retried, spilled or counted in
    :meth:`stats`.
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
        if self._spill_dir:
            load_folder_lock()
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
        """Filter, then emit, without the handler lock (the ring has its own).

        Records of the ``logship`` logger and records made on a logship
        worker thread are refused first, so logging can never recurse into
        the worker or wait on a lock the worker holds.
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
        """Queue ``record``; never blocks (unless ``overflow="block"``) and never raises."""
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
        """Return True once every event emitted so far is delivered, False at the deadline.

        The deadline is ``timeout`` seconds, or ``shutdown_timeout`` when None
        (``logging.shutdown`` calls ``flush()`` with no argument).
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
        """Stop the worker, delivering what can be delivered within ``shutdown_timeout``.

        Idempotent. Events logged afterwards are counted in ``dropped``.
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
        """A snapshot of counters (SPEC section 2).

        ``emitted + adopted == shipped + dropped + rejected + pending`` always holds.
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
