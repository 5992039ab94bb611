"""A small HTTP collector on 127.0.0.1 that can be told to misbehave.

Each request takes the next action from a script (or the default action, or
what :meth:`FaultServer.respond` makes of the request):
answer a status (with headers and a body), close the connection without an
answer, or stall until released. It can also refuse bodies over a size with
413, and go down and come back up on the same port.
"""

from __future__ import annotations

import gzip
import http.server
import json
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgpack


@dataclass
class Action:
    """What the server does with one request."""

    kind: str = "status"  # "status", "close", "stall", "trickle"
    status: int = 201
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before answering (cut short by ``release``)


def status(code: int, body: bytes = b"", **headers: str) -> Action:
    """Answer ``code`` with ``headers`` (underscores in names become dashes)."""
    return Action("status", code, {k.replace("_", "-"): v for k, v in headers.items()}, body)


def delayed(seconds: float, code: int = 201, body: bytes = b"", **headers: str) -> Action:
    """Like :func:`status`, but answer only after ``seconds`` (a slow collector)."""
    action = status(code, body, **headers)
    action.delay = seconds
    return action


CLOSE = Action("close")
STALL = Action("stall")
#: A 200's status line, then a header byte every 50 ms until ``release``: each read
#: of the client's is quick, its answer never whole.
TRICKLE = Action("trickle", delay=0.05)


@dataclass
class Request:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    wire: bytes
    events: list[dict[str, Any]]
    answered: int | None
    arrived: float = 0.0  # time.monotonic() when the body had been read


def decode_events(content_type: str, encoding: str | None, body: bytes) -> list[dict[str, Any]]:
    """Decode a logship request body back into events."""
    if encoding == "gzip":
        body = gzip.decompress(body)
    if content_type.startswith("application/msgpack"):
        data = msgpack.unpackb(body, raw=False, strict_map_key=False)
    elif content_type.startswith("application/x-ndjson"):
        data = [json.loads(line) for line in body.splitlines() if line.strip()]
    else:
        data = json.loads(body)
    return data if isinstance(data, list) else [data]


class FaultServer:
    """A scriptable collector. Use as a context manager or call start/stop."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.script: deque[Action] = deque()
        self.default = status(201)
        self.max_body: int | None = None  # wire bytes over this get 413
        self.requests: list[Request] = []
        self.connections = 0
        self.open_connections = 0  # connections accepted and not yet closed
        self.arrivals = 0  # requests whose body was read, answered or not yet
        self.cond = threading.Condition()
        self.release = threading.Event()  # set to free stalled requests
        self.port = 0
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------

    def start(self) -> FaultServer:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server.cond:
                    server.connections += 1
                    server.open_connections += 1
                    server.cond.notify_all()

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with server.cond:
                        server.open_connections -= 1
                        server.cond.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                server._handle(self)

            def do_GET(self) -> None:
                server._handle_get(self)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that drops a connection or refuses our certificate

        httpd = Server(("127.0.0.1", self.port), Handler, False)
        httpd.daemon_threads = True
        httpd.allow_reuse_address = True
        httpd.server_bind()
        httpd.server_activate()
        if self.ssl_context is not None:
            # The handshake happens in the handler's thread, where a failed one
            # closes the connection; done in accept() it could leak the socket.
            httpd.socket = self.ssl_context.wrap_socket(
                httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self.release.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (the port is kept for :meth:`start`), freeing stalled requests."""
        self.release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    down = stop

    def up(self) -> FaultServer:
        """Listen again on the same port."""
        return self.start()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context else "http"

    def url(self, path: str = "/app") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def then(self, *actions: Action) -> FaultServer:
        """Queue actions for the next requests, in order."""
        with self.cond:
            self.script.extend(actions)
        return self

    # -- observation ---------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """Events of every request answered 2xx, in arrival order."""
        with self.cond:
            return [
                e for r in self.requests if r.answered and 200 <= r.answered < 300 for e in r.events
            ]

    def uuids(self) -> set[str]:
        return {e["uuid"] for e in self.events()}

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        """Wait until ``predicate(self)`` is true, or ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(min(remaining, 0.05))
            return True

    def wait_for_uuids(self, n: int, timeout: float = 10.0) -> bool:
        return self.wait_for(lambda s: len(s._uuids_locked()) >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        return self.wait_for(lambda s: len(s.requests) >= n, timeout)

    def _uuids_locked(self) -> set[str]:
        return {
            e["uuid"]
            for r in self.requests
            if r.answered and 200 <= r.answered < 300
            for e in r.events
        }

    # -- serving -------------------------------------------------------------

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        wire = h.rfile.read(length)
        arrived = time.monotonic()
        headers = {k: v for k, v in h.headers.items()}
        with self.cond:
            self.arrivals += 1
            self.cond.notify_all()
            scripted = self.script.popleft() if self.script else None
        action = scripted or self.respond(h.path, headers, wire)
        if self.max_body is not None and len(wire) > self.max_body:
            action = status(413, b"Request Entity Too Large")
        try:
            events = decode_events(
                headers.get("Content-Type", ""), headers.get("Content-Encoding"), wire
            )
        except Exception:
            events = []
        answered: int | None = action.status if action.kind == "status" else None
        if action.kind == "stall":
            self.release.wait(60)
        elif action.delay and action.kind != "trickle":
            self.release.wait(action.delay)
        self._record(Request(h.path, headers, wire, events, answered, arrived))
        if action.kind == "trickle":
            try:
                h.wfile.write(b"HTTP/1.1 200 OK\r\n")
                h.wfile.flush()
                while not self.release.wait(action.delay):
                    h.wfile.write(b"X")
                    h.wfile.flush()
            except OSError:
                pass  # the client gave up
        if action.kind != "status":
            self.hang_up(h)
            return
        h.send_response(action.status)
        for k, v in action.headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(action.body)))
        h.end_headers()
        h.wfile.write(action.body)

    def respond(self, path: str, headers: dict[str, str], wire: bytes) -> Action:
        """The answer to a request no scripted action answers: :attr:`default`.

        A fake of one aggregator overrides it to answer from what the request holds.
        """
        return self.default

    def _handle_get(self, h: http.server.BaseHTTPRequestHandler) -> None:
        """A GET (a probe's version or health page): none here; a subclass may serve one."""
        h.send_error(404)

    @staticmethod
    def hang_up(h: Any) -> None:
        """Close the connection of request handler ``h`` without an answer."""
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _record(self, request: Request) -> None:
        with self.cond:
            self.requests.append(request)
            self.cond.notify_all()
