"""``protocol="forward"`` against a small forward server written here from the protocol's
specification (v1): the faults a healthy aggregator never shows on demand.

The server reads PackedForward messages (the entries gzipped when the option says so),
records each one, and takes an action per message from a script: acknowledge it (the
default), acknowledge it and close the connection, stay silent, close the connection
after it without an ack, or close the connection in the middle of it. With a
``shared_key`` it opens every connection with ``HELO``, checks the client's ``PING``
digest and answers ``PONG``, refusing a wrong key as Fluentd does (``PONG`` with
``false`` and a reason).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest

from conftest import attach, check_identity, require_within, wait_until
from fluentbit import free_port
from procs import dead_letters

ACK, ACK_CLOSE, SILENT, CLOSE, CUT = "ack", "ack-close", "silent", "close", "cut"


@dataclass
class Message:
    """One message as the server read it."""

    connection: int
    tag: str
    chunk: str | None
    size: int | None
    events: list[dict[str, Any]]
    action: str


class FakeForward:
    """A forward server on 127.0.0.1 (or a Unix socket) that can be told to misbehave."""

    def __init__(
        self, shared_key: bytes | None = None, unix_path: str | None = None, port: int = 0
    ) -> None:
        self.shared_key = shared_key
        self.unix_path = unix_path
        self.script: deque[str] = deque()
        self.messages: list[Message] = []
        self.cut: list[int] = []  # connections closed in the middle of a message
        self.connections = 0
        self.open = 0
        self.pongs: list[bool] = []
        self.refusal = "shared_key mismatch"  # the reason a refusing PONG gives
        self.cond = threading.Condition()
        self._stop = threading.Event()
        if unix_path:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.bind(unix_path)
        else:
            self._sock = socket.socket()
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind(("127.0.0.1", port))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        if self.unix_path:
            return f"unix://{self.unix_path}"
        return f"tcp://127.0.0.1:{self._sock.getsockname()[1]}"

    def then(self, *actions: str) -> FakeForward:
        with self.cond:
            self.script.extend(actions)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        with self.cond:
            conns = list(self._conns)
        for conn in conns:
            _shut(conn)
        for t in self._threads:
            t.join(5)

    def uuids(self) -> list[str]:
        """Every event's uuid in every message acknowledged, duplicates included."""
        with self.cond:
            acked = (ACK, ACK_CLOSE)
            return [e["uuid"] for m in self.messages if m.action in acked for e in m.events]

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        return wait_until(lambda: predicate(self), timeout)

    # -- serving ---------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            with self.cond:
                self.connections += 1
                self.open += 1
                self._conns.append(conn)
                number = self.connections
            t = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        try:
            unpacker = msgpack.Unpacker(raw=False)
            if self.shared_key is None or self._handshake(conn):
                self._read(conn, number, unpacker)
        except OSError:
            pass
        finally:
            _shut(conn)
            conn.close()
            with self.cond:
                self.open -= 1
                self.cond.notify_all()

    def _next(self, conn: socket.socket, unpacker: msgpack.Unpacker) -> Any:
        while True:
            try:
                return next(unpacker)
            except StopIteration:
                pass
            data = conn.recv(65536)
            if not data:
                raise OSError("closed")
            unpacker.feed(data)

    def _handshake(self, conn: socket.socket) -> bool:
        """HELO, then the client's PING checked; False (and the connection closed) if refused."""
        assert self.shared_key is not None
        nonce, auth = os.urandom(16), os.urandom(16)
        conn.sendall(
            msgpack.packb(
                ["HELO", {"nonce": nonce, "auth": auth, "keepalive": True}], use_bin_type=False
            )
        )
        raw = msgpack.Unpacker(raw=True)
        ping = self._next(conn, raw)
        if not (isinstance(ping, list) and len(ping) == 6 and ping[0] == b"PING"):
            return False  # a message sent before the handshake: hang up, as Fluent Bit does
        _ping, hostname, salt, digest, _user, _password = ping
        expected = hashlib.sha512(salt + hostname + nonce + self.shared_key).hexdigest()
        ok = digest == expected.encode()
        with self.cond:
            self.pongs.append(ok)
        mine = b"fake-forward"
        proof = hashlib.sha512(salt + mine + nonce + self.shared_key).hexdigest().encode()
        refused = ["PONG", False, self.refusal, "", ""]
        pong = ["PONG", True, "", mine, proof] if ok else refused
        conn.sendall(msgpack.packb(pong, use_bin_type=False))
        return ok

    def _read(self, conn: socket.socket, number: int, unpacker: msgpack.Unpacker) -> None:
        while True:
            with self.cond:
                action = self.script.popleft() if self.script else ACK
            if action == CUT:  # read the start of the message, then hang up
                conn.recv(16)
                with self.cond:
                    self.cut.append(number)
                    self.cond.notify_all()
                return
            tag, entries, option = self._next(conn, unpacker)
            if option.get("compressed") == "gzip":
                entries = gzip.decompress(entries)
            stream = msgpack.Unpacker(raw=False, strict_map_key=False)
            stream.feed(entries)
            events = [record for _time, record in stream]
            chunk = option.get("chunk")
            with self.cond:
                self.messages.append(
                    Message(number, tag, chunk, option.get("size"), events, action)
                )
                self.cond.notify_all()
            if action in (ACK, ACK_CLOSE) and chunk is not None:
                conn.sendall(msgpack.packb({"ack": chunk}))
            if action in (ACK_CLOSE, CLOSE):
                return
            # SILENT: keep the connection open, never answer this chunk


def _shut(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@pytest.fixture
def fake() -> Any:
    made: list[FakeForward] = []

    def make(**kwargs: Any) -> FakeForward:
        made.append(FakeForward(**kwargs))
        return made[-1]

    yield make
    for f in made:
        f.stop()


def forward_handler(make_handler: Any, url: str, **options: Any) -> Any:
    return make_handler(url, protocol="forward", **options)


def emit(log: logging.Logger, n: int, text: str = "event") -> None:
    for i in range(n):
        log.info("%s %d", text, i, extra={"i": i})


# -- what a healthy server sees --------------------------------------------------------------


def test_each_batch_is_one_message_with_its_key_as_chunk_and_one_connection(fake, make_handler):
    srv = fake()
    h = forward_handler(make_handler, srv.url, batch_max_records=10, tag="app.web")
    log = attach(h)
    emit(log, 50)
    assert h.flush(10), h.stats()
    msgs = srv.messages
    assert sorted(srv.uuids()) == sorted({e["uuid"] for m in msgs for e in m.events})
    assert len(srv.uuids()) == 50 and len(msgs) >= 5
    assert {m.tag for m in msgs} == {"app.web"}
    assert all(m.size == len(m.events) for m in msgs)
    assert len({m.chunk for m in msgs}) == len(msgs)  # a chunk id per message
    assert srv.connections == 1  # kept open and reused
    stats = h.stats()
    assert stats["shipped"] == 50 and stats["retries"] == 0
    check_identity(stats)


def test_a_unix_socket_carries_it_too(fake, make_handler, tmp_path):
    srv = fake(unix_path=str(tmp_path / "fluent.sock"))
    h = forward_handler(make_handler, srv.url)
    emit(attach(h), 20)
    assert h.flush(10), h.stats()
    assert len(set(srv.uuids())) == 20
    check_identity(h.stats())


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_failure(
    fake, make_handler
):
    srv = fake().then(ACK_CLOSE)  # a restart, or an idle time-out, between two batches
    h = forward_handler(make_handler, srv.url)
    log = attach(h)
    emit(log, 5)
    assert h.flush(10)
    require_within(lambda: srv.open == 0, what="the server to close the connection")
    emit(log, 5, "second")
    assert h.flush(10), h.stats()
    assert len(set(srv.uuids())) == 10 and srv.connections == 2
    stats = h.stats()
    assert stats["retries"] == 0 and stats["last_error"] is None
    check_identity(stats)


def test_several_forward_endpoints_fail_over_under_the_same_chunk(fake, make_handler):
    silent, good = fake().then(SILENT, SILENT, SILENT), fake()
    h = make_handler([silent.url, good.url], protocol="forward", timeout=0.5)
    emit(attach(h), 10)
    assert h.flush(15), h.stats()
    sent = {e["uuid"] for m in silent.messages for e in m.events}
    assert len(sent) == 10 and sorted(good.uuids()) == sorted(sent)  # the batch moved whole
    assert good.messages[0].chunk == silent.messages[0].chunk  # under its key
    stats = h.stats()
    assert stats["shipped"] == 10 and stats["spilled"] == 0
    assert [e["delivered"] for e in stats["endpoints"]] == [0, 10]
    check_identity(stats)


# -- no ack ----------------------------------------------------------------------------------


def test_a_missing_ack_reconnects_and_resends_the_same_chunk_counted_once(fake, make_handler):
    srv = fake().then(SILENT)
    h = forward_handler(make_handler, srv.url, timeout=0.5)
    log = attach(h)
    emit(log, 10)
    assert h.flush(10), h.stats()
    first, again = srv.messages[:2]
    assert first.chunk == again.chunk  # the same chunk, on a new connection
    assert first.connection != again.connection
    assert [e["uuid"] for e in first.events] == [e["uuid"] for e in again.events]
    stats = h.stats()
    assert stats["shipped"] == 10 and stats["retries"] >= 1  # counted once
    assert stats["last_error_kind"] == "no-ack"
    check_identity(stats)


def test_a_connection_closed_mid_message_is_retried_with_the_same_chunk(fake, make_handler):
    srv = fake().then(CUT)
    h = forward_handler(make_handler, srv.url)
    log = attach(h)
    emit(log, 30)
    assert h.flush(10), h.stats()
    assert srv.cut == [1]
    assert len(srv.messages) == 1 and srv.messages[0].connection == 2
    assert len(set(srv.uuids())) == 30
    stats = h.stats()
    assert stats["shipped"] == 30 and stats["retries"] >= 1 and stats["dropped"] == 0
    check_identity(stats)


def test_close_does_not_wait_out_a_missing_ack(fake, make_handler):
    srv = fake().then(*[SILENT] * 20)
    h = forward_handler(make_handler, srv.url, timeout=30.0, shutdown_timeout=1.0)
    emit(attach(h), 5)
    require_within(lambda: srv.messages, what="the first message")
    started = time.monotonic()
    h.close()
    assert time.monotonic() - started < 3.0
    stats = h.stats()
    assert stats["shipped"] == 0 and stats["dropped"] == 5
    check_identity(stats)


def test_a_batch_spilled_while_unacknowledged_is_replayed_under_the_same_chunk(
    fake, make_handler, tmp_path
):
    srv = fake().then(SILENT)
    spill = {"spill": True, "spill_dir": str(tmp_path / "spill")}
    first = forward_handler(make_handler, srv.url, timeout=30.0, shutdown_timeout=1.0, **spill)
    emit(attach(first), 10)
    require_within(lambda: srv.messages, what="the first message")
    first.close()  # no ack within the budget: the batch goes to disk with its key
    assert first.stats()["spilled"] == 10
    # A handler built on the folder replays it at once.
    second = forward_handler(make_handler, srv.url, **spill)
    require_within(lambda: second.stats()["replayed"] == 10, what="the replay")
    sent, replayed = srv.messages
    assert replayed.chunk == sent.chunk and replayed.action == ACK
    assert [e["uuid"] for e in replayed.events] == [e["uuid"] for e in sent.events]
    check_identity(second.stats())


def test_logship_spill_replay_sends_a_forward_spill_to_the_endpoint_it_records(
    fake, make_handler, tmp_path
):
    spill_dir, port = str(tmp_path / "spill"), free_port()  # nothing listens there yet
    url = f"tcp://127.0.0.1:{port}"
    down = forward_handler(make_handler, url, spill=True, spill_dir=spill_dir)
    emit(attach(down), 10)
    down.close()
    assert down.stats()["spilled"] == 10
    srv = fake(port=port)
    out = subprocess.run(
        [sys.executable, "-m", "logship", "spill", "replay", "--dir", spill_dir],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "everything spilled was delivered" in out.stdout
    assert len(set(srv.uuids())) == 10


# -- the handshake ----------------------------------------------------------------------------


def test_the_shared_key_handshake_with_the_token(fake, make_handler):
    srv = fake(shared_key=b"s3cret")
    h = forward_handler(make_handler, srv.url, token="s3cret")
    emit(attach(h), 20)
    assert h.flush(10), h.stats()
    assert srv.pongs == [True]
    assert len(set(srv.uuids())) == 20
    check_identity(h.stats())


def test_a_refused_shared_key_holds_the_events_until_the_key_is_fixed(fake, make_handler, tmp_path):
    srv = fake(shared_key=b"s3cret")
    key = tmp_path / "key"
    key.write_text("wrong")
    key.chmod(0o600)
    h = forward_handler(make_handler, srv.url, token_file=str(key))
    emit(attach(h), 10)
    require_within(lambda: h.stats()["last_error_kind"] == "shared-key", what="the refusal")
    stats = h.stats()
    assert "shared_key mismatch" in stats["last_error"]
    assert stats["pending"] == 10 and stats["dropped"] == 0 and not srv.messages
    check_identity(stats)
    key.write_text("s3cret")  # rotated: the next try at the back-off ceiling uses it
    os.utime(key, (time.time() + 5, time.time() + 5))
    assert h.flush(10), h.stats()
    assert len(set(srv.uuids())) == 10 and srv.pongs[-1] is True
    check_identity(h.stats())


def test_without_a_token_a_server_that_asks_gets_the_empty_key(fake, make_handler):
    srv = fake(shared_key=b"")  # Fluent Bit's empty_shared_key
    h = forward_handler(make_handler, srv.url)
    emit(attach(h), 5)
    assert h.flush(10), h.stats()
    assert srv.pongs[-1] is True and len(set(srv.uuids())) == 5


# -- limits ------------------------------------------------------------------------------------


def test_one_event_too_large_for_any_server_is_dead_lettered_and_the_rest_delivered(
    fake, make_handler, tmp_path
):
    srv = fake()
    h = forward_handler(make_handler, srv.url, spill=True, spill_dir=str(tmp_path / "spill"))
    log = attach(h)
    log.info("small one")
    log.info("x" * 7_000_000)  # gzips to a few KiB: too large only once inflated
    log.info("small two")
    assert h.flush(20), h.stats()
    assert sorted(e["message"] for m in srv.messages for e in m.events) == [
        "small one",
        "small two",
    ]
    stats = h.stats()
    assert stats["rejected"] == 1 and stats["shipped"] == 2
    assert stats["last_error_kind"] == "too-large"
    check_identity(stats)
    rejected = dead_letters(str(tmp_path / "spill"))
    assert [len(r["event"]["message"]) for r in rejected] == [7_000_000]


def test_a_ca_file_that_does_not_load_is_said_by_every_send_never_raised(make_handler, tmp_path):
    # (A client pair that does not load fails at construction, naming it.)
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    h = forward_handler(make_handler, "tls://127.0.0.1:9", ca_file=str(bad), shutdown_timeout=0.5)
    emit(attach(h), 3)  # the worker starts on the first call: nothing may reach it
    require_within(lambda: h.stats()["last_error_kind"] == "tls", what="the TLS failure")
    stats = h.stats()
    assert "cannot load the TLS files" in stats["last_error"] and stats["pending"] == 3
    check_identity(stats)


# -- fork ---------------------------------------------------------------------------------------


def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents_alone(fake, make_handler):
    srv = fake()
    h = forward_handler(make_handler, srv.url)
    log = attach(h)
    emit(log, 5, "parent before")
    assert h.flush(10)
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, on purpose
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = False
        try:
            emit(log, 5, "child")
            ok = h.flush(10)
            h.close()
        finally:
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"1"
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    emit(log, 5, "parent after")
    assert h.flush(10), h.stats()
    assert len(set(srv.uuids())) == 15
    assert srv.connections == 2  # the parent's connection outlived the child
    stats = h.stats()
    assert stats["retries"] == 0
    check_identity(stats)
