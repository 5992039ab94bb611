"""The stream transport: forward-protocol messages over TCP, TLS or a Unix socket.

Runs on the sender thread; the only module that opens these sockets
(``tcp://host:port``, ``tls://host:port``, ``unix:///path``). One connection
is kept open and reused. Each :meth:`StreamTransport.send` writes one
message (:func:`~logship.pure.protocols.forward.message`) and waits up to
``timeout`` for the ack of its chunk; whatever goes wrong closes the
connection, and the next send opens a new one, after the sender's back-off.
Nothing raises out of ``send``: every failure comes back as an
:class:`~logship.pure.protocols.Answer` whose ``kind`` says why (see
``pure.diagnosis``), and an ack as one whose ``ack`` header names the chunk.

A server with a ``shared_key`` opens each connection with a ``HELO``; the
transport answers with a ``PING`` whose digest is made with the token (an
empty key when there is none, as Fluent Bit's ``empty_shared_key`` takes)
and checks the server's ``PONG``. Whether a server sends ``HELO`` is learned:
with a token, the first connection waits a moment for one; a ``HELO`` that
comes after a message was sent is answered on a new connection at once.
"""

from __future__ import annotations

# The first connection to a host given by a non-ASCII name imports this codec; imported
# here, on the thread that builds the handler, a fork never finds its import lock held.
import encodings.idna  # noqa: F401
import os
import select
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import msgpack

from logship.pure.diagnosis import connection_kind, tls_kind
from logship.pure.options import Options
from logship.pure.protocols import Answer, Request
from logship.pure.protocols import forward as fw
from logship.pure.redact_url import url_secrets
from logship.worker.connections import cert_days_left, tls_context, trusted_locations
from logship.worker.diagnostics import Warner
from logship.worker.tokens import TokenSource

#: How long a new connection waits for a ``HELO``, while it is not known whether the
#: server sends one, before taking it for one that does not (at most ``timeout``).
HELO_GRACE = 0.5
# What the server may say at once before it counts as not speaking the protocol.
_MAX_ANSWER_BYTES = 64 * 1024
# The certificate's expiry is read after a success at most this often.
_CERT_CHECK_INTERVAL = 3600.0
# What _next returns when nothing came in time, or the server closed the connection.
_NOTHING, _CLOSED = object(), object()


class _Failed(Exception):
    """A failure with the kind the answer will carry."""

    def __init__(self, error: str, kind: str) -> None:
        super().__init__(error)
        self.error, self.kind = error, kind


class _LateHelo(Exception):
    """The server sent its ``HELO`` after the message: it wants the handshake."""


@dataclass(eq=False)
class _Connection:
    """One open socket, what it has received, and the process that opened it."""

    sock: socket.socket
    unpacker: msgpack.Unpacker = field(
        default_factory=lambda: msgpack.Unpacker(raw=True, max_buffer_size=_MAX_ANSWER_BYTES)
    )
    pid: int = field(default_factory=os.getpid)

    def close(self) -> None:
        # Shut down only in the process that opened it: a forked child closing
        # its copy must not end the parent's connection.
        if self.pid == os.getpid():
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass


def error_kind(exc: BaseException) -> str:
    """A short name for why a connection failed, for warnings and ``stats()``."""
    if isinstance(exc, ssl.SSLError):
        return tls_kind(str(exc))
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, (ConnectionRefusedError, FileNotFoundError)):
        return "refused"  # for a Unix socket, no file is nothing listening
    return connection_kind(str(exc))


class StreamTransport:
    """Sends forward-protocol messages and waits for their acks (see the module docstring)."""

    def __init__(self, opts: Options, warner: Warner, url: str | None = None) -> None:
        url = url or opts.url[0]
        parts = urllib.parse.urlsplit(url)
        self.scheme = parts.scheme.lower()
        self.host = parts.hostname or ""
        self.port = parts.port or 0
        self.path = urllib.parse.unquote(parts.path)  # a unix:// URL's socket
        self.timeout = opts.timeout
        self.tag = opts.tag or fw.DEFAULT_TAG
        self._tokens = TokenSource(opts, warner)
        self._url_secrets = url_secrets(url)
        self._hostname = socket.gethostname().encode("utf-8")
        self._context: ssl.SSLContext | None = None
        self._context_error: str | None = None  # said by every send: never raised here
        if self.scheme == "tls":
            try:
                # The client pair was checked at construction; loaded once, here.
                self._context = tls_context(
                    opts.tls_min_version, opts.verify, opts.client_cert, opts.client_key
                )
                if opts.verify:
                    cafile, capath = trusted_locations(opts.ca_file)
                    self._context.load_verify_locations(cafile=cafile, capath=capath)
            except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
                self._context_error = f"cannot load the TLS files (ca_file, client_cert): {e}"
        self._conn: _Connection | None = None
        self._lock = threading.Lock()  # close() runs on another thread than send()
        self._closed = False
        #: Whether this server opens its connections with HELO: None while unknown
        #: (again after a failure). Without a token it is not waited for at first: a
        #: server that wants one then sends its HELO late, and is answered at once.
        self.helo: bool | None = None if (opts.token or opts.token_file) else False
        self._next_cert_check = 0.0

    def scrub(self, text: str) -> str:
        """``text`` without the token or the URL's secrets (see ``TokenSource.scrub``)."""
        return self._tokens.scrub(text, self._url_secrets)

    # -- sending -------------------------------------------------------------------------

    def send(self, request: Request) -> Answer:
        """Send one batch as a message and wait for its ack; never raises."""
        compressed = request.headers.get("Content-Encoding") == "gzip"
        try:
            msg = fw.message(self.tag, request.body, request.key, request.count, compressed)
            inflated = fw.inflated_size(request.body, compressed)
            problem = fw.size_problem(len(msg), inflated, request.count)
            if problem:
                return Answer(None, error=problem, kind=fw.TOO_LARGE)
            try:
                conn = self._exchange(msg, request.key)
            except _LateHelo:  # answered on a new connection, at once
                self._drop()
                self.helo = True
                conn = self._exchange(msg, request.key)
        except _Failed as e:
            return self._failure(e.error, e.kind)
        except _LateHelo:
            return self._failure("the server asked for the handshake again", fw.NOT_FORWARD)
        except Exception as e:  # every failure to get an ack is retried, none raised
            return self._failure(f"{type(e).__name__}: {e}", error_kind(e))
        return Answer(None, headers={fw.ACK: request.key}, cert_days_left=self._cert_days(conn))

    def _failure(self, error: str, kind: str) -> Answer:
        self._drop()
        # Learn again on the next connection: a HELO may have been lost with this
        # one, or the server's configuration may have changed.
        self.helo = None
        return Answer(None, error=self.scrub(error), kind=kind)

    def _exchange(self, msg: bytes, chunk: str) -> _Connection:
        """Write ``msg`` on the open connection (or a new one) and read the ack of ``chunk``."""
        conn = self._connection()
        conn.sock.settimeout(self.timeout)
        conn.sock.sendall(msg)
        wanted = chunk.encode("ascii")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._next(conn, deadline - time.monotonic())
            if answer is _NOTHING:
                raise _Failed(f"no ack of chunk {chunk} within {self.timeout:g} s", fw.NO_ACK)
            if answer is _CLOSED:
                raise _Failed(
                    f"the server closed the connection without acknowledging chunk {chunk}",
                    fw.NO_ACK,
                )
            if isinstance(answer, dict):
                if answer.get(b"ack") == wanted:
                    return conn
                continue  # another chunk's ack: not this message's
            if fw.is_helo(answer):
                raise _LateHelo
            raise _Failed(f"the server answered {answer!r:.80} instead of an ack", fw.NOT_FORWARD)

    def _next(self, conn: _Connection, seconds: float) -> Any:
        """The server's next message, or :data:`_NOTHING` after ``seconds``, or :data:`_CLOSED`."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                return next(conn.unpacker)
            except StopIteration:
                pass
            except (ValueError, msgpack.UnpackException) as e:
                raise _Failed(f"the server sent what is not msgpack: {e}", fw.NOT_FORWARD) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _NOTHING
            conn.sock.settimeout(remaining)
            try:
                data = conn.sock.recv(65536)
            except TimeoutError:
                return _NOTHING
            if not data:
                return _CLOSED
            try:
                conn.unpacker.feed(data)
            except msgpack.UnpackException:  # BufferFull: far more than any answer
                raise _Failed("the server sent more than any answer", fw.NOT_FORWARD) from None

    # -- connections ---------------------------------------------------------------------

    def _connection(self) -> _Connection:
        """The open connection if it is still usable, else a new one (greeted)."""
        conn = self._conn
        if conn is not None and not _idle_and_open(conn):
            self._drop()
            conn = None
        if conn is None:
            conn = self._open()
            try:
                self._greet(conn)
            except BaseException:
                conn.close()
                raise
            with self._lock:
                if self._closed:
                    conn.close()
                    raise _Failed("the handler is closing", "connection")
                self._conn = conn
        return conn

    def _open(self) -> _Connection:
        """A new socket to the endpoint, connected (and TLS shaken hands) within ``timeout``."""
        if self._context_error:
            raise _Failed(self._context_error, "tls")
        if self.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
            except BaseException:
                sock.close()
                raise
            return _Connection(sock)
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            # Messages and acks are small and answer each other: no Nagle delay.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # A connection idle between batches must not be dropped silently by a NAT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    def _greet(self, conn: _Connection) -> None:
        """Answer the server's ``HELO`` with the shared key, if it sends one."""
        if self.helo is False:
            return  # learned: this server does not
        wait = self.timeout if self.helo else min(self.timeout, HELO_GRACE)
        first = self._next(conn, wait)
        if first is _NOTHING and not self.helo:
            self.helo = False
            return
        if first is _NOTHING:
            raise _Failed(f"the server sent no HELO within {self.timeout:g} s", "timeout")
        if first is _CLOSED:
            raise _Failed("the server closed the connection as soon as it opened", "connection")
        nonce = fw.helo_nonce(first)
        if nonce is None:
            raise _Failed(f"the server opened with {first!r:.80}, not a HELO", fw.NOT_FORWARD)
        self.helo = True
        salt = os.urandom(16).hex().encode("ascii")
        key = (self._tokens.current() or "").encode("utf-8")
        conn.sock.settimeout(self.timeout)
        conn.sock.sendall(fw.ping(nonce, salt, self._hostname, key))
        pong = self._next(conn, self.timeout)
        if pong is _CLOSED:
            # Fluent Bit closes the connection on a wrong key; Fluentd says why in a PONG.
            raise _Failed(
                "the server closed the connection after the PING: it refused the shared key",
                fw.SHARED_KEY,
            )
        if pong is _NOTHING:
            raise _Failed(f"no PONG within {self.timeout:g} s", "timeout")
        problem = fw.pong_problem(pong, nonce, salt, key)
        if problem is not None:
            raise _Failed(problem[1], problem[0])

    def _cert_days(self, conn: _Connection) -> float | None:
        if self._context is None or time.monotonic() < self._next_cert_check:
            return None
        self._next_cert_check = time.monotonic() + _CERT_CHECK_INTERVAL
        return cert_days_left(conn.sock)

    def _drop(self) -> None:
        """Close the open connection, if any: the next send opens a new one."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close the connection; a send still waiting for its ack then fails at once."""
        with self._lock:
            self._closed = True
        self._drop()


def _idle_and_open(conn: _Connection) -> bool:
    """Whether a kept connection can carry the next message.

    An idle connection that has something to read was closed by the server
    (or holds bytes nobody asked for); a TLS 1.3 session ticket, read here,
    is the one exception.
    """
    try:
        readable = select.select([conn.sock], [], [], 0)[0]
    except (OSError, ValueError):
        return False
    if not readable:
        return True
    try:
        conn.sock.setblocking(False)
        conn.sock.recv(1)
    except (ssl.SSLWantReadError, BlockingIOError):
        return True
    except OSError:
        return False
    return False  # closed (no data), or bytes that answer nothing sent
