"""logship's own voice: rate-limited warnings on the ``logship`` logger.

Records of the ``logship`` logger never enter a ShipHandler (see
``ShipHandler.handle``), so these can go to any other handler without loops.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("logship")


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
            logger.warning(message, *args)
        except Exception:
            pass  # a broken handler elsewhere must not stop the worker
        return True
