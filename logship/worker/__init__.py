"""Everything that runs on logship's worker threads, behind one object: :class:`Worker`.

The handler talks to the worker and to nothing else of it: ``put`` (one
event in; starts the threads on first use), ``flush``, ``close``,
``stats``. Inside, the worker owns the ring (``logship.ring``), the
accounting (``worker.ledger``), the *pump* thread (ring to batches, spill
and replay: ``worker.pump``) and the *sender* thread (the transport and the
protocol's answers: ``worker.sender``). The pump never waits on the
network, so the ring keeps draining while a request hangs. With
``durability="crash"`` it also owns the region (``logship.journal`` on the
application's threads, ``worker.keeper`` on the pump).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from logship import lifecycle
from logship.pure.endpoints import Endpoint, EndpointSet
from logship.pure.event import EventBuilder
from logship.pure.options import Options
from logship.pure.protocols import Encoder, Transport
from logship.pure.protocols.registry import protocol_named
from logship.pure.redact_url import redact_url, scrub
from logship.pure.retry import Backoff
from logship.pure.sealing import Sealer, parse_key
from logship.pure.snapshot import resolve_mapping
from logship.ring import Ring, Signals
from logship.worker.adoption import Adopter
from logship.worker.diagnostics import Warner
from logship.worker.keeper import RegionKeeper
from logship.worker.ledger import Ledger
from logship.worker.pump import Pump
from logship.worker.sender import Sender
from logship.worker.spill.store import SpillStore
from logship.worker.stream import StreamTransport
from logship.worker.transport import Transport as HttpTransport
from logship.worker.transport import check_endpoint, request_secrets

__all__ = ["Worker", "spill_reserve"]

# Sealed batches between pump and sender, the one in flight included; with
# the pump's open batch, memory holds at most capacity + 3 batches of events.
_MAX_READY = 2

# How long close() still waits for the threads to notice a stop after its
# deadline; they only ever block in bounded waits, except a hung request.
_JOIN_GRACE = 0.05


def spill_reserve(shutdown_timeout: float) -> float:
    """The part of the shutdown budget kept for writing what is left to disk."""
    return min(0.5, 0.2 * shutdown_timeout)


class Worker:
    """The ring, the accounting and the two threads of one handler in one process.

    Nothing starts in ``__init__``: ``dictConfig`` builds handlers while
    holding logging's module lock and may throw them away. The threads
    start on the first :meth:`put`, or at :meth:`start`.
    """

    def __init__(self, opts: Options, spill_dir: str | None, warner: Warner) -> None:
        self.opts = opts
        self.warner = warner
        self.spill_dir = spill_dir
        self.signals = Signals()
        # With the spill on, callers yield the GIL to a woken worker now and
        # then (see Ring.put): it keeps up with a burst, or spills it, instead
        # of the ring dropping it.
        pace = opts.overflow == "spill" and opts.spill
        self.ring = Ring(
            opts.capacity,
            opts.capacity_bytes,
            opts.overflow,
            self.signals,
            wake_at=opts.batch_max_records,
            pace=pace,
        )
        endpoints = EndpointSet(
            [Endpoint(redact_url(u)) for u in opts.url],
            opts.balance,
            Backoff(ceiling=opts.retry_max_backoff),
        )
        self.ledger = Ledger(self.ring, _MAX_READY, endpoints)
        self.protocol = protocol_named(opts.protocol)  # one logship lacks fails here, loudly
        if self.protocol.transport != "stream":
            for url in opts.url:
                check_endpoint(url)
        if opts.spill:
            # Imported here, on the thread that builds the handler, not by the
            # worker on its first spill: an import takes the import lock, and
            # filelock's module asks logging for its logger, which takes
            # logging's lock (see lifecycle.warm_logger_caches).
            import filelock  # noqa: F401
        # Resolved here, on the thread that builds the handler: no user code
        # (a __repr__, a __deepcopy__) ever runs on the worker.
        self.fields: Mapping[str, Any] = resolve_mapping(opts.fields)[0]
        #: The application's way in. Until the threads run, the first call starts them.
        self.put = self._start_and_put
        # Re-entrant: a signal handler that logs on the thread starting the
        # worker must not wait for that thread (see start).
        self._start_lock = threading.RLock()
        self._starting = False
        self._started = False
        self._closed = False
        self.threads: list[threading.Thread] = []
        self.pump: Pump | None = None
        self.sender: Sender | None = None
        self.transports: list[Transport] = []
        self.keeper: RegionKeeper | None = None

    # -- the application's side ------------------------------------------------

    def _start_and_put(self, *item: Any) -> bool:
        self.start()
        if self.keeper is not None and not self._closed:
            # On the first event, not when the handler starts early to replay a
            # folder: a handler that dictConfig throws away leaves no region.
            self.keeper.open()
            self.put = self.ring.put
        return self.ring.put(*item)

    def lost(self) -> None:
        """Count an event that failed on its way in (emitted, then dropped)."""
        self.ring.lost()

    def note_truncated(self) -> None:
        """Count an event cut to fit ``capacity_bytes``."""
        self.ring.note_truncated()

    def start(self) -> None:
        """Build the pump and sender and start their threads (once; never raises)."""
        with self._start_lock:
            if self._started or self._closed or self._starting:
                return  # _starting: a signal handler logged while this thread builds
            self._starting = True
            try:
                self._build()
            except Exception as e:
                self._cannot_start(e)
                return
            finally:
                self._starting = False
            if self._closed:  # by a signal handler, while this thread built
                return
            self._started = True
            try:
                self.threads.append(lifecycle.start_worker_thread(self._pump().run, "logship-pump"))
                self.threads.append(
                    lifecycle.start_worker_thread(self._sender().run, "logship-sender")
                )
            except RuntimeError:
                # Python 3.12+ refuses new threads during interpreter shutdown.
                # The events stay in the ring; close() spills them from its own thread.
                pass
            if self.keeper is None:
                self.put = self.ring.put
            self.signals.wake.set()  # look at the spill now, not a flush_interval from now
        if lifecycle.uwsgi_without_threads():
            self.warner.warn(
                "uwsgi",
                "logship: uWSGI runs without enable-threads; logship's worker thread "
                "cannot run and no log will be shipped. Start uWSGI with --enable-threads.",
            )

    def _cannot_start(self, error: Exception) -> None:
        """No thread can run: every event from here on is dropped and counted, said once.

        The options are checked at construction; what fails here is what they
        could not foresee (a bug, a URL the HTTP client refuses). The handler
        stays usable: log calls, ``flush`` and ``close`` neither raise nor wait.
        """
        self._closed = True
        self.ring.close()
        self.put = self.ring.put
        self.warner.warn(
            "cannot-start",
            "logship: cannot start the worker for %s (%s); every event is dropped "
            "(counted in stats()['dropped'])",
            ",".join(redact_url(u) for u in self.opts.url),
            scrub(
                f"{type(error).__name__}: {error}",
                [secret for url in self.opts.url for secret in request_secrets(self.opts, url)],
            ),
        )

    def _build(self) -> None:
        opts = self.opts
        sealer = Sealer(parse_key(opts.spill_key)) if opts.spill_key else None
        store = adopter = None
        if opts.spill and self.spill_dir:
            store = SpillStore(
                self.spill_dir,
                opts.url[0],
                opts.spill_max_bytes,
                self.warner,
                sealer,
                protocol=opts.protocol,
            )
            adopter = Adopter(opts, self.ledger, store, self._encoder_for)
            if opts.durability == "crash":
                self.keeper = RegionKeeper(
                    opts, store, self.ledger, self.signals, self.warner, self.fields
                )
        salt = self.keeper.salt if self.keeper is not None else None
        encoder = self._encoder_for(EventBuilder(self.fields, salt))
        self.transports = [
            StreamTransport(opts, self.warner, url)
            if self.protocol.transport == "stream"
            else HttpTransport(opts, self.warner, self.protocol, url)
            for url in opts.url
        ]
        self.pump = Pump(
            opts, self.ledger, self.signals, encoder, self.warner, store, self.keeper, adopter
        )
        self.sender = Sender(
            opts,
            self.ledger,
            self.signals,
            self.transports,
            encoder,
            self.protocol.reader(opts),
            self.warner,
            sealer,
        )

    def _encoder_for(self, builder: EventBuilder) -> Encoder:
        return self.protocol.encoder(self.opts, builder)

    def _pump(self) -> Pump:
        assert self.pump is not None
        return self.pump

    def _sender(self) -> Sender:
        assert self.sender is not None
        return self.sender

    # -- lifecycle -------------------------------------------------------------

    def running(self) -> bool:
        """Whether the worker's threads are alive."""
        return bool(self.threads) and self.threads[0].is_alive()

    def give_up_waiting(self) -> bool:
        """Whether a closing handler should spill at once instead of waiting to deliver.

        True when the endpoint failed its last attempt and nothing succeeded
        since, and the spill can take what memory holds: waiting out the
        shutdown budget would only delay exit (a cron job, a ``manage.py``
        command pays it every time) and the next process replays the spill.
        Read with or without the ledger's lock: two plain attribute reads.
        """
        return self.pump is not None and self.pump.store is not None and self.ledger.health.down

    def flush(self, deadline: float, exiting: bool = False) -> bool:
        """Wait until everything emitted so far is resolved, or ``deadline``.

        ``exiting``: the interpreter's exit (``logging.shutdown``) or a
        ``dictConfig`` that replaces the handler asks; with the endpoint down
        it does not wait (see :meth:`give_up_waiting`).
        """
        # Plain reads, without the ring's lock: one attribute each, and a flush
        # from a signal handler may interrupt this thread inside a holder of it.
        target = self.ring.emitted - 1
        if not self._started:
            return not self.ring.items
        lifecycle.warm_logger_caches()
        give_up = self.give_up_waiting if exiting else None
        return self.ledger.wait_for(target, deadline, self.signals.wake, give_up)

    def close(self, deadline: float) -> bool:
        """Deliver what can be delivered by ``deadline``, spill the rest, stop.

        True when nothing was left undelivered.
        """
        with self._start_lock:
            self._closed = True
        ledger, wake = self.ledger, self.signals.wake
        self.ring.close()
        if not self._started:
            return not self._abandon()
        with ledger.lock:
            ledger.draining = True
            ledger.changed.notify_all()
        lifecycle.warm_logger_caches()
        running = self.running()
        reserve = spill_reserve(self.opts.shutdown_timeout)
        done = running and self.flush(deadline - reserve, exiting=True)
        pump, sender = self._pump(), self._sender()
        # No new requests from here: what is not delivered goes to disk. The
        # request in flight may finish first (within the budget): a replayed
        # batch it delivers is then acknowledged on disk, not sent again by
        # the next process.
        sender.stop_event.set()
        if running:
            self.threads[1].join(max(0.0, deadline - reserve - time.monotonic()))
            pump.final_requested = True
            wake.set()
            pump.final_done.wait(max(0.0, deadline - time.monotonic()))
        else:
            pump.final()  # no worker thread could start: spill from here
        with ledger.lock:
            ledger.stopping = True
            ledger.changed.notify_all()
        wake.set()
        for t in self.threads:
            t.join(max(0.0, min(_JOIN_GRACE, deadline - time.monotonic())))
        if pump.final_done.is_set():
            pump.apply_acks()  # what the sender delivered while the pump finished
        if self.keeper is not None:
            # Before close gives up on what memory still holds: that stays in the
            # region, for the next process. (The pump's final() closed it already,
            # unless it did not finish in time.)
            self.keeper.close()
        lost = self._abandon()
        # Even with a request still running: its connection, returned to a
        # closed pool later, is closed then instead of lingering.
        for transport in self.transports:
            transport.close()
        return done and not lost

    def _abandon(self) -> int:
        lost = self.ledger.abandon()
        if lost:
            self.warner.warn(
                "close-lost",
                "logship: closed with %d events neither delivered to %s nor spilled "
                "(dropped, counted)",
                lost,
                ",".join(redact_url(u) for u in self.opts.url),
            )
        return lost

    def stats(self) -> dict[str, Any]:
        """A snapshot of every counter (see ``Ledger.snapshot``)."""
        return self.ledger.snapshot()
