"""Operations and security (issue 5): warnings that say what to do, DNS outages,
TLS versions and certificate expiry, and secrets that never leak.

Every server is real and on 127.0.0.1. The one thing faked is the resolver,
since no DNS server here can be made to fail on demand: the test wraps
``socket.getaddrinfo`` so that one name resolves, then stops resolving.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import ssl
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme

from conftest import attach, check_identity, require_within
from faultserver import STALL, FaultServer, status
from procs import Proc, child_env

NAME = "logship-dns.test"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_servers() -> Iterator[Callable[..., FaultServer]]:
    """Makes TLS servers for a certificate issued to a name; stops them after the test.

    Ask for it before ``make_handler``: its handlers are then closed before
    the servers stop. A server stopped under a handler still retrying can
    reset a connection between its TCP and TLS handshakes, and CPython's
    ``ssl`` then leaves that socket to the garbage collector.
    """
    made: list[FaultServer] = []

    def make(ca: trustme.CA, name: str, **issue: object) -> FaultServer:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(name, **issue).configure_cert(ctx)
        made.append(FaultServer(ssl_context=ctx))
        return made[-1]

    yield make
    for srv in made:
        srv.stop()


class Warnings(logging.Handler):
    """Collects what logship says on its own logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def about(self, text: str) -> list[str]:
        return [m for m in self.messages if text in m]


@pytest.fixture
def warnings_() -> Iterator[Warnings]:
    w = Warnings()
    logger = logging.getLogger("logship")
    logger.addHandler(w)
    yield w
    logger.removeHandler(w)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """``NAME`` resolves to 127.0.0.1 while ``state["up"]`` is true."""
    state = {"up": True}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == NAME:
            if not state["up"]:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return state


# -- DNS outages ----------------------------------------------------------------


def test_a_dns_outage_keeps_delivering_to_the_last_good_address(
    server, make_handler, resolver, warnings_
):
    server.default = status(201, Connection="close")  # every request needs a new connection
    h = make_handler(f"http://{NAME}:{server.port}/app")
    log = attach(h)
    for i in range(5):
        log.info("before %d", i)
    assert h.flush(5)
    resolver["up"] = False
    for i in range(5):
        log.info("during %d", i)
    assert h.flush(5), h.stats()
    assert len(server.uuids()) == 10
    said = warnings_.about("does not resolve")
    assert len(said) == 1 and "127.0.0.1" in said[0] and "last known addresses" in said[0]
    check_identity(h.stats())


def test_a_name_that_never_resolved_is_a_dns_failure(server, make_handler, resolver):
    resolver["up"] = False
    h = make_handler(f"http://{NAME}:{server.port}/app", shutdown_timeout=0.5)
    attach(h).info("lost in DNS")
    require_within(lambda: h.stats()["last_error_kind"], what="the first attempt to fail")
    assert not h.flush(0.5)
    stats = h.stats()
    assert stats["last_error_kind"] == "dns" and stats["pending"] == 1 and stats["dropped"] == 0


def test_tls_still_verifies_the_original_name_during_a_dns_outage(
    clean_env, ca, ca_file, tls_servers, make_handler, resolver
):
    srv = tls_servers(ca, NAME).start()
    srv.default = status(201, Connection="close")
    h = make_handler(f"https://{NAME}:{srv.port}/app", ca_file=ca_file)
    log = attach(h)
    log.info("resolved")
    assert h.flush(5)
    resolver["up"] = False
    log.info("from the address book")
    assert h.flush(5), h.stats()
    assert len(srv.uuids()) == 2


# -- TLS ------------------------------------------------------------------------


def test_tls_min_version_13_refuses_a_tls12_server(
    clean_env, ca, ca_file, tls_servers, make_handler
):
    srv = tls_servers(ca, "127.0.0.1")
    assert srv.ssl_context is not None
    srv.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
    srv.start()
    strict = make_handler(srv.url(), ca_file=ca_file, tls_min_version="1.3", shutdown_timeout=0.5)
    attach(strict, "strict").info("needs 1.3")
    require_within(lambda: strict.stats()["last_error_kind"], what="the first attempt to fail")
    assert not strict.flush(0.5)
    assert strict.stats()["last_error_kind"] == "tls", strict.stats()["last_error"]
    default = make_handler(srv.url(), ca_file=ca_file)
    attach(default, "default").info("1.2 is fine")
    assert default.flush(5)


def test_tls_min_version_is_checked_at_construction(make_handler):
    with pytest.raises(ValueError, match="tls_min_version"):
        make_handler("https://127.0.0.1:1/app", tls_min_version="1.1")


def test_a_certificate_for_another_host_is_refused_and_named(
    clean_env, ca, ca_file, tls_servers, make_handler
):
    srv = tls_servers(ca, "someone-else.test").start()
    h = make_handler(srv.url(), ca_file=ca_file, shutdown_timeout=0.5)
    attach(h).info("wrong host")
    require_within(lambda: h.stats()["last_error_kind"], what="the first attempt to fail")
    assert not h.flush(0.5)
    stats = h.stats()
    assert stats["last_error_kind"] == "tls-hostname", stats["last_error"]
    assert stats["dropped"] == 0 and stats["pending"] == 1


def test_an_expired_certificate_is_named(
    clean_env, ca, ca_file, tls_servers, make_handler, warnings_
):
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)
    srv = tls_servers(ca, "127.0.0.1", not_after=past).start()
    h = make_handler(srv.url(), ca_file=ca_file, shutdown_timeout=0.5)
    attach(h).info("expired")
    require_within(lambda: h.stats()["last_error_kind"], what="the first attempt to fail")
    assert not h.flush(0.5)
    assert h.stats()["last_error_kind"] == "tls-expired", h.stats()["last_error"]
    assert warnings_.about("has expired")


def test_a_certificate_near_expiry_draws_one_warning(
    clean_env, ca, ca_file, tls_servers, make_handler, warnings_
):
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=5)
    srv = tls_servers(ca, "127.0.0.1", not_after=soon).start()
    h = make_handler(srv.url(), ca_file=ca_file)
    log = attach(h)
    for i in range(3):
        log.info("soon %d", i)
        assert h.flush(5)
    said = warnings_.about("expires in")
    assert len(said) == 1 and "renew" in said[0]


# -- warnings ---------------------------------------------------------------------


def test_overflow_is_reported_with_its_count(server, make_handler, warnings_):
    server.default = STALL
    h = make_handler(
        server.url(),
        capacity=100,
        batch_max_records=10,
        overflow="drop_oldest",
        shutdown_timeout=0.5,
    )
    log = attach(h)
    for i in range(1000):
        log.info("flood %d", i)
    assert server.wait_for(lambda s: s.arrivals >= 1, 5)
    log.info("one more to wake the worker")
    require_within(lambda: warnings_.about("events dropped"), what="the overflow warning")
    said = warnings_.about("events dropped")
    counted = int(said[0].split("ring was full: ")[1].split()[0])
    assert 0 < counted <= h.stats()["dropped"], (said, h.stats())
    server.release.set()


# -- secrets ----------------------------------------------------------------------

TOKEN = "s3cr3t-t0ken-v4lue"


def test_the_token_never_leaks(server, make_handler, tmp_path, warnings_):
    server.then(status(503), status(400, b"bad"))
    server.default = status(201)
    h = make_handler(server.url(), token=TOKEN, spill=True, spill_dir=str(tmp_path))
    log = attach(h)
    log.info("an event")
    assert h.flush(5)
    assert TOKEN not in repr(h) and TOKEN not in repr(h.options)
    assert not any(TOKEN in m for m in warnings_.messages)
    assert TOKEN not in str(h.stats())
    assert any(files for _root, _dirs, files in os.walk(tmp_path)), "nothing on disk to search"
    for root, _dirs, files in os.walk(tmp_path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                assert TOKEN.encode() not in f.read(), name
    assert server.requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"


def rotate_token(server: FaultServer, make_handler: Any, path: Any, second: str) -> Any:
    """Log with the token in ``path``, write ``second`` there, log again; the handler."""
    path.write_text("first-token\n")
    path.chmod(0o600)
    h = make_handler(server.url(), token_file=str(path))
    log = attach(h)
    log.info("one")
    assert h.flush(5)
    path.write_text(second)
    os.utime(path, (1, 1))  # a different mtime, even within the same clock tick
    log.info("two")
    assert h.flush(5)
    return h


def test_a_rotated_token_file_is_read_again(server, make_handler, tmp_path):
    rotate_token(server, make_handler, tmp_path / "token", "second-token\n")
    seen = [r.headers["Authorization"] for r in server.requests]
    assert seen == ["Bearer first-token", "Bearer second-token"]


def test_a_rotated_token_no_client_can_send_keeps_the_previous_one(
    server, make_handler, tmp_path, warnings_
):
    path = tmp_path / "token"
    # A line break inside: not a header value.
    h = rotate_token(server, make_handler, path, "second\nX-Admin: yes\n")
    seen = [r.headers["Authorization"] for r in server.requests]
    assert seen == ["Bearer first-token", "Bearer first-token"]
    (said,) = warnings_.about("keeping the previous token")
    assert str(path) in said and "control character" in said and "second" not in said
    assert "second" not in str(h.stats())


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o600, False)])
def test_a_world_readable_token_file_draws_a_warning(
    server, make_handler, tmp_path, warnings_, mode, warned
):
    path = tmp_path / "token"
    path.write_text("tok\n")
    path.chmod(mode)
    h = make_handler(server.url(), token_file=str(path))
    attach(h).info("x")
    assert h.flush(5)
    assert bool(warnings_.about("readable by every user")) is warned


# -- the first hour: what a new user sees ----------------------------------------


def test_https_to_a_plain_http_port_says_the_port_does_not_speak_tls(
    server, make_handler, warnings_
):
    h = make_handler(server.url().replace("http://", "https://"), shutdown_timeout=0.5)
    attach(h).warning("hello")
    require_within(lambda: h.stats()["last_error_kind"], what="the first attempt to fail")
    assert h.stats()["last_error_kind"] == "tls-not-tls", h.stats()["last_error"]
    said = warnings_.about("cannot deliver")
    assert said and "the port does not speak TLS: use http://" in said[0], said


def test_a_rejected_batch_is_the_last_error(server, make_handler, tmp_path):
    server.then(status(400, b"error: unable to process records"))
    h = make_handler(server.url(), spill_dir=str(tmp_path))
    attach(h).warning("refused")
    assert h.flush(10)
    stats = h.stats()
    assert stats["rejected"] == 1
    assert stats["last_error_kind"] == "http-400"
    assert stats["last_error"] == "HTTP 400: error: unable to process records"
    assert stats["last_error_time"] is not None


SHIP_ONLY = """
import logging, threading, time, logship
handler = logship.ShipHandler(url={url!r}, spill=False, shutdown_timeout=0.5,
                              retry_max_backoff=0.2)
logging.getLogger().addHandler(handler)
{silence}
logging.getLogger("app").warning("nobody hears this")
deadline = time.monotonic() + 20
while handler.stats()["last_error_kind"] is None and time.monotonic() < deadline:
    threading.Event().wait(0.01)  # until the first attempt has failed (and been said)
"""


def test_warnings_reach_stderr_when_only_a_shiphandler_listens(refused_url, tmp_path):
    script = tmp_path / "app.py"
    script.write_text(SHIP_ONLY.format(url=refused_url, silence=""))
    with Proc([sys.executable, str(script)], env=child_env()) as p:
        assert p.wait(30) == 0, p.describe()
        assert "logship: cannot deliver to" in p.stderr, p.describe()
        assert "the connection was refused" in p.stderr


def test_logship_warnings_stay_quiet_when_silenced(refused_url, tmp_path):
    script = tmp_path / "app.py"
    silence = 'logging.getLogger("logship").setLevel(logging.CRITICAL)'
    script.write_text(SHIP_ONLY.format(url=refused_url, silence=silence))
    with Proc([sys.executable, str(script)], env=child_env()) as p:
        assert p.wait(30) == 0, p.describe()
        assert "logship:" not in p.stderr, p.describe()
