"""The HTTP steps of ``logship check``: a test POST, and the clock skew it reveals.

The event is made, encoded, compressed and sent by logship's own code
(:class:`~logship.pure.event.EventBuilder`, the protocol's encoder,
:class:`~logship.worker.transport.Transport`), so the answer is the one a
handler would get: the token and any extra ``headers`` are applied by that
transport too. What the answer means follows :mod:`logship.pure.retry`, after
what the protocol's own probe makes of it (``logship.cli.checksplunk``, …).
"""

from __future__ import annotations

import email.utils
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from logship.cli.tlsinfo import Finding, handshake_fix
from logship.pure import retry
from logship.pure.batching import new_key
from logship.pure.event import EventBuilder
from logship.pure.options import Options
from logship.pure.protocols import Answer, Encoder, Request, WireProtocol
from logship.pure.protocols.http import HTTP
from logship.worker.diagnostics import Warner
from logship.worker.transport import Transport

#: Clock skew past which the clock step warns, in seconds.
MAX_SKEW = 5.0

#: What :func:`check_post` gives :func:`check_clock` when no HTTP answer came.
NO_ANSWER = "(no answer)"


def sample_event() -> dict[str, Any]:
    """One event, made by logship's own builder as the handler makes it."""
    record = logging.LogRecord(
        "logship.check",
        logging.INFO,
        __file__,
        0,
        "logship check: a test event from %s; safe to ignore",
        (socket.gethostname(),),
        None,
        func="check_post",
    )
    # logship_check: a field to find (or filter) these by
    return EventBuilder({}).build(
        record, record.getMessage(), None, None, extras={"logship_check": True}
    )


#: A protocol's own reading of the test answer: ``(answer, status line, what was sent,
#: options, token source)`` to a finding, or None where the HTTP status says it all.
Judge = Callable[[Answer, str, str, Options, str | None], Finding | None]


def check_post(
    opts: Options,
    token_from: str | None,
    protocol: WireProtocol = HTTP,
    judge: Judge | None = None,
) -> tuple[Finding, str | None, float]:
    """POST one event as ``protocol`` sends it; the finding, the server's ``Date``, and when.

    ``judge`` reads the protocol's own answers first; the HTTP status decides the rest.
    """
    encoder = protocol.encoder(opts, None)
    sent = send_sample(opts, encoder, protocol)
    what = (
        f"1 event, {encoder.name}, gzip, {sent.size} bytes, {credentials(token_from, opts.headers)}"
    )
    answer = sent.answer
    if judge is not None and answer.status is not None:
        finding = judge(answer, sent.status, what, opts, token_from)
        if finding is not None:
            return finding, sent.date, sent.midpoint
    return http_finding(sent, what, opts, token_from)


@dataclass(frozen=True)
class Sent:
    """A sample event sent as a handler sends it, and what came back."""

    event: dict[str, Any]
    size: int  # bytes of the body, as sent
    answer: Answer
    status: str  # "201 Created"; "" when no answer came
    date: str | None  # the server's Date header
    midpoint: float  # halfway between sending and the answer: the clock step's moment


def send_sample(opts: Options, encoder: Encoder, protocol: WireProtocol = HTTP) -> Sent:
    """Send one :func:`sample_event` as a handler of ``protocol`` would, through ``encoder``."""
    event = sample_event()
    body, _raw = encoder.body([encoder.unit(event)])
    transport = Transport(opts, Warner(3600.0), protocol)
    seen: dict[str, Any] = {}

    def capture(headers: Any, reason: str) -> None:
        seen["date"] = headers.get("Date")
        seen["reason"] = reason
        seen["at"] = time.time()

    transport.on_response = capture
    sent = time.time()
    try:
        answer = transport.send(Request(body, encoder.headers(), new_key(), 1))
    finally:
        transport.close()
    midpoint = (sent + seen.get("at", sent)) / 2
    status = f"{answer.status} {seen.get('reason', '')}".rstrip() if answer.status else ""
    return Sent(event, len(body), answer, status, seen.get("date"), midpoint)


def http_finding(
    sent: Sent, what: str, opts: Options, token_from: str | None
) -> tuple[Finding, str | None, float]:
    """What the HTTP status of a sample's answer says, the server's ``Date``, and when."""
    answer = sent.answer
    if answer.status is None:
        return no_answer(answer.kind, answer.error or "", opts, what), NO_ANSWER, sent.midpoint
    uid = sent.event["uuid"]
    finding = _judge(answer.status, answer, sent.status, what, opts, token_from, uid)
    return finding, sent.date, sent.midpoint


def credentials(token_from: str | None, headers: Mapping[str, str]) -> str:
    """What the POST authenticated with: the token's source and the header names, no values."""
    said = f"with the token from {token_from}" if token_from else "without a token"
    if headers:
        said += f", with headers {', '.join(headers)}"
    return said


_HEADERS_HINT = "the headers (--header; handler option headers)"


def refused_fix(code: int, token_from: str | None, headers: bool) -> str:
    """The fix for a 401 or a 403: check what was sent, or send what is missing."""
    if code == 403:
        if headers:
            sent = f"the token or {_HEADERS_HINT}" if token_from else _HEADERS_HINT
            return f"access is forbidden: check {sent} and their permissions for this endpoint"
        return retry.hold_hint(403)
    token_hint = "the token (--token/--token-file; handler options token, token_file)"
    if token_from and headers:
        return f"check {token_hint} or {_HEADERS_HINT}"
    if token_from:
        return f"check {token_hint}"
    if headers:
        return f"check {_HEADERS_HINT}, or pass --token or --token-file if the endpoint wants one"
    return "the endpoint wants a token: pass --token or --token-file"


def refusal(
    code: int, answer: Answer, status: str, what: str, opts: Options, token: str | None
) -> Finding | None:
    """The finding for what every HTTP protocol's answer may be: 401, 403, 404, 3xx, 413."""
    if code == 401:
        fix = refused_fix(code, token, bool(opts.headers))
        return Finding("FAIL", f"{status}: authentication was refused ({what})", fix)
    if code == 403:
        fix = refused_fix(code, token, bool(opts.headers))
        return Finding("FAIL", f"{status}: access is forbidden ({what})", fix)
    if code == 404 or 300 <= code < 400:  # held, as retry.classify says
        return Finding("FAIL", f"{status} ({what})", retry.hold_hint(code, answer.location))
    if code == 413:
        fix = (
            "a proxy's or the aggregator's body limit refuses even one small event: raise it "
            "(Fluent Bit buffer_max_size, nginx client_max_body_size)"
        )
        return Finding("FAIL", f"{status}: the body is too large for the server ({what})", fix)
    return None


def _judge(
    code: int, answer: Answer, status: str, what: str, opts: Options, token: str | None, uid: str
) -> Finding:
    verdict = retry.classify(code)
    reason = answer.body.strip()
    said = f": the server says {reason[:300]!r}" if reason else ""
    if verdict is retry.Verdict.DELIVERED:
        return Finding("PASS", f"{status}: the test event was taken ({what}; uuid {uid})")
    refused = refusal(code, answer, status, what, opts, token)
    if refused is not None:
        return refused
    if code in (408, 429):
        fix = "the aggregator is overloaded; logship retries with back-off, but add capacity"
        return Finding("WARN", f"{status}: asked to retry later ({what})", fix)
    if code >= 500:
        fix = "the aggregator is failing: check its logs (a 502, 503 or 504 may be a proxy's)"
        return Finding("FAIL", f"{status}{said} ({what})", fix)
    if opts.encoding != "json" and (code == 415 or "content-type" in reason.lower()):
        fix = f"this aggregator does not take {opts.encoding}: use --encoding json (the default)"
    else:
        fix = "the aggregator refused the event as sent: see its reason; the handler would "
        fix += "reject such batches to a dead-letter file"
    return Finding("FAIL", f"{status}{said or ': no reason given'} ({what})", fix)


def no_answer(kind: str | None, error: str, opts: Options, what: str) -> Finding:
    """The finding for a test POST that got no HTTP answer (``kind``: why), with the fix."""
    https = opts.url[0].startswith("https:")
    if kind == "timeout":
        fix = f"no answer in {opts.timeout:g} s: check the aggregator's health, or raise --timeout"
    elif (kind and kind.startswith("tls")) or (https and "SSL" in error):
        # The handshake itself passed (or this step would not run): with TLS 1.3 a
        # server checks the client's certificate after it, and hangs up.
        fallback = None if opts.client_cert else _CLIENT_CERT_HINT
        fix = handshake_fix(error, opts.client_cert, opts.tls_min_version, fallback)
    else:
        fix = (
            "the server hung up without answering: check that the aggregator is up and not "
            "overloaded (Fluent Bit resets connections when its buffer is full), and any "
            "proxy set in HTTPS_PROXY/HTTP_PROXY"
        )
        if not https:
            fix += "; if this port speaks TLS, use https://"
    return Finding("FAIL", f"no answer: {error} ({what})", fix)


_CLIENT_CERT_HINT = (
    "the server ended the TLS session after the handshake: it may require a client "
    "certificate (mutual TLS): pass --client-cert and --client-key"
)


def check_clock(date: str | None, local: float) -> Finding:
    """Compare the server's ``Date`` header with this host's clock at the request."""
    if date == NO_ANSWER:
        return Finding("SKIP", "no HTTP answer to read the server's Date header from")
    if not date:
        return Finding("SKIP", "the server sent no Date header")
    try:
        server = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        return Finding("SKIP", f"the server's Date header is unreadable: {date!r}")
    # Date has whole seconds: the server's clock was somewhere in [server, server + 1).
    skew = local - (server + 0.5)
    if abs(skew) <= 1.0:
        return Finding("PASS", f"this host's clock is within 1 s of the server's ({date})")
    side = "ahead of" if skew > 0 else "behind"
    detail = f"this host's clock is {abs(skew):.1f} s {side} the server's ({date})"
    if abs(skew) <= MAX_SKEW:
        return Finding("PASS", detail)
    fix = (
        "skew breaks TLS and event correlation: check NTP on this host and on the server "
        "(timedatectl, chronyc tracking)"
    )
    return Finding("WARN", detail, fix)
