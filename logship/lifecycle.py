"""Process life: which threads are logship's, and what a forked child resets.

``WORKER_THREADS`` holds the thread idents of every live logship worker
thread; ``ShipHandler.handle`` refuses records emitted on them, so the
libraries the worker uses (urllib3, requests, filelock) can log freely
without a record ever looping back into a ShipHandler.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from logship.pure import uuid7


class _ForkAware(Protocol):
    def _reset_after_fork(self) -> None: ...


WORKER_THREADS: set[int] = set()
_handlers: weakref.WeakSet[Any] = weakref.WeakSet()
_uwsgi_warned = False


def track(handler: _ForkAware) -> None:
    """Reset ``handler`` in every forked child (and list it in :func:`live_handlers`)."""
    _handlers.add(handler)


def live_handlers() -> list[Any]:
    """Every handler of this process not yet garbage-collected (closed ones included)."""
    return list(_handlers)


def _after_fork_in_child() -> None:
    # The parent's worker threads do not exist here; their idents may be reused.
    WORKER_THREADS.clear()
    uuid7.reset_after_fork()
    for handler in list(_handlers):
        try:
            handler._reset_after_fork()
        except Exception:
            pass  # a fork must never fail because of logging


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def start_worker_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Start a daemon thread whose records are never shipped.

    Daemon, because non-daemon threads are joined before ``atexit`` runs
    ``logging.shutdown``, which is what closes the handler. Raises
    ``RuntimeError`` when threads can no longer start (interpreter shutdown).
    """

    def main() -> None:
        ident = threading.get_ident()
        WORKER_THREADS.add(ident)
        try:
            target()
        finally:
            WORKER_THREADS.discard(ident)

    thread = threading.Thread(target=main, name=name, daemon=True)
    thread.start()
    return thread


def uwsgi_without_threads() -> bool:
    """True under uWSGI when ``enable-threads`` is off: the worker would never run."""
    global _uwsgi_warned
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None or _uwsgi_warned:
        return False
    opt = getattr(uwsgi, "opt", {}) or {}
    enabled = opt.get("enable-threads") or opt.get(b"enable-threads")
    _uwsgi_warned = True
    return not enabled


# The libraries whose loggers logship's worker threads may call.
_WORKER_LIBRARIES = frozenset({"urllib3", "requests", "filelock", "charset_normalizer", "logship"})
_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)


def warm_logger_caches() -> None:
    """Fill the level caches of the loggers logship's worker threads call, from this thread.

    A cache miss in ``Logger.isEnabledFor`` takes logging's module lock, and
    ``dictConfig`` holds that lock while it flushes and closes the handlers it
    replaces: a worker thread whose urllib3 logger had just lost its cache
    (``dictConfig`` clears every cache) would wait for the lock while
    ``dictConfig`` waits for the worker, until the flush gave up and the
    batch in flight was counted lost although it arrived. Called before
    ``flush`` and ``close`` wait: the lock is re-entrant, so this works when
    the caller holds it, and while the caller holds it no one can clear the
    caches again.
    """
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".", 1)[0] in _WORKER_LIBRARIES:
            for level in _LEVELS:
                logger.isEnabledFor(level)
