"""Short turns on the GIL: the worker hands it back after a fraction of a millisecond of work.

CPython switches threads only when the running one waits (on I/O, a lock,
a sleep) or when another has waited a whole switch interval (5 ms). A
worker that builds and encodes a thousand events in one go would hold the
GIL for milliseconds, and every request of the application that wanted it
meanwhile would wait that long: the tail of a service's latency. So the
worker's long loops call :meth:`Slicer.check` between small chunks of
work; once a turn has lasted :data:`TURN`, it sleeps for a moment, which
lets a waiting thread take the GIL. ``time.sleep(0)`` would not do: the
worker could take the GIL back before the woken thread runs.
"""

from __future__ import annotations

import time

#: The longest the worker keeps the GIL between two chances for others.
TURN = 0.0003
#: How long it steps aside: long enough for a waiting thread to wake and take the GIL.
PAUSE = 0.00005

_clock = time.perf_counter
_sleep = time.sleep


class Slicer:
    """Counts one thread's turn on the GIL and steps aside when it has lasted long enough."""

    __slots__ = ("_since",)

    def __init__(self) -> None:
        self._since = _clock()

    def begin(self) -> None:
        """A turn starts (the thread just woke, or returned from I/O)."""
        self._since = _clock()

    def check(self) -> None:
        """Step aside if this turn has lasted :data:`TURN`."""
        now = _clock()
        if now - self._since >= TURN:
            _sleep(PAUSE)
            self._since = _clock()
