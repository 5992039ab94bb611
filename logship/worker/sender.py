"""The sender thread: delivers sealed batches, one request at a time, by SPEC section 4.

Each batch keeps its Idempotency-Key across every retry. Waits between
retries are on an event that ``close`` sets, never ``time.sleep``.
"""

from __future__ import annotations

import threading
from collections import deque

from logship.pure.encoding import Encoding
from logship.pure.options import Options
from logship.pure.redact_url import redact_url
from logship.pure.retry import Backoff, Verdict, classify, hold_hint, parse_retry_after
from logship.pure.sealing import Sealer
from logship.worker.diagnostics import Warner
from logship.worker.pipeline import Batch, Pipeline
from logship.worker.pump import decode_batch, make_batches
from logship.worker.spillfolder import default_spill_dir, write_dead_letter
from logship.worker.transport import Answer, Transport

#: A server certificate closer than this to expiry draws a warning, once a day.
CERT_WARN_DAYS = 14.0

# While closing, no single back-off may eat the whole shutdown budget: a blip
# at exit should still get a second try.
_DRAINING_MAX_WAIT = 0.5

#: What to check, for each way a request can fail without an answer.
KIND_HINTS = {
    "tls-expired": "the server's certificate has expired or is not yet valid: renew it",
    "tls-untrusted": "the server's certificate is not trusted: set ca_file to its CA bundle",
    "tls-hostname": "the server's certificate does not name this host: check the URL's host",
    "tls": "the TLS handshake failed: check the certificate, ca_file, client_cert and verify",
    "dns": "the host name does not resolve: check the URL's host and DNS",
    "refused": "the connection was refused: is the aggregator listening on that port?",
    "timeout": "the request timed out: the aggregator is slow or unreachable (see timeout)",
    "connection": "the connection failed: check the network path to the aggregator",
}

#: What to check, for answers that are retried or rejected.
STATUS_HINTS = {
    408: "the aggregator timed out reading the request",
    413: "a single event is larger than the server's body limit: raise the limit "
    "(Fluent Bit: buffer_max_size) or log smaller events",
    429: "the aggregator is rate-limiting this client",
}


def status_hint(status: int) -> str:
    """What an HTTP status means for the operator."""
    if status in STATUS_HINTS:
        return STATUS_HINTS[status]
    if status >= 500:
        return "the aggregator is failing or overloaded"
    return "the server refused this batch for good: see the dead-letter file"


class Sender:
    """Takes batches from the pipeline and delivers them (thread target: :meth:`run`)."""

    def __init__(
        self,
        opts: Options,
        pipeline: Pipeline,
        transport: Transport,
        encoding: Encoding,
        warner: Warner,
        sealer: Sealer | None = None,
    ) -> None:
        self.opts = opts
        self.shown_url = redact_url(opts.url)  # what warnings name: no secret
        self.sealer = sealer
        self.pipeline = pipeline
        self.transport = transport
        self.encoding = encoding
        self.warner = warner
        self.backoff = Backoff(ceiling=opts.retry_max_backoff)
        #: Set by close once its deadline passes; interrupts any back-off wait.
        self.stop_event = threading.Event()

    def run(self) -> None:
        """Loop until stopped; never raises."""
        while not self.pipeline.stopping and not self.stop_event.is_set():
            batch = self.pipeline.next_ready(0.5)
            if batch is None:
                continue
            try:
                self.deliver(batch)
            except Exception as e:  # a bug must cost this batch, not the worker
                self.pipeline.resolve(batch, "dropped")
                self.warner.warn("sender-error", "logship: internal error sending a batch: %r", e)

    def deliver(self, batch: Batch) -> None:
        """Send ``batch`` (and its halves, after a 413) until each is resolved or we stop."""
        todo = deque([batch])
        attempt = 0
        while todo and not self.stop_event.is_set():
            b = todo[0]
            self.pipeline.in_flight = b
            ring = self.pipeline.ring
            ring.sender_busy = True
            try:
                answer = self.transport.post(b.body, b.key, b.gzipped)
            finally:
                ring.sender_busy = False
            verdict = Verdict.RETRY if answer.status is None else classify(answer.status)
            if verdict is Verdict.DELIVERED:
                self.pipeline.resolve(b, "shipped")
                self._check_certificate(answer)
                todo.popleft()
                attempt = 0
            elif verdict is Verdict.SPLIT and len(b) > 1:
                halves = self._split(b)
                todo.popleft()
                if self.pipeline.replace(b, halves):
                    todo.extendleft(reversed(halves))
            elif verdict is Verdict.SPLIT or verdict is Verdict.REJECT:
                self._reject(b, answer)
                todo.popleft()
            elif verdict is Verdict.HOLD:
                self._note_error(answer)
                assert answer.status is not None
                self.warner.warn(
                    f"hold-{answer.status}",
                    "logship: %s answered %d; %s. Events are kept and retried every %.0f s.",
                    self.shown_url,
                    answer.status,
                    hold_hint(answer.status, answer.location),
                    self.opts.retry_max_backoff,
                )
                self._wait(self.opts.retry_max_backoff)
            else:
                self._note_error(answer)
                self.pipeline.count("retries")
                self._warn_transient(answer)
                self._wait(self.backoff.after(attempt, parse_retry_after(answer.retry_after)))
                attempt += 1

    def _split(self, batch: Batch) -> list[Batch]:
        units = [self.encoding.encode_event(e) for e in decode_batch(batch)]
        mid = len(units) // 2
        halves: list[Batch] = []
        for part in (units[:mid], units[mid:]):
            halves += make_batches(
                part, self.encoding, self.opts.compress, self.opts.batch_max_bytes
            )
        # Derived keys: a retried split of the same batch is recognisably the same.
        for i, h in enumerate(halves):
            h.key = f"{batch.key}.{i}"
            h.origin = batch.origin
        return halves

    def _wait(self, seconds: float) -> None:
        if self.pipeline.draining:
            seconds = min(seconds, _DRAINING_MAX_WAIT)
        self.stop_event.wait(seconds)

    def _check_certificate(self, answer: Answer) -> None:
        days = answer.cert_days_left
        if days is not None and days < CERT_WARN_DAYS:
            self.warner.warn(
                "cert-expiry",
                "logship: the certificate of %s expires in %.1f days: renew it before "
                "delivery stops.",
                self.shown_url,
                days,
                interval=86400.0,
            )

    def _note_error(self, answer: Answer) -> None:
        if answer.status is not None:
            self.pipeline.failed(f"HTTP {answer.status}", f"http-{answer.status}")
        else:
            self.pipeline.failed(answer.error or "no answer", answer.kind or "connection")

    def _warn_transient(self, answer: Answer) -> None:
        if answer.status is None:
            kind = answer.kind or "connection"
            self.warner.warn(
                f"conn-{kind}",
                "logship: cannot deliver to %s: %s (%s). Retrying with back-off.",
                self.shown_url,
                KIND_HINTS.get(kind, KIND_HINTS["connection"]),
                answer.error,
            )
        else:
            self.warner.warn(
                f"status-{answer.status}",
                "logship: %s answered %d: %s. Retrying with back-off.",
                self.shown_url,
                answer.status,
                status_hint(answer.status),
            )

    def _reject(self, batch: Batch, answer: Answer) -> None:
        status = answer.status or 0
        reason = answer.body or answer.error or ""
        if not self.pipeline.is_outstanding(batch.id):
            return  # close took it over
        where = "not written"
        try:
            folder = self.opts.spill_dir or default_spill_dir(self.opts.url)
            events = decode_batch(batch)
            where = write_dead_letter(
                folder,
                self.opts.url,
                batch.key,
                events,
                status,
                reason,
                self.sealer,
                self.opts.spill_max_bytes,
            )
        except Exception as e:  # the events are counted as rejected either way
            where = f"not written ({e!r})"
        # Resolved only now: once flush() says done, the dead letter is on disk.
        self.pipeline.resolve(batch, "rejected")
        self.warner.warn(
            f"reject-{status}",
            "logship: %s rejected a batch of %d events with %d (%s): %s. Dead-letter file: %s",
            self.shown_url,
            batch.count,
            status,
            reason[:200],
            status_hint(status),
            where,
        )
