"""logship's own voice: rate-limited warnings on the ``logship`` logger.

Records of the ``logship`` logger never enter a ShipHandler (see
``ShipHandler.handle``), so these can go to any other handler without loops.
When no other handler would show them (a ShipHandler alone on the root
logger, as a minimal setup has it), they go to ``logging.lastResort``
(standard error) instead: an aggregator that is down must not be silent.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("logship")


def _shown_elsewhere(level: int) -> bool:
    """Whether a handler that takes the ``logship`` logger's records would show one of ``level``.

    ShipHandlers do not count: they refuse these records. Logging itself
    falls back to ``lastResort`` only when a logger chain has no handler at
    all, so a chain whose only handlers are ShipHandlers would swallow them.
    """
    lg: logging.Logger | None = logger
    while lg is not None:
        for h in lg.handlers:
            if not getattr(h, "refuses_logship_records", False) and level >= h.level:
                return True
        if not lg.propagate:
            return False
        lg = lg.parent
    return False


class Warner:
    """Says each distinct problem at most once per ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def warn(self, key: str, message: str, *args: object, interval: float | None = None) -> bool:
        """Log ``message`` unless ``key`` was said within the interval; True if logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < (interval or self.interval):
                return False
            self._last[key] = now
        try:
            if not logger.isEnabledFor(logging.WARNING):
                return True  # silenced on purpose: logging.getLogger("logship").setLevel(...)
            last_resort = logging.lastResort
            if last_resort is None or _shown_elsewhere(logging.WARNING):
                logger.warning(message, *args)
            else:
                record = logger.makeRecord(
                    logger.name, logging.WARNING, __file__, 0, message, args, None
                )
                last_resort.handle(record)
        except Exception:
            pass  # a broken handler elsewhere must not stop the worker
        return True
