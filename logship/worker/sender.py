"""The sender thread: delivers sealed batches, one request at a time, by SPEC section 4.

For each batch it asks the transport to send the body, and the protocol's
answer reader what the answer means (``pure.protocols``): delivered,
split, retried, held, rejected, or, for protocols that judge each event, a
verdict per event, each group then handled as a batch of its own. Each batch
keeps its Idempotency-Key across every retry. Waits between retries are on
an event that ``close`` sets, never ``time.sleep``.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import deque
from typing import Any

from logship.pure.batching import Batch, pick, split
from logship.pure.diagnosis import hint
from logship.pure.event import safe_repr
from logship.pure.options import Options
from logship.pure.printable import printable
from logship.pure.protocols import Answer, AnswerReader, Encoder, Outcome, Request, Transport
from logship.pure.retry import Verdict, hold_hint
from logship.pure.sealing import Sealer
from logship.ring import Signals
from logship.worker.diagnostics import Warner
from logship.worker.ledger import Ledger
from logship.worker.spill.deadletters import write_dead_letter
from logship.worker.spill.folder import default_spill_dir

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


def dead_letter_events(encoder: Encoder, batch: Batch) -> list[dict[str, Any]]:
    """The events of a rejected batch, for its dead letter.

    A body that does not decode (which logship never makes on purpose) is
    kept whole, base64, as one record that says what it is: a dead letter
    must never be lost because its events cannot be read back.
    """
    try:
        return encoder.events_of(batch.body)
    except Exception as e:
        return [
            {
                "undecodable_body": base64.b64encode(batch.body).decode("ascii"),
                "encoding": batch.encoding,
                "gzipped": batch.gzipped,
                "events": batch.count,
                "error": safe_repr(e),
            }
        ]


#: What to check when a server took a batch but refused some of its events, unnamed.
PARTLY_HINT = (
    "the server does not say which: the dead letter holds the whole batch, and the "
    "count is in stats()['rejected']"
)


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
        transports: list[Transport],
        encoder: Encoder,
        reader: AnswerReader,
        warner: Warner,
        sealer: Sealer | None = None,
    ) -> None:
        self.opts = opts
        self.sealer = sealer
        self.ledger = ledger
        self.signals = signals
        #: One transport per endpoint, in the order of ``url``.
        self.transports = transports
        self.encoder = encoder
        self.reader = reader
        self.warner = warner
        #: Each endpoint's health and back-off; read by ``stats()`` under the ledger's lock.
        self.endpoints = ledger.endpoints
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
            self.ledger.in_hand = [batch]
            try:
                self.deliver(batch)
            except BaseException as e:  # a bug must cost this batch, not the worker
                lost = self._drop_in_hand()
                self.warner.warn(
                    "sender-error",
                    "logship: internal error sending a batch (%d events dropped, counted): %r",
                    lost,
                    e,
                )
            finally:
                # Stopped by close, the delivery may leave halves of a split unsent:
                # close spills what is still outstanding of them.
                ledger = self.ledger
                ledger.in_hand = [b for b in ledger.in_hand if ledger.is_outstanding(b.id)]

    def _drop_in_hand(self) -> int:
        """Resolve as dropped what the failed delivery left unresolved; return how many events.

        After a split or a per-event answer the batch taken is resolved
        already (replaced by its parts): its parts, not it, are what is
        left, and each must leave ``pending``, or flush would wait on them
        until close. Those resolved before are not counted again.
        """
        return sum(b.count for b in self.ledger.in_hand if self.ledger.resolve(b, "dropped"))

    def deliver(self, batch: Batch) -> None:
        """Send ``batch`` (and what answers make of it) until all is resolved or we stop.

        Each attempt goes to the endpoint the endpoint set picks; a failure
        backs that endpoint off and the batch goes at once to the next one
        that may be tried, under the same Idempotency-Key. Only when every
        endpoint is backing off does the sender wait.
        """
        todo = deque([batch])
        while todo and not self.stop_event.is_set():
            b = todo[0]
            with self.ledger.lock:
                i = self.endpoints.pick(time.monotonic())
                wait = self.endpoints.until_next(time.monotonic()) if i is None else 0.0
            if i is None:
                self._wait(wait)
                continue
            self.ledger.in_flight = b
            answer = self._send(i, b)
            outcome = self.reader.read(answer, b.count)
            if outcome.parts:
                todo.popleft()
                retry = self._settle_parts(i, b, outcome, answer)
                if retry:
                    todo.extendleft(reversed(retry))
                    self._retry_later(i, outcome, answer)
                continue
            verdict = outcome.verdict
            if verdict is Verdict.DELIVERED:
                if outcome.rejected:
                    self._reject(i, b, outcome, partly=True)
                else:
                    with self.ledger.lock:
                        self.endpoints.succeeded(i, b.count)
                    self.ledger.resolve(b, "shipped")
                self._check_certificate(i, answer)
                todo.popleft()
            elif verdict is Verdict.SPLIT and len(b) > 1:
                halves = split(
                    b, self.encoder.units_of(b.body), self.encoder, self.opts.batch_max_bytes
                )
                todo.popleft()
                if self.ledger.replace(b, halves):
                    todo.extendleft(reversed(halves))
            elif verdict is Verdict.SPLIT or verdict is Verdict.REJECT:
                self._reject(i, b, outcome)
                todo.popleft()
            elif verdict is Verdict.HOLD:
                self._hold(i, outcome, answer)
            else:
                self._retry_later(i, outcome, answer)

    def _send(self, i: int, batch: Batch) -> Answer:
        self.signals.sender_busy = True
        try:
            request = Request(batch.body, self._headers, batch.key, batch.count)
            return self.transports[i].send(request)
        finally:
            self.signals.sender_busy = False

    def _settle_parts(self, i: int, batch: Batch, outcome: Outcome, answer: Answer) -> list[Batch]:
        """Resolve the groups of a per-event answer; return the batches to send again."""
        units = self.encoder.units_of(batch.body)
        groups = [
            (verdict, pick(batch, units, indices, self.encoder, str(k)))
            for k, (verdict, indices) in enumerate(outcome.parts)
        ]
        if not self.ledger.replace(batch, [part for _v, part in groups]):
            return []  # close gave up on it meanwhile
        again: list[Batch] = []
        delivered = 0
        for k, (verdict, part) in enumerate(groups):
            if verdict is Verdict.DELIVERED:
                delivered += part.count
                self.ledger.resolve(part, "shipped")
            elif verdict in (Verdict.REJECT, Verdict.SPLIT):
                self._reject(i, part, outcome.part(k))
            else:
                again.append(part)
        with self.ledger.lock:
            self.endpoints.succeeded(i, delivered)
        if not again:
            self._check_certificate(i, answer)
        return again

    def _hold(self, i: int, outcome: Outcome, answer: Answer) -> None:
        """A configuration problem: keep the batch, warn; that endpoint waits the ceiling."""
        if answer.status is None:  # refused without an HTTP status: a stream's handshake
            error = self._said(i, outcome.reason)
            said = f"refused the batch: {error}; {hint(outcome.kind)}"
            key = outcome.kind
        else:
            status = outcome.status(answer.status)
            fix = hold_hint(status, answer.location and self._said(i, answer.location))
            error, said, key = f"HTTP {status}", f"answered {status}; {fix}", str(status)
        with self.ledger.lock:
            self.endpoints.held(i, time.monotonic(), error)
            others = self.endpoints.any_up(time.monotonic())
        self.ledger.failed(error, outcome.kind, answered=True, answering=others)
        self.warner.warn(
            f"hold-{key}-{i}",
            "logship: %s %s. Events are kept and retried every %.0f s.",
            self.endpoints.endpoints[i].url,
            said,
            self.opts.retry_max_backoff,
        )

    def _retry_later(self, i: int, outcome: Outcome, answer: Answer) -> None:
        """A transient failure: note it, warn; that endpoint backs off, the others take over."""
        # The status the outcome is about: a bulk answer of 200 may retry items refused with 429.
        status = outcome.status(answer.status)
        error = f"HTTP {status}" if status else self._said(i, answer.error or "no answer")
        now = time.monotonic()
        with self.ledger.lock:
            self.endpoints.failed(i, now, error, outcome.retry_after)
            others = self.endpoints.any_up(now)
        # The handler is down only when no endpoint is left to take its batches.
        self.ledger.failed(
            error, outcome.kind, answered=answer.status is not None, answering=others
        )
        self.ledger.count("retries")
        self._warn_transient(i, answer, outcome)

    def _said(self, i: int, text: str, limit: int | None = None) -> str:
        """What endpoint ``i`` (or the HTTP client) said, as warnings and ``stats()`` show it.

        Without a secret sent there: the transport scrubbed the raw answer, but a
        reader may have decoded a form it could not see (JSON's ``\\u0041`` or
        ``\\/``). On one printable line: a server must not forge lines in the
        application's log output, nor send its terminal escape sequences.
        """
        return printable(self.transports[i].scrub(text), limit)

    def _wait(self, seconds: float) -> None:
        if self.ledger.draining:
            seconds = min(seconds, _DRAINING_MAX_WAIT)
        self.stop_event.wait(seconds)

    def _check_certificate(self, i: int, answer: Answer) -> None:
        days = answer.cert_days_left
        if days is not None:
            with self.ledger.lock:
                self.ledger.health.cert_expiry = time.time() + days * 86400.0
        if days is not None and days < CERT_WARN_DAYS:
            self.warner.warn(
                f"cert-expiry-{i}",
                "logship: the certificate of %s expires in %.1f days: renew it before "
                "delivery stops.",
                self.endpoints.endpoints[i].url,
                days,
                interval=86400.0,
            )

    def _warn_transient(self, i: int, answer: Answer, outcome: Outcome) -> None:
        shown = self.endpoints.endpoints[i].url
        if answer.status is None:
            kind = answer.kind or "connection"
            self.warner.warn(
                f"conn-{kind}-{i}",
                "logship: cannot deliver to %s: %s (%s). Retrying with back-off.",
                shown,
                hint(kind),
                self._said(i, answer.error or "no answer"),
            )
        else:
            self.warner.warn(
                f"status-{answer.status}-{i}",
                "logship: %s answered %d: %s. Retrying with back-off.",
                shown,
                answer.status,
                # A retry on a 2xx is the body's doing (items of a bulk answer): say why.
                self._said(i, outcome.reason, 200)
                if outcome.parts or answer.status < 300
                else status_hint(answer.status),
            )

    def _reject(self, i: int, batch: Batch, outcome: Outcome, partly: bool = False) -> None:
        """Dead-letter ``batch``; count it rejected, or (``partly``) ``outcome.rejected`` of it.

        The server that rejects only some events without saying which
        (``Outcome.rejected``) gets the whole batch in the dead letter, its
        reason telling how many.
        """
        status = outcome.status()
        # The dead letter keeps the server's words as said, for machines to read;
        # warnings and stats() show them on one printable line.
        reason = self.transports[i].scrub(outcome.reason)
        shown = printable(reason, 200)
        rejected = min(outcome.rejected, batch.count) if partly else batch.count
        if not self.ledger.is_outstanding(batch.id):
            return  # close took it over
        where = "not written"
        try:
            folder = self.opts.spill_dir or default_spill_dir(self.opts.url)
            events = dead_letter_events(self.encoder, batch)
            where = write_dead_letter(
                folder,
                self.opts.url[0],
                batch.key,
                events,
                status,
                reason,
                self.sealer,
                self.opts.spill_max_bytes,
                endpoint=self.opts.url[i],
            )
        except Exception as e:  # the events are counted as rejected either way
            where = f"not written ({e!r})"
        with self.ledger.lock:
            if partly:  # the rest was taken
                self.endpoints.succeeded(i, batch.count - rejected)
            else:
                self.endpoints.answered(i)
        # Without an HTTP status (a stream protocol), the outcome's kind says what it was.
        code = str(status) if status else outcome.kind
        error = f"HTTP {status}: {shown}" if status else shown
        self.ledger.failed(error, outcome.kind, answered=True, answering=True)
        # Resolved only now: once flush() says done, the dead letter is on disk.
        if partly:
            self.ledger.resolve(batch, "shipped", rejected=rejected)
            what, fix = f"{rejected} events of a batch of {batch.count}", PARTLY_HINT
        else:
            self.ledger.resolve(batch, "rejected")
            fix = status_hint(status) if status else hint(outcome.kind)
            what = f"a batch of {batch.count} events"
        self.warner.warn(
            f"reject-{code}",
            "logship: %s rejected %s with %s (%s): %s. Dead-letter file: %s",
            self.endpoints.endpoints[i].url,
            what,
            code,
            shown,
            fix,
            where,
        )
