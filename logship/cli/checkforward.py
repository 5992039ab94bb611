"""The forward protocol's steps of ``logship check``: the Unix socket, and a test record.

The record is made, encoded, framed and sent by logship's own code
(:func:`~logship.cli.checkhttp.sample_event`,
:class:`~logship.pure.protocols.forward.ForwardEncoder`,
:class:`~logship.worker.stream.StreamTransport`), the ``shared_key``
handshake included when the server asks for it, so the answer is the one a
handler would get: the ack of the record's chunk, or why none came.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from logship.cli.checkhttp import NO_ANSWER, sample_event
from logship.cli.tlsinfo import Finding
from logship.pure.batching import new_key
from logship.pure.diagnosis import hint
from logship.pure.options import Options
from logship.pure.protocols import Request, Verdict
from logship.pure.protocols import forward as fw
from logship.worker.diagnostics import Warner
from logship.worker.stream import StreamTransport


def check_unix(path: str, timeout: float) -> tuple[list[Any], Finding]:
    """Connect to the Unix socket ``path``; return ``[(AF_UNIX, path)]`` when it answered."""
    started = time.perf_counter()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
    except FileNotFoundError:
        fix = "no socket at that path: check the URL's path and the aggregator's unix_path"
        return [], Finding("FAIL", f"{path} does not exist", fix)
    except ConnectionRefusedError:
        fix = "the socket file is left over from an aggregator that is not running: start it"
        return [], Finding("FAIL", f"{path} refused the connection", fix)
    except PermissionError:
        fix = "this user may not use the socket: check its mode (Fluent Bit: unix_perm)"
        return [], Finding("FAIL", f"{path}: permission denied", fix)
    except OSError as e:
        return [], Finding("FAIL", f"{path}: {e.strerror or e}", "check the URL's path")
    ms = round((time.perf_counter() - started) * 1000, 1)
    return [(socket.AF_UNIX, path)], Finding("PASS", f"{path} connected in {ms} ms")


def check_forward(opts: Options, token_from: str | None) -> tuple[Finding, str | None, float]:
    """Send one event as a forward message; PASS on its ack. Forward has no ``Date``."""
    encoder = fw.ForwardEncoder(True)
    event = sample_event()
    body, _raw = encoder.body([encoder.unit(event)])
    transport = StreamTransport(opts, Warner(3600.0))
    chunk = new_key()
    sent = time.time()
    try:
        answer = transport.send(Request(body, encoder.headers(), chunk, 1))
    finally:
        transport.close()
    midpoint = (sent + time.time()) / 2
    what = f"1 event, tag {transport.tag}, gzip, {len(body)} bytes"
    if transport.helo:
        key = f"the token from {token_from}" if token_from else "an empty key"
        what += f", after the shared_key handshake with {key}"
    outcome = fw.AckReader().read(answer, 1)
    if outcome.verdict is Verdict.DELIVERED:
        detail = f"ack of chunk {chunk}: the test event was taken ({what}; uuid {event['uuid']})"
        return Finding("PASS", detail), NO_ANSWER, midpoint
    fix = _fix(outcome.kind, token_from)
    if outcome.kind == "connection" and opts.url[0].startswith("tcp:"):
        fix += "; if this port speaks TLS, use tls://"
    return Finding("FAIL", f"{answer.error} ({what})", fix), NO_ANSWER, midpoint


def _fix(kind: str, token_from: str | None) -> str:
    if kind == fw.SHARED_KEY and not token_from:
        return "the server asks for a shared_key: pass it with --token or --token-file"
    if kind == fw.SHARED_KEY:
        return "check the token (--token/--token-file) against the server's shared_key"
    if kind == fw.NOT_FORWARD:
        return "this port does not speak the forward protocol: check the port (tls:// for TLS)"
    return hint(kind)
