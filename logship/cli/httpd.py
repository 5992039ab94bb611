"""The HTTP side of ``logship receive``: a threading server and its request handler.

The server speaks HTTP/1.1 with keep-alive, one thread per connection, and
tracks its connections so that stopping it ends idle keep-alive ones at
once. What to do with a request's events is the :class:`Sink`'s business.
"""

from __future__ import annotations

import hmac
import http.server
import json
import socket
import socketserver
import sys
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from logship.cli.bodies import BadRequest, decode, size_text
from logship.cli.wire import read_chunked, read_length

STATS_PATH = "/_logship/stats"
#: Wire bytes of one request body; Fluent Bit's own default limit is 4 MiB.
MAX_BODY_BYTES = 64 * 1024 * 1024
_TEXT = "text/plain; charset=utf-8"


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
    """Tracks its connections, so that stop() can end keep-alive ones at once."""

    daemon_threads = True

    def __init__(self, host: str, port: int, sink: Sink) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.sink = sink
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

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        self.server.untrack(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request on stderr would drown the echoed events

    def handle_one_request(self) -> None:
        self.path = ""  # a malformed request line would leave the previous request's
        super().handle_one_request()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The standard library's own refusals (a malformed request line, an
        # unknown method, headers too long) are refusals like the others.
        # It says "Connection: close" but keeps reading: what follows (the
        # body of an unknown method's request) would be taken for a request.
        self.close_connection = True
        self.server.sink.refuse(code, message or self.responses.get(code, ("",))[0], self._what())
        super().send_error(code, message, explain)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == STATS_PATH:
            body = json.dumps(self.server.sink.counts()).encode("ascii")
            self._reply(200, body, ctype="application/json")
        else:
            self._reply(404, b"not found\n")

    def do_POST(self) -> None:
        try:
            body = self._read_body()
        except BadRequest as e:
            self._refuse(e.status, str(e), close=True)  # the request's framing is lost
            return
        token = self.server.sink.token
        if token is not None and not self._authorized(token):
            self._refuse(401, "missing or wrong bearer token")
            return
        try:
            events = decode(body, self.headers["Content-Type"], self.headers["Content-Encoding"])
            self.server.sink.accept(events, self.headers.get("Idempotency-Key", ""), len(body))
        except BadRequest as e:
            self._refuse(e.status, str(e))
            return
        except OSError as e:  # the --output file could not be written: let the client retry
            self._refuse(503, f"cannot write the output file: {e}")
            return
        self._reply(201, b"")

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
        n = int(length)
        if n > MAX_BODY_BYTES:
            raise BadRequest(
                f"body of {n} bytes is over the {size_text(MAX_BODY_BYTES)} limit", 413
            )
        return n

    def _read_body(self) -> bytes:
        """The request's body; ``BadRequest`` if its framing is wrong or it is too large."""
        length = self._body_length()
        if length is None:
            return read_chunked(self.rfile, MAX_BODY_BYTES)
        return read_length(self.rfile, length)

    def _refuse(self, status: int, reason: str, *, close: bool = False) -> None:
        """Answer ``status`` with ``reason``, and report it to the sink.

        ``close``: the connection cannot carry another request.
        """
        self.server.sink.refuse(status, reason, self._what())
        if close:
            self.close_connection = True
        headers = [("WWW-Authenticate", "Bearer")] if status == 401 else []
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
