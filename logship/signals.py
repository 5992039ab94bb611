"""Turn SIGTERM into a graceful exit, so that ``logging.shutdown`` delivers or spills.

Python's default action for SIGTERM kills the interpreter at once: no
``finally`` block, no ``atexit`` handler, so ``logging.shutdown`` never runs
and whatever a ``ShipHandler`` holds in memory is lost. That is what a plain
container gets on ``docker stop`` or a Kubernetes pod deletion.

:func:`install_signal_handlers` is opt-in: servers that handle SIGTERM
themselves (gunicorn, uWSGI) already exit gracefully, and must not get it.
"""

from __future__ import annotations

import atexit
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

__all__ = ["install_signal_handlers"]

_PythonHandler = Callable[[int, FrameType | None], Any]

# Signals whose disposition cannot be changed; naming one is a mistake worth an error.
_UNCATCHABLE = frozenset(
    getattr(signal, name) for name in ("SIGKILL", "SIGSTOP") if hasattr(signal, name)
)

# Set once exit handlers start (ours is registered after logging's, so it runs
# before ``logging.shutdown``): from then on a repeated signal must not raise
# SystemExit into the flush and close that deliver or spill the last events.
_exiting = False
_atexit_registered = False


def _mark_exiting() -> None:
    global _exiting
    _exiting = True


class _GracefulExit:
    """The installed handler: call the previous Python handler, then ``sys.exit(128 + signum)``."""

    def __init__(self, previous: _PythonHandler | None) -> None:
        self.previous = previous

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if _exiting:
            return  # already in exit handlers: let logging.shutdown finish
        if self.previous is not None:
            self.previous(signum, frame)  # may raise (SystemExit, KeyboardInterrupt): so be it
        # 128 + signum is what a shell reports for a process killed by the signal.
        sys.exit(128 + signum)

    def __repr__(self) -> str:
        return f"<logship graceful exit handler, previous={self.previous!r}>"


def _as_signals(signals: int | Iterable[int]) -> list[signal.Signals]:
    items: Iterable[int] = [signals] if isinstance(signals, int) else signals
    out: list[signal.Signals] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise TypeError(f"signals: expected signal numbers, got {item!r}")
        try:
            sig = signal.Signals(item)
        except ValueError:
            raise ValueError(f"signals: {item!r} is not a signal number") from None
        if sig in _UNCATCHABLE:
            raise ValueError(f"signals: {sig.name} cannot be caught")
        if sig not in out:
            out.append(sig)
    return out


def install_signal_handlers(signals: int | Iterable[int] = (signal.SIGTERM,)) -> None:
    """Make each of ``signals`` (SIGTERM by default) end the process gracefully.

    The handler raises ``SystemExit(128 + signum)`` in the main thread, so
    ``finally`` blocks and exit handlers run, and with them
    ``logging.shutdown``: every ``ShipHandler`` delivers what it holds, or
    spills it, within its ``shutdown_timeout``. Without it, Python's default
    action for SIGTERM (what ``docker stop`` and a Kubernetes pod deletion
    send) kills the process at once, and what is in memory is lost.

    - A Python handler already installed for the signal is kept and called
      first; if it returns, the process exits as above.
    - A signal that is ignored (``SIG_IGN``), or handled by code outside
      Python, is left alone.
    - Calling it again is harmless: a signal already handled is not wrapped twice.
    - A repeated signal once exit handlers run is ignored, so it cannot cut
      delivery short; ``SIGKILL`` remains the hard stop.

    Python runs the handler in the main thread, between two bytecodes or
    when a blocking call there is interrupted: a signal that lands just as
    the main thread enters a call that blocks with no timeout can wait until
    that call returns, so a main loop should wait with a timeout. Servers
    that handle SIGTERM themselves (gunicorn, uWSGI) already exit gracefully
    and need no call.

    Args:
        signals: A signal number, or several.

    Raises:
        RuntimeError: Not called from the main thread (Python runs signal
            handlers only there).
        ValueError: A number that is not a signal, or a signal that cannot be
            caught (``SIGKILL``, ``SIGSTOP``).
        TypeError: Something that is not a signal number.

    Examples:
        >>> import signal, logship
        >>> logship.install_signal_handlers()
        >>> logship.install_signal_handlers([signal.SIGTERM, signal.SIGHUP])  # SIGTERM kept as is
        >>> logship.install_signal_handlers(signal.SIGKILL)
        Traceback (most recent call last):
        ...
        ValueError: signals: SIGKILL cannot be caught
    """
    global _atexit_registered
    wanted = _as_signals(signals)
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "logship.install_signal_handlers() must be called from the main thread: "
            "Python runs signal handlers only there"
        )
    if not _atexit_registered:
        # logging registered its atexit hook when it was imported, before this
        # (importing logship imports logging): ours runs first, since atexit is LIFO.
        atexit.register(_mark_exiting)
        _atexit_registered = True
    for sig in wanted:
        current = signal.getsignal(sig)
        if isinstance(current, _GracefulExit):
            continue  # idempotent
        if current == signal.SIG_IGN or current is None:
            # Ignored on purpose (e.g. by `nohup`), or owned by C code we cannot chain to.
            continue
        # Callable: a Python handler to chain to; otherwise SIG_DFL, which we replace.
        previous = current if callable(current) else None
        signal.signal(sig, _GracefulExit(previous))
