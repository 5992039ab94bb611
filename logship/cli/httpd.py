"""The HTTP side of ``logship receive``: a threading server and its request handler.

The server speaks HTTP/1.1 with keep-alive, one thread per connection up to
:attr:`Limits.max_connections`, and tracks its connections so that stopping
it ends idle keep-alive ones at once. A request's token and framing are
checked from its headers before its body is read. What to do with a
request's events is the :class:`Sink`'s business.
"""

from __future__ import annotations

import hmac
import http.server
import json
import math
import socket
import socketserver
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from logship.cli.bodies import MAX_DECODED_BYTES, BadRequest, decode, size_text
from logship.cli.wire import linger, read_chunked, read_length

STATS_PATH = "/_logship/stats"
#: Wire bytes of one request body; Fluent Bit's own default limit is 4 MiB.
MAX_BODY_BYTES = 64 * 1024 * 1024
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Limits:
    """What senders can make the receiver hold, and for how long.

    ``read_timeout``: seconds a connection may send nothing before it is
    closed (a request cut short is answered 408). ``max_connections``:
    connections served at once, one thread each; one more is answered 503
    at once. ``max_body_bytes``: a body's size on the wire (chunk framing
    included). ``max_decoded_bytes``: its size once decompressed. Past
    either size the answer is 413. ``dedupe_window``: how many of the
    latest distinct ``uuid`` values duplicates are looked for among.
    """

    read_timeout: float = 30.0
    max_connections: int = 32
    max_body_bytes: int = MAX_BODY_BYTES
    max_decoded_bytes: int = MAX_DECODED_BYTES
    dedupe_window: int = 100_000

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_body_bytes", "max_decoded_bytes", "dedupe_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, not {value!r}")
        timeout = self.read_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise ValueError(f"read_timeout must be a number of seconds, not {timeout!r}")
        if not 0 < timeout < math.inf:
            raise ValueError(f"read_timeout must be a positive number of seconds, not {timeout!r}")


class Sink(Protocol):
    """Where the server's requests go (a :class:`~logship.cli.receive.Receiver`)."""

    token: str | None

    def counts(self) -> dict[str, int]:
        """The counters served at ``STATS_PATH``."""
        ...

    def accept(self, events: list[dict[str, Any]], key: str, wire_bytes: int) -> None:
        """Take the events of one accepted request.

        ``BadRequest`` if they cannot be taken, ``OSError`` if they cannot be stored.
        """
        ...

    def refuse(self, status: int = 400, reason: str = "", request: str = "") -> None:
        """Count one refused request: its status, why, and what it was (``POST /app from …``)."""
        ...


class Server(http.server.ThreadingHTTPServer):
    """Serves at most ``limits.max_connections`` at once; tracks them, so that stop() can end
    keep-alive ones at once."""

    daemon_threads = True
    # The listen backlog: as long as the system allows. socketserver's 5 is
    # filled by a burst of connections the accepting thread has not reached
    # yet, and the kernel then drops the next ones: their clients wait a
    # second or more to try again, instead of being served or refused at once.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, host: str, port: int, sink: Sink, limits: Limits | None = None) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.sink = sink
        self.limits = limits or Limits()
        self._slots = threading.BoundedSemaphore(self.limits.max_connections)
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._conns_lock = threading.Lock()
        self._closing = False
        super().__init__((host, port), Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's FQDN, which can take
        # seconds on a machine with broken resolution; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on a thread of its own, or refuse it if all are taken.

        Refused at once (503, ``Retry-After: 1``) rather than left waiting in
        the listen queue: a waiting sender gets no answer and cannot tell a
        busy receiver from a dead one, and while slow or idle connections
        hold every thread it would wait for as long as they do. logship's
        handler retries a 503 after the delay, so nothing is lost.
        """
        if not self._slots.acquire(blocking=False):
            self._refuse_busy(request, client_address)
            return
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="logship-receive-connection",
            daemon=True,
        )
        try:
            thread.start()
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse_busy(self, request: socket.socket, client_address: Any) -> None:
        reason = f"busy: already serving max_connections={self.limits.max_connections}"
        self.sink.refuse(503, reason, f"connection from {_address(client_address)}")
        body = f"{reason}\n".encode()
        answer = (
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
            f"Content-Type: {_TEXT}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("ascii")
        try:
            # This runs on the accepting thread: it must never wait on a client.
            # A few hundred bytes fit in a new socket's send buffer.
            request.setblocking(False)
            request.sendall(answer + body)
        except OSError:
            pass  # the client is gone, or not reading: it is refused all the same
        self.shutdown_request(request)

    def track(self, conn: socket.socket) -> None:
        """Remember a new connection (shut at once if the server is closing)."""
        with self._conns_lock:
            self._conns[conn] = threading.current_thread()
            closing = self._closing
        if closing:
            _shutdown(conn)

    def untrack(self, conn: socket.socket) -> None:
        """Forget a connection whose handler is done."""
        with self._conns_lock:
            self._conns.pop(conn, None)

    def close_connections(self) -> list[threading.Thread]:
        """Shut every open connection down; return the threads serving them."""
        with self._conns_lock:
            self._closing = True
            conns = dict(self._conns)
        for conn in conns:
            _shutdown(conn)
        return list(conns.values())

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request is normal; anything else is a bug worth seeing.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the client


def _address(client_address: Any) -> str:
    host, port = client_address[:2]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class Handler(http.server.BaseHTTPRequestHandler):
    """One connection: POST on any path takes events, GET ``STATS_PATH`` returns counts."""

    protocol_version = "HTTP/1.1"  # keep-alive, as logship's requests.Session expects
    server_version = "logship-receive"
    disable_nagle_algorithm = True
    server: Server
    # Set when a request is answered before its body was read: see finish().
    _body_unread = False

    def setup(self) -> None:
        super().setup()
        # A connection that sends nothing (idle, or stopped mid-request) lets its thread go.
        self.connection.settimeout(self.server.limits.read_timeout)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
            if self._body_unread:
                linger(self.connection)
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request on stderr would drown the echoed events

    def handle_one_request(self) -> None:
        self.path = ""  # a malformed request line would leave the previous request's
        super().handle_one_request()

    def parse_request(self) -> bool:
        try:
            return super().parse_request()
        except TimeoutError:  # the headers stopped coming
            self._refuse(
                408, f"no complete headers within {self.server.limits.read_timeout:g} s", close=True
            )
            return False

    def handle_expect_100(self) -> bool:
        # A client waiting for "100 Continue" before sending its body is told
        # now when the headers already refuse it, and never sends the body.
        if self.command == "POST":
            try:
                self._check_headers()
            except BadRequest as e:
                self._refuse(e.status, str(e), close=True, unread=True)
                return False
        elif self.command == "GET":
            return True  # its body is never read (see do_GET): not asked for either
        return super().handle_expect_100()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The standard library's own refusals (a malformed request line, an
        # unknown method, headers too long) are refusals like the others.
        # It says "Connection: close" but keeps reading: what follows (the
        # body of an unknown method's request) would be taken for a request.
        self.close_connection = True
        self._body_unread = True
        self.server.sink.refuse(code, message or self.responses.get(code, ("",))[0], self._what())
        super().send_error(code, message, explain)

    def do_GET(self) -> None:
        if self._declares_body():
            # A GET has no body to read: what a sender put after the head would
            # be taken for a request of its own. Answer, then close.
            self.close_connection = True
            self._body_unread = True
        if self.path.split("?", 1)[0] == STATS_PATH:
            body = json.dumps(self.server.sink.counts()).encode("ascii")
            self._reply(200, body, ctype="application/json")
        else:
            self._reply(404, b"not found\n")

    def do_POST(self) -> None:
        try:
            self._check_headers()
        except BadRequest as e:
            # The body is still on the wire: the connection cannot serve another request.
            self._refuse(e.status, str(e), close=True, unread=True)
            return
        try:
            body = self._read_body()
        except BadRequest as e:
            self._refuse(e.status, str(e), close=True, unread=True)  # the framing is lost
            return
        except TimeoutError:
            self._refuse(
                408,
                f"the body stopped coming for {self.server.limits.read_timeout:g} s",
                close=True,
            )
            return
        try:
            events = decode(
                body,
                self.headers["Content-Type"],
                self.headers["Content-Encoding"],
                self.server.limits.max_decoded_bytes,
            )
            self.server.sink.accept(events, self.headers.get("Idempotency-Key", ""), len(body))
        except BadRequest as e:
            self._refuse(e.status, str(e))
            return
        except OSError as e:  # the --output file could not be written: let the client retry
            self._refuse(503, f"cannot write the output file: {e}")
            return
        self._reply(201, b"")

    def _check_headers(self) -> None:
        """What the headers alone can refuse: the token (401), then the framing (400, 413)."""
        token = self.server.sink.token
        if token is not None and not self._authorized(token):
            raise BadRequest("missing or wrong bearer token", 401)
        self._body_length()

    def _authorized(self, token: str) -> bool:
        scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), token.encode())

    def _body_length(self) -> int | None:
        """The body's length from ``Content-Length`` (0 when absent), None when it is chunked."""
        coding = self.headers.get("Transfer-Encoding")
        if coding is not None:
            if coding.strip().lower() != "chunked":
                raise BadRequest(f"unsupported Transfer-Encoding {coding!r}")
            if "Content-Length" in self.headers:
                # RFC 9112 6.3: chunking wins, and the connection must not be reused.
                self.close_connection = True
            return None
        lengths = {v.strip() for v in self.headers.get_all("Content-Length") or ()}
        if not lengths:
            return 0  # HTTP/1.1: no length and no chunking means no body
        length = lengths.pop()
        if lengths or not (length.isascii() and length.isdigit()):
            raise BadRequest("malformed Content-Length: one number of bytes expected")
        limit = self.server.limits.max_body_bytes
        digits = length.lstrip("0") or "0"
        # int() refuses more than 4,300 digits; twenty are already past any limit.
        n = int(digits) if len(digits) <= 20 else None
        if n is None or n > limit:
            shown = n if n is not None else f"a {len(digits)}-digit number of"
            raise BadRequest(f"body of {shown} bytes is over the {size_text(limit)} limit", 413)
        return n

    def _declares_body(self) -> bool:
        """Whether a body follows the head (framing that cannot be read counts as one)."""
        try:
            return self._body_length() != 0
        except BadRequest:
            return True

    def _read_body(self) -> bytes:
        """The request's body: ``BadRequest`` if its framing is wrong, ``TimeoutError`` if slow."""
        length = self._body_length()
        if length is None:
            return read_chunked(self.rfile, self.server.limits.max_body_bytes)
        return read_length(self.rfile, length)

    def _refuse(
        self, status: int, reason: str, *, close: bool = False, unread: bool = False
    ) -> None:
        """Answer ``status`` with ``reason``, and report it to the sink.

        ``close``: the connection cannot carry another request. ``unread``:
        the body was not read (see :func:`~logship.cli.wire.linger`).
        """
        self.server.sink.refuse(status, reason, self._what())
        if close:
            self.close_connection = True
        self._body_unread = self._body_unread or unread
        headers = [("WWW-Authenticate", "Bearer")] if status == 401 else []
        if status == 503:
            headers.append(("Retry-After", "1"))
        self._reply(status, f"{reason}\n".encode(), headers)

    def _what(self) -> str:
        """``POST /app from 127.0.0.1:5678``, for refusal lines.

        Without the query string: some senders put a key there.
        """
        path = str(getattr(self, "path", "") or "").split("?", 1)[0]
        request = " ".join(str(part) for part in (getattr(self, "command", None), path) if part)
        source = f"from {_address(self.client_address)}"
        return f"{request} {source}" if request else source

    def _reply(
        self, status: int, body: bytes, headers: Sequence[tuple[str, str]] = (), ctype: str = _TEXT
    ) -> None:
        self.send_response(status)
        if body:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)
