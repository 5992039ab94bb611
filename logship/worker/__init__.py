"""Everything that runs on logship's worker threads.

:class:`Worker` owns two daemon threads: the *pump* (ring to batches, spill
and replay: ``worker.pump``) and the *sender* (HTTP: ``worker.sender``). The
pump never waits on the network, so the ring keeps draining while a request
hangs.
"""

from __future__ import annotations

import threading
import time

from logship.lifecycle import start_worker_thread
from logship.pure.encoding import Encoding
from logship.pure.options import Options
from logship.pure.redact_url import redact_url
from logship.pure.sealing import Sealer, parse_key
from logship.worker.diagnostics import Warner
from logship.worker.pipeline import Pipeline
from logship.worker.pump import Pump
from logship.worker.sender import Sender
from logship.worker.spillstore import SpillStore
from logship.worker.transport import Transport

__all__ = ["Worker"]

# How long close() still waits for the threads to notice a stop after its
# deadline; they only ever block in bounded waits, except a hung request.
_JOIN_GRACE = 0.05


def spill_reserve(shutdown_timeout: float) -> float:
    """The part of the shutdown budget kept for writing what is left to disk."""
    return min(0.5, 0.2 * shutdown_timeout)


class Worker:
    """The pump and sender threads of one handler in one process."""

    def __init__(
        self, opts: Options, pipeline: Pipeline, warner: Warner, spill_dir: str | None
    ) -> None:
        self.opts = opts
        self.pipeline = pipeline
        self.warner = warner
        encoding = Encoding(opts.encoding)
        sealer = Sealer(parse_key(opts.spill_key)) if opts.spill_key else None
        store = (
            SpillStore(spill_dir, opts.url, opts.spill_max_bytes, pipeline, warner, sealer)
            if opts.spill and spill_dir
            else None
        )
        self.transport = Transport(opts, encoding.content_type, warner)
        self.pump = Pump(opts, pipeline, encoding, warner, store)
        self.sender = Sender(opts, pipeline, self.transport, encoding, warner, sealer)
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start both threads; ``RuntimeError`` at interpreter shutdown."""
        self.threads.append(start_worker_thread(self.pump.run, "logship-pump"))
        self.threads.append(start_worker_thread(self.sender.run, "logship-sender"))
        self.pipeline.ring.wake.set()  # look at the spill now, not a flush_interval from now

    def flush(self, deadline: float) -> bool:
        """Wait until everything emitted so far is resolved, or ``deadline``."""
        with self.pipeline.ring.lock:
            target = self.pipeline.ring.emitted - 1
        return self.pipeline.wait_for(target, deadline)

    def close(self, deadline: float) -> bool:
        """Deliver what can be delivered by ``deadline``, spill the rest, stop.

        True when nothing was left undelivered.
        """
        pipeline = self.pipeline
        pipeline.ring.close()
        with pipeline.lock:
            pipeline.draining = True
            pipeline.changed.notify_all()
        running = bool(self.threads) and self.threads[0].is_alive()
        done = running and self.flush(deadline - spill_reserve(self.opts.shutdown_timeout))
        # No new requests from here: what is not delivered goes to disk.
        self.sender.stop_event.set()
        if running:
            self.pump.final_requested = True
            pipeline.ring.wake.set()
            self.pump.final_done.wait(max(0.0, deadline - time.monotonic()))
        else:
            self.pump.final()  # no worker thread could start: spill from here
        with pipeline.lock:
            pipeline.stopping = True
            pipeline.changed.notify_all()
        pipeline.ring.wake.set()
        for t in self.threads:
            t.join(max(0.0, min(_JOIN_GRACE, deadline - time.monotonic())))
        lost = pipeline.abandon()
        if lost:
            self.warner.warn(
                "close-lost",
                "logship: closed with %d events neither delivered to %s nor spilled "
                "(dropped, counted)",
                lost,
                redact_url(self.opts.url),
            )
        # Even with a request still running: its connection, returned to a
        # closed pool later, is closed then instead of lingering.
        self.transport.close()
        return done and not lost
