"""Connection-level behaviour under ``requests``: DNS fallback and the TLS context.

Runs on the sender thread. Only ``transport`` and ``stream`` use this module
(``stream`` for the TLS context and the CA bundle alone).

When the endpoint's name stops resolving after it once worked (a DNS outage
is a common way for a log pipeline to go quiet), connections go to the last
addresses that worked for that host and port. The TLS layer still sees and
verifies the original host name: only the address connected to changes.
"""

from __future__ import annotations

import math
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from urllib3.util.ssl_ import create_urllib3_context

from logship.pure.options import load_client_pair

TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class AddressBook:
    """The last addresses that accepted a connection, per (host, port)."""

    def __init__(self, on_fallback: Callable[[str, list[str]], None]) -> None:
        self._good: dict[tuple[str, int], list[str]] = {}
        self._lock = threading.Lock()
        self.on_fallback = on_fallback

    def remember(self, host: str, port: int, address: str) -> None:
        with self._lock:
            known = self._good.setdefault((host, port), [])
            if address in known:
                known.remove(address)
            known.insert(0, address)
            del known[4:]

    def recall(self, host: str, port: int) -> list[str]:
        with self._lock:
            return list(self._good.get((host, port), ()))


class Deadline:
    """When the request under way must have its whole answer (monotonic seconds).

    urllib3's and requests' ``timeout`` bounds each read of the socket, not a
    request: a server that sends its answer a byte at a time, each byte
    within the timeout, would hold the sender for ever, with no error to say
    so. The sockets of the pools made by :func:`pool_classes` (and the TLS
    sockets of a context given to :func:`enforce_deadline`) check it before
    every read.
    """

    __slots__ = ("at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = math.inf  # no request under way

    def start(self) -> None:
        """A request is sent: its whole answer is due within ``seconds``."""
        self.at = time.monotonic() + self.seconds

    def stop(self) -> None:
        """The answer is read (or the request failed)."""
        self.at = math.inf

    def check(self) -> None:
        """Raise ``TimeoutError`` once the answer is overdue."""
        if time.monotonic() > self.at:
            raise TimeoutError(
                f"the answer did not arrive whole within the timeout ({self.seconds:g} s): "
                "the server sends too slowly"
            )


class _ReadsByDeadline:
    """A socket's reads (``http.client`` reads with ``recv_into``), each after a look at
    its :class:`Deadline`. Mixed into a plain and a TLS socket class."""

    deadline: Deadline

    def recv_into(self, *args: Any) -> int:
        self.deadline.check()
        return super().recv_into(*args)  # type: ignore[misc,no-any-return]

    def recv(self, *args: Any) -> bytes:
        self.deadline.check()
        return super().recv(*args)  # type: ignore[misc,no-any-return]


class _DeadlineSocket(_ReadsByDeadline, socket.socket):
    """A plain socket that checks its :class:`Deadline` before each read."""


def enforce_deadline(context: ssl.SSLContext, deadline: Deadline) -> None:
    """Make the TLS sockets of ``context`` check ``deadline`` before each read."""

    class DeadlineSSLSocket(_ReadsByDeadline, ssl.SSLSocket):
        pass

    DeadlineSSLSocket.deadline = deadline
    context.sslsocket_class = DeadlineSSLSocket


class _FallbackMixin:
    """``_new_conn`` that remembers good addresses and uses them when DNS fails, and gives
    the socket the pool's :class:`Deadline`."""

    book: AddressBook
    deadline: Deadline
    _dns_host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def _new_conn(self) -> socket.socket:
        try:
            sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        except urllib3.exceptions.NameResolutionError:
            addresses = self.book.recall(self._dns_host, self.port)
            if not addresses:
                raise
            sock = self._connect_any(addresses)
            self.book.on_fallback(self._dns_host, addresses)
            return self._with_deadline(sock)
        try:
            self.book.remember(self._dns_host, self.port, sock.getpeername()[0])
        except OSError:
            pass
        return self._with_deadline(sock)

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        # The request is sent: its answer is due within the timeout from here.
        # Connecting and sending have timeouts of their own (a slow connect, a
        # large body on a slow uplink must not eat into the answer's).
        self.deadline.start()
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]

    def _with_deadline(self, sock: socket.socket) -> socket.socket:
        """The same connected socket, as one that checks the pool's deadline."""
        timeout = sock.gettimeout()
        out = _DeadlineSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
        out.settimeout(timeout)
        out.deadline = self.deadline
        return out

    def _connect_any(self, addresses: list[str]) -> socket.socket:
        error: OSError | None = None
        for address in addresses:
            try:
                return urllib3.util.connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as e:
                error = e
        raise urllib3.exceptions.NewConnectionError(
            self,  # type: ignore[arg-type]  # always mixed into an HTTPConnection
            f"Failed to connect to the last known addresses {addresses}: {error}",
        )


def pool_classes(book: AddressBook, deadline: Deadline) -> dict[str, type]:
    """Connection pool classes for http and https whose connections use ``book`` and
    ``deadline``."""

    class HTTPConnection(_FallbackMixin, urllib3.connection.HTTPConnection):
        pass

    class HTTPSConnection(_FallbackMixin, urllib3.connection.HTTPSConnection):
        pass

    HTTPConnection.book = HTTPSConnection.book = book
    HTTPConnection.deadline = HTTPSConnection.deadline = deadline

    class HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
        ConnectionCls = HTTPConnection

    class HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
        ConnectionCls = HTTPSConnection

    return {"http": HTTPPool, "https": HTTPSPool}


def env_ca_bundle() -> tuple[str, str] | None:
    """The CA bundle the environment names for ``requests``, as ``(variable, path)``.

    ``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``, in the order ``requests``
    reads them; ``logship check`` verifies against the same one.
    """
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        path = os.environ.get(name)
        if path:
            return name, path
    return None


def tls_context(
    min_version: str,
    verify: bool,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> ssl.SSLContext:
    """The TLS context for every connection: at least ``min_version``, with the client pair.

    The client certificate is loaded here, once, never by the HTTP client on
    each connection: OpenSSL asks on the terminal for the password of an
    encrypted key it loads without one, and this runs on a worker thread.
    (The options refuse such a key at construction, by loading it the same way.)
    """
    ctx = create_urllib3_context(
        ssl_minimum_version=TLS_VERSIONS[min_version],
        cert_reqs=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
    )
    if client_cert:
        load_client_pair(ctx, client_cert, client_key)
    return ctx


def cert_days_left(sock: Any) -> float | None:
    """Days until the certificate a verified TLS socket's peer showed expires."""
    try:
        cert = sock.getpeercert()
    except (AttributeError, ValueError, OSError):
        return None
    if not cert or "notAfter" not in cert:
        return None
    return (ssl.cert_time_to_seconds(cert["notAfter"]) - time.time()) / 86400.0


def trusted_locations(ca_file: str | None) -> tuple[str | None, str | None]:
    """The CA file or folder a verified connection trusts, as ``requests`` chooses it.

    ``ca_file``, else ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` (a folder
    given there is a folder of hashed certificates), else certifi's bundle,
    ``requests``' own default: a socket opened without ``requests`` then
    trusts exactly what an HTTPS request would. Returns ``(cafile, capath)``.
    """
    if ca_file:
        return ca_file, None
    bundle = env_ca_bundle()
    if bundle:
        path = bundle[1]
        return (None, path) if os.path.isdir(path) else (path, None)
    import certifi  # requests' own dependency and default bundle

    where: str = certifi.where()
    return where, None
