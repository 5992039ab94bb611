"""The sender thread: delivers sealed batches, one request at a time, by SPEC section 4.

For each batch it asks the transport to send the body, and the protocol's
answer reader what the answer means (``pure.protocols``): delivered,
split, retried, held, rejected, or, for protocols that judge each event, a
verdict per event, each group then handled as a batch of its own. Each batch
keeps its Idempotency-Key across every retry. Waits between retries are on
an event that ``close`` sets, never ``time.sleep``.
"""

from __future__ import annotations

import threading
from collections import deque

from logship.pure.batching import Batch, pick, split
from logship.pure.diagnosis import hint
from logship.pure.options import Options
from logship.pure.protocols import Answer, AnswerReader, Encoder, Outcome, Request, Transport
from logship.pure.redact_url import redact_url
from logship.pure.retry import Backoff, Verdict, hold_hint
from logship.pure.sealing import Sealer
from logship.ring import Signals
from logship.worker.diagnostics import Warner
from logship.worker.ledger import Ledger
from logship.worker.spillfolder import default_spill_dir, write_dead_letter

#: A server certificate closer than this to expiry draws a warning, once a day.
CERT_WARN_DAYS = 14.0

# While closing, no single back-off may eat the whole shutdown budget: a blip
# at exit should still get a second try.
_DRAINING_MAX_WAIT = 0.5

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
    """Takes batches from the ledger and delivers them (thread target: :meth:`run`)."""

    def __init__(
        self,
        opts: Options,
        ledger: Ledger,
        signals: Signals,
        transport: Transport,
        encoder: Encoder,
        reader: AnswerReader,
        warner: Warner,
        sealer: Sealer | None = None,
    ) -> None:
        self.opts = opts
        self.shown_url = redact_url(opts.url)  # what warnings name: no secret
        self.sealer = sealer
        self.ledger = ledger
        self.signals = signals
        self.transport = transport
        self.encoder = encoder
        self.reader = reader
        self.warner = warner
        self.backoff = Backoff(ceiling=opts.retry_max_backoff)
        self._headers = encoder.headers()
        #: Set by close once its deadline passes; interrupts any back-off wait.
        self.stop_event = threading.Event()

    def run(self) -> None:
        """Loop until stopped; never raises."""
        while not self.ledger.stopping and not self.stop_event.is_set():
            batch = self.ledger.next_ready(0.5)
            if batch is None:
                continue
            self.signals.wake.set()  # room for the pump
            try:
                self.deliver(batch)
            except BaseException as e:  # a bug must cost this batch, not the worker
                self.ledger.resolve(batch, "dropped")
                self.warner.warn("sender-error", "logship: internal error sending a batch: %r", e)

    def deliver(self, batch: Batch) -> None:
        """Send ``batch`` (and what answers make of it) until all is resolved or we stop."""
        todo = deque([batch])
        attempt = 0
        while todo and not self.stop_event.is_set():
            b = todo[0]
            self.ledger.in_flight = b
            answer = self._send(b)
            outcome = self.reader.read(answer, b.count)
            if outcome.parts:
                todo.popleft()
                retry = self._settle_parts(b, outcome, answer)
                if retry:
                    todo.extendleft(reversed(retry))
                    self._retry_later(outcome, answer, attempt)
                    attempt += 1
                continue
            verdict = outcome.verdict
            if verdict is Verdict.DELIVERED:
                self.ledger.resolve(b, "shipped")
                self._check_certificate(answer)
                todo.popleft()
                attempt = 0
            elif verdict is Verdict.SPLIT and len(b) > 1:
                halves = split(
                    b, self.encoder.units_of(b.body), self.encoder, self.opts.batch_max_bytes
                )
                todo.popleft()
                if self.ledger.replace(b, halves):
                    todo.extendleft(reversed(halves))
            elif verdict is Verdict.SPLIT or verdict is Verdict.REJECT:
                self._reject(b, outcome)
                todo.popleft()
            elif verdict is Verdict.HOLD:
                self._hold(outcome, answer)
            else:
                self._retry_later(outcome, answer, attempt)
                attempt += 1

    def _send(self, batch: Batch) -> Answer:
        self.signals.sender_busy = True
        try:
            return self.transport.send(Request(batch.body, self._headers, batch.key, batch.count))
        finally:
            self.signals.sender_busy = False

    def _settle_parts(self, batch: Batch, outcome: Outcome, answer: Answer) -> list[Batch]:
        """Resolve the groups of a per-event answer; return the batches to send again."""
        units = self.encoder.units_of(batch.body)
        groups = [
            (verdict, pick(batch, units, indices, self.encoder, str(i)))
            for i, (verdict, indices) in enumerate(outcome.parts)
        ]
        if not self.ledger.replace(batch, [part for _v, part in groups]):
            return []  # close gave up on it meanwhile
        again: list[Batch] = []
        for verdict, part in groups:
            if verdict is Verdict.DELIVERED:
                self.ledger.resolve(part, "shipped")
            elif verdict in (Verdict.REJECT, Verdict.SPLIT):
                self._reject(part, outcome)
            else:
                again.append(part)
        if not again:
            self._check_certificate(answer)
        return again

    def _hold(self, outcome: Outcome, answer: Answer) -> None:
        """A configuration problem: keep the batch, warn, try again at the back-off ceiling."""
        status = answer.status
        if status is None:  # refused without an HTTP status: a stream protocol's handshake
            error = outcome.reason
            said = f"refused the batch: {error}; {hint(outcome.kind)}"
        else:
            fix = hold_hint(status, answer.location)
            error, said = f"HTTP {status}", f"answered {status}; {fix}"
        self.ledger.failed(error, outcome.kind, answered=True)
        self.warner.warn(
            f"hold-{outcome.kind if status is None else status}",
            "logship: %s %s. Events are kept and retried every %.0f s.",
            self.shown_url,
            said,
            self.opts.retry_max_backoff,
        )
        self._wait(self.opts.retry_max_backoff)

    def _retry_later(self, outcome: Outcome, answer: Answer, attempt: int) -> None:
        """A transient failure: note it, warn, and back off."""
        error = f"HTTP {answer.status}" if answer.status else answer.error or "no answer"
        self.ledger.failed(error, outcome.kind, answered=answer.status is not None)
        self.ledger.count("retries")
        self._warn_transient(answer, outcome)
        self._wait(self.backoff.after(attempt, outcome.retry_after))

    def _wait(self, seconds: float) -> None:
        if self.ledger.draining:
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

    def _warn_transient(self, answer: Answer, outcome: Outcome) -> None:
        if answer.status is None:
            kind = answer.kind or "connection"
            self.warner.warn(
                f"conn-{kind}",
                "logship: cannot deliver to %s: %s (%s). Retrying with back-off.",
                self.shown_url,
                hint(kind),
                answer.error,
            )
        else:
            self.warner.warn(
                f"status-{answer.status}",
                "logship: %s answered %d: %s. Retrying with back-off.",
                self.shown_url,
                answer.status,
                outcome.reason[:200] if outcome.parts else status_hint(answer.status),
            )

    def _reject(self, batch: Batch, outcome: Outcome) -> None:
        status = int(outcome.kind[5:]) if outcome.kind.startswith("http-") else 0
        reason = outcome.reason
        if not self.ledger.is_outstanding(batch.id):
            return  # close took it over
        where = "not written"
        try:
            folder = self.opts.spill_dir or default_spill_dir(self.opts.url)
            events = self.encoder.events_of(batch.body)
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
        # Without an HTTP status (a stream protocol), the outcome's kind says what it was.
        code, fix = (status, status_hint(status)) if status else (outcome.kind, hint(outcome.kind))
        error = f"HTTP {status}: {reason[:200]}" if status else reason[:200]
        self.ledger.failed(error, outcome.kind, answered=True, answering=True)
        # Resolved only now: once flush() says done, the dead letter is on disk.
        self.ledger.resolve(batch, "rejected")
        self.warner.warn(
            f"reject-{code}",
            "logship: %s rejected a batch of %d events with %s (%s): %s. Dead-letter file: %s",
            self.shown_url,
            batch.count,
            code,
            reason[:200],
            fix,
            where,
        )
