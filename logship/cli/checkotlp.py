"""The test record of ``logship check --protocol otlp``: one OTLP/HTTP JSON log record.

logship's sample event (:func:`~logship.cli.checkhttp.sample_event`) is
encoded by the ``otlp`` encoder and sent by the handler's transport, to the
URL's path or ``/v1/logs``, with the token as ``Bearer``. What the answer
means follows :class:`~logship.pure.protocols.otlp.OtlpReader`: a
``partialSuccess`` that rejects the record fails the check, one that only
warns is shown as a warning; only 429, 502, 503 and 504 are "retry later".
"""

from __future__ import annotations

from logship.cli.checkhttp import (
    NO_ANSWER,
    credentials,
    no_answer,
    refusal,
    send_sample,
)
from logship.cli.tlsinfo import Finding
from logship.pure.options import Options
from logship.pure.protocols import Answer
from logship.pure.protocols.otlp import OTLP, OtlpEncoder, OtlpReader, partial_success
from logship.pure.retry import Verdict


def check_otlp(opts: Options, token_from: str | None) -> tuple[Finding, str | None, float]:
    """POST one log record; return the finding, the server's ``Date`` and when it was made."""
    sent = send_sample(opts, OtlpEncoder(True), OTLP)
    answer = sent.answer
    auth = credentials(token_from, opts.headers)
    what = f"1 log record, OTLP JSON, gzip, {sent.size} bytes, {auth}"
    if answer.status is None:
        return no_answer(answer.kind, answer.error or "", opts, what), NO_ANSWER, sent.midpoint
    finding = judge(answer, sent.status, what, opts, token_from, sent.event["uuid"])
    return finding, sent.date, sent.midpoint


def judge(
    answer: Answer, status: str, what: str, opts: Options, token: str | None, uid: str
) -> Finding:
    """What an OTLP/HTTP answer to the test record means, and what to fix."""
    code = answer.status or 0
    outcome = OtlpReader().read(answer, 1)
    if outcome.verdict is Verdict.DELIVERED:
        _rejected, warning = partial_success(answer.body)
        taken = f"{status}: the test record was taken ({what}; log.record.uid {uid})"
        if warning:
            fix = "the collector took the record with a warning: see its message"
            return Finding("WARN", f"{taken}; the collector says {warning[:300]!r}", fix)
        return Finding("PASS", taken)
    if code < 300:  # a partialSuccess that rejected the record
        fix = (
            "the collector refused the record as logship sends it (see its message): the "
            "handler would count such records in rejected and dead-letter their batch"
        )
        return Finding("FAIL", f"{status}: {outcome.reason[:300]} ({what})", fix)
    refused = refusal(code, answer, status, what, opts, token)
    if refused is not None and code == 404:
        path = "OTLP/HTTP takes logs at /v1/logs: give the URL without a path to have it added"
        return refused._replace(fix=f"{refused.fix}; {path}")
    if refused is not None:
        return refused
    said = f": the server says {outcome.reason.strip()[:300]!r}" if outcome.reason.strip() else ""
    if outcome.verdict is Verdict.RETRY:
        fix = "the collector is overloaded; logship retries with back-off, but add capacity"
        return Finding("WARN", f"{status}: asked to retry later{said} ({what})", fix)
    if code == 415:
        fix = (
            "this endpoint does not take OTLP's JSON encoding (application/json), which is "
            "what logship sends: use a collector that does (the OpenTelemetry Collector's "
            "otlp receiver and Fluent Bit's opentelemetry input both do)"
        )
    else:
        fix = (
            "the collector refused the record as sent: see its message; the handler would "
            "reject such batches to a dead-letter file (OTLP: never retried)"
        )
    return Finding("FAIL", f"{status}{said or ': no reason given'} ({what})", fix)
