"""TLS (SPEC section 2: ``verify``, ``ca_file``, ``client_cert``, ``client_key``) against a
real HTTPS collector on loopback, with a throw-away CA made by ``trustme``.

A TLS failure is a delivery error: it is retried, never dropped, and reported
in ``stats()["last_error"]``.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme

from conftest import attach, check_identity, require_within, wait_until
from faultserver import TRICKLE, FaultServer

# requests lets these environment variables replace the trust store; most tests
# here are about logship's own options, so they run without them.
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CA_BUNDLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ca_file(ca, tmp_path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def client_files(ca, tmp_path) -> tuple[str, str]:
    leaf = ca.issue_cert("client.logship.test")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    for i, blob in enumerate(leaf.cert_chain_pems):
        blob.write_to_path(str(cert), append=i > 0)
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def _server(ca: trustme.CA, require_client_cert: bool) -> FaultServer:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(ctx)
    return FaultServer(ssl_context=ctx).start()


@pytest.fixture
def tls_server(ca) -> Iterator[FaultServer]:
    srv = _server(ca, require_client_cert=False)
    yield srv
    srv.stop()


@pytest.fixture
def mtls_server(ca) -> Iterator[FaultServer]:
    srv = _server(ca, require_client_cert=True)
    yield srv
    srv.stop()


def emit(handler, n: int) -> None:
    log = attach(handler)
    for i in range(n):
        log.info("tls event %d", i)


def assert_held_by_tls(handler, server: FaultServer, n: int) -> None:
    """Nothing delivered, nothing lost: the events wait for a working handshake."""
    assert wait_until(lambda: handler.stats()["retries"] >= 2)
    stats = handler.stats()
    assert stats["shipped"] == 0 and stats["dropped"] == 0 and stats["rejected"] == 0
    assert stats["pending"] == n
    check_identity(stats)
    assert re.search(r"ssl|tls|certificate", stats["last_error"] or "", re.IGNORECASE), stats
    assert server.uuids() == set()


def test_url_is_https(tls_server):
    assert tls_server.url().startswith("https://127.0.0.1:")


def test_unknown_ca_is_not_trusted_by_default(tls_server, make_handler, clean_env):
    h = make_handler(tls_server.url(), shutdown_timeout=0.5)  # verify=True, no ca_file
    emit(h, 5)
    assert_held_by_tls(h, tls_server, 5)
    assert tls_server.requests == []  # no request got through the handshake
    assert h.flush(0.2) is False


def test_ca_file_is_trusted(tls_server, make_handler, ca_file, clean_env):
    h = make_handler(tls_server.url(), ca_file=ca_file)
    emit(h, 20)
    assert h.flush(5)
    assert len(tls_server.uuids()) == 20
    stats = h.stats()
    assert stats["shipped"] == 20 and stats["retries"] == 0
    check_identity(stats)


@pytest.mark.parametrize("variable", CA_BUNDLE_VARIABLES)
def test_ca_file_wins_over_the_ca_bundle_environment(
    tls_server, make_handler, ca_file, tmp_path, monkeypatch, variable
):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    for name in CA_BUNDLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, str(other))
    h = make_handler(tls_server.url(), ca_file=ca_file, shutdown_timeout=0.5)
    emit(h, 5)
    assert h.flush(1)
    assert len(tls_server.uuids()) == 5


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_false_delivers_without_a_ca(tls_server, make_handler, clean_env):
    h = make_handler(tls_server.url(), verify=False)
    emit(h, 5)
    assert h.flush(5)
    assert len(tls_server.uuids()) == 5


def test_mutual_tls_with_a_client_certificate(
    mtls_server, make_handler, ca_file, client_files, clean_env
):
    cert, key = client_files
    h = make_handler(mtls_server.url(), ca_file=ca_file, client_cert=cert, client_key=key)
    emit(h, 10)
    assert h.flush(5)
    assert len(mtls_server.uuids()) == 10
    stats = h.stats()
    assert stats["shipped"] == 10
    check_identity(stats)


def test_mutual_tls_without_a_client_certificate_is_refused(
    mtls_server, make_handler, ca_file, clean_env
):
    h = make_handler(mtls_server.url(), ca_file=ca_file, shutdown_timeout=0.5)
    emit(h, 5)
    assert_held_by_tls(h, mtls_server, 5)


def test_an_answer_that_trickles_in_over_tls_is_cut_at_the_timeout(
    tls_server, ca_file, make_handler
):
    tls_server.then(TRICKLE)  # each byte well within the timeout; the whole answer never
    h = make_handler(tls_server.url(), ca_file=ca_file, timeout=0.5)
    emit(h, 3)
    assert h.flush(20)
    assert len(tls_server.uuids()) == 3 and tls_server.arrivals == 2
    assert h.stats()["retries"] == 1 and "timed out" in h.stats()["last_error"]


class TricklingRelay:
    """A TCP relay to ``port`` that passes the server's first ``trickled`` connections'
    bytes on one at a time, 50 ms apart (each well within any timeout, the
    handshake never whole); later connections, and the client's bytes, go at once."""

    def __init__(self, port: int, trickled: int) -> None:
        self.upstream, self.trickled = port, trickled
        self.accepted = 0
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            server = socket.create_connection(("127.0.0.1", self.upstream))
            self.sockets += (client, server)
            slow = self.accepted <= self.trickled
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, slow), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, slow: bool) -> None:
        try:
            while not self.stopping.is_set():
                data = src.recv(1 if slow else 65536)
                if not data:
                    break
                dst.sendall(data)
                if slow:
                    self.stopping.wait(0.05)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self.stopping.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept(), which close() does not
        except OSError:
            pass
        self.acceptor.join(5)
        self.listener.close()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def relay(tls_server) -> Iterator[TricklingRelay]:
    r = TricklingRelay(tls_server.port, trickled=1)
    yield r
    r.stop()


def test_a_handshake_that_trickles_in_is_cut_at_the_timeout(
    tls_server, relay, ca_file, make_handler, clean_env
):
    # The first connection's handshake, a byte every 50 ms, would take a minute; the
    # retry's connection is whole. (The timeout bounds the whole handshake, as CPython
    # takes a socket's timeout for it, not each read alone.)
    h = make_handler(f"https://127.0.0.1:{relay.port}/app", ca_file=ca_file, timeout=0.5)
    emit(h, 3)
    assert h.flush(20)  # far less than the trickled handshake would take
    assert len(tls_server.uuids()) == 3 and relay.accepted == 2
    stats = h.stats()
    assert stats["retries"] == 1 and stats["shipped"] == 3, stats
    assert "timed out" in stats["last_error"], stats  # (urllib3's words for it)


def test_a_forward_handshake_that_trickles_in_is_cut_at_the_timeout(
    tls_server, ca_file, make_handler, clean_env
):
    relay = TricklingRelay(tls_server.port, trickled=1_000)  # every connection
    try:
        h = make_handler(
            f"tls://127.0.0.1:{relay.port}",
            protocol="forward",
            ca_file=ca_file,
            timeout=0.5,
            shutdown_timeout=0.5,
        )
        emit(h, 2)
        what = "a handshake cut at the timeout"
        # (CPython's handshake takes the socket's timeout as a bound on the whole of it.)
        require_within(lambda: h.stats()["last_error_kind"] == "timeout", 10, what)
        assert "handshake operation timed out" in h.stats()["last_error"]
        assert h.stats()["pending"] == 2
        check_identity(h.stats())
    finally:
        relay.stop()
