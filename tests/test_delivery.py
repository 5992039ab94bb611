"""SPEC section 4 (delivery) and the delivery options of section 2, against a real
collector on loopback that can be told to misbehave (tests/faultserver.py).

Every test waits on conditions with deadlines, counts unique uuids received
against events emitted, and checks the stats identity where it matters.
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import itertools
import logging
import os
import time
from typing import Any

import pytest

from logship.pure import uuid7
from logship.pure.frames import read_frames
from logship.pure.protocols.http import StatusReader

from conftest import attach, check_identity, wait_until
from faultserver import CLOSE, STALL, TRICKLE, FaultServer, Request, delayed, status


def header(request: Request, name: str) -> str | None:
    """A request header, looked up without regard to case."""
    for k, v in request.headers.items():
        if k.lower() == name.lower():
            return v
    return None


def uuids_of(request: Request) -> set[str]:
    return {e["uuid"] for e in request.events}


def snapshot(server: FaultServer) -> list[Request]:
    with server.cond:
        return list(server.requests)


class Collect(logging.Handler):
    """Keeps the records of the ``logship`` logger (logship's own diagnostics)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.WARNING]


@pytest.fixture
def diagnostics() -> Collect:
    """What logship says on its own logger during the test."""
    collect = Collect()
    lg = logging.getLogger("logship")
    lg.addHandler(collect)
    lg.setLevel(logging.DEBUG)
    return collect  # conftest's _restore_logging takes the handler off again


def emit(log: logging.Logger, n: int, text: str = "event") -> None:
    for i in range(n):
        log.info("%s %d", text, i, extra={"i": i})


# -- 2xx --------------------------------------------------------------------


@pytest.mark.parametrize("code", [200, 201, 202, 204])
def test_every_2xx_is_delivered(server, make_handler, code):
    server.default = status(code)
    h = make_handler(server.url())
    log = attach(h)
    emit(log, 50)
    assert h.flush(5)
    assert len(server.uuids()) == 50
    assert all(r.answered == code for r in snapshot(server))
    stats = h.stats()
    assert stats["shipped"] == 50
    assert stats["pending"] == 0 and stats["dropped"] == 0 and stats["rejected"] == 0
    assert stats["retries"] == 0
    check_identity(stats)


def test_each_batch_has_its_own_idempotency_key(server, make_handler):
    h = make_handler(server.url(), batch_max_records=10)
    log = attach(h)
    emit(log, 50)
    assert h.flush(5)
    reqs = snapshot(server)
    keys = [header(r, "Idempotency-Key") for r in reqs]
    assert all(keys), keys
    assert len(set(keys)) == len(reqs) >= 5  # no retries here: one request per batch
    assert len(server.uuids()) == 50


# -- transient failures: retried with the same key ---------------------------


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_transient_status_is_retried_with_the_same_key(server, make_handler, code):
    server.then(status(code))
    h = make_handler(server.url())
    log = attach(h)
    emit(log, 5)
    assert h.flush(5)
    reqs = snapshot(server)
    assert len(reqs) >= 2
    first, retry = reqs[0], reqs[1]
    assert first.answered == code and retry.answered == 201
    key = header(first, "Idempotency-Key")
    assert key and header(retry, "Idempotency-Key") == key
    assert uuids_of(first) == uuids_of(retry)
    assert len(server.uuids()) == 5
    stats = h.stats()
    assert stats["retries"] >= 1
    assert stats["shipped"] == 5 and stats["dropped"] == 0 and stats["rejected"] == 0
    check_identity(stats)


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_seconds_is_honoured(server, make_handler, code):
    server.then(status(code, Retry_After="1"))
    h = make_handler(server.url())  # back-off ceiling 0.2 s: only Retry-After waits 1 s
    log = attach(h)
    emit(log, 3)
    assert server.wait_for_uuids(3, timeout=5)
    first, retry = snapshot(server)[:2]
    assert first.answered == code and retry.answered == 201
    assert header(first, "Idempotency-Key") == header(retry, "Idempotency-Key")
    gap = retry.arrived - first.arrived
    assert 0.95 <= gap < 3.0, gap
    assert h.stats()["retries"] >= 1


def test_429_retry_after_http_date_is_honoured(server, make_handler):
    # An HTTP-date has whole seconds: this asks for a wait of between 1.5 and 2.5 s.
    when = email.utils.formatdate(time.time() + 2.5, usegmt=True)
    server.then(status(429, Retry_After=when))
    h = make_handler(server.url())
    log = attach(h)
    emit(log, 3)
    assert server.wait_for_uuids(3, timeout=6)
    first, retry = snapshot(server)[:2]
    assert first.answered == 429 and retry.answered == 201
    assert header(first, "Idempotency-Key") == header(retry, "Idempotency-Key")
    gap = retry.arrived - first.arrived
    assert 1.2 <= gap < 4.0, gap


#: A date past every year datetime holds: reading it raises OverflowError.
ABSURD_DATE = "Mon, 1 Jan 99999999999999999999 00:00:00 GMT"


@pytest.mark.parametrize("value", [ABSURD_DATE, "1e999", "NaN", "-inf", "-30"])
def test_an_unreadable_retry_after_is_retried_with_the_normal_back_off(server, make_handler, value):
    server.then(status(503, Retry_After=value))
    h = make_handler(server.url())  # back-off ceiling 0.2 s
    emit(attach(h), 5)
    assert h.flush(5), h.stats()
    first, retry = snapshot(server)[:2]
    assert (first.answered, retry.answered) == (503, 201)
    assert uuids_of(first) == uuids_of(retry) and len(server.uuids()) == 5
    stats = h.stats()
    assert stats["shipped"] == 5 and stats["dropped"] == 0 and stats["retries"] == 1
    check_identity(stats)


@pytest.mark.parametrize("protocol", ["loki", "splunk", "otlp"])
def test_an_unreadable_retry_after_is_retried_by_every_protocol(server, make_handler, protocol):
    server.then(status(503, Retry_After=ABSURD_DATE))
    h = make_handler(server.url(), protocol=protocol)
    emit(attach(h), 5)
    assert h.flush(5), h.stats()
    assert [r.answered for r in snapshot(server)][:2] == [503, 201]
    stats = h.stats()
    assert stats["shipped"] == 5 and stats["dropped"] == 0 and stats["retries"] == 1
    check_identity(stats)


def test_connection_closed_without_answer_is_retried(server, make_handler):
    server.then(CLOSE, CLOSE)
    h = make_handler(server.url())
    log = attach(h)
    emit(log, 20)
    assert h.flush(10)
    reqs = snapshot(server)
    assert [r.answered for r in reqs[:2]] == [None, None]
    assert len({header(r, "Idempotency-Key") for r in reqs[:3]}) == 1
    assert len(server.uuids()) == 20
    stats = h.stats()
    assert stats["retries"] >= 2
    assert stats["shipped"] == 20 and stats["dropped"] == 0
    check_identity(stats)


def test_back_off_is_bounded_by_retry_max_backoff_and_never_a_tight_loop(server, make_handler):
    server.then(*[status(503)] * 5)
    h = make_handler(server.url(), retry_max_backoff=0.3)
    log = attach(h)
    emit(log, 3)
    assert server.wait_for_uuids(3, timeout=5)
    reqs = snapshot(server)
    assert [r.answered for r in reqs] == [503] * 5 + [201]
    assert len({header(r, "Idempotency-Key") for r in reqs}) == 1
    gaps = [b.arrived - a.arrived for a, b in itertools.pairwise(reqs)]
    assert all(0.05 <= g <= 0.3 + 0.15 for g in gaps), gaps
    assert h.stats()["retries"] == 5


def test_request_timeout_is_retried(server, make_handler):
    server.then(STALL)  # the first request never gets an answer
    h = make_handler(server.url(), timeout=0.3)
    log = attach(h)
    emit(log, 3)
    assert h.flush(5)
    assert len(server.uuids()) == 3
    assert server.arrivals >= 2
    stats = h.stats()
    assert stats["retries"] >= 1
    assert stats["shipped"] == 3 and stats["dropped"] == 0
    check_identity(stats)


def test_an_answer_that_trickles_in_is_cut_at_the_timeout_and_retried(
    server, make_handler, diagnostics
):
    # Each byte comes well within the timeout: only a deadline for the whole answer ends it.
    server.then(TRICKLE)
    h = make_handler(server.url(), timeout=0.5)
    log = attach(h)
    emit(log, 3)
    assert h.flush(20)
    assert len(server.uuids()) == 3 and server.arrivals == 2
    stats = h.stats()
    assert stats["retries"] == 1 and stats["shipped"] == 3
    assert any("timed out" in w for w in diagnostics.warnings())
    check_identity(stats)


def test_dns_failure_is_retried_and_nothing_is_lost(make_handler, diagnostics):
    h = make_handler("http://logship-test.invalid:9880/app", shutdown_timeout=0.5)
    log = attach(h)
    emit(log, 5)
    assert wait_until(lambda: h.stats()["retries"] >= 3)
    stats = h.stats()
    assert stats["shipped"] == 0 and stats["dropped"] == 0 and stats["rejected"] == 0
    assert stats["pending"] == 5
    assert stats["last_error"]
    check_identity(stats)
    warnings = diagnostics.warnings()
    assert len(warnings) == 1, warnings  # once per interval, not once per retry


def test_endpoint_down_then_up_loses_nothing(server, make_handler):
    server.down()  # before the first connection: nothing is kept alive
    h = make_handler(server.url())
    log = attach(h)
    emit(log, 30)
    assert wait_until(lambda: h.stats()["retries"] >= 3)
    stats = h.stats()
    assert stats["shipped"] == 0 and stats["dropped"] == 0
    assert stats["pending"] == 30
    assert stats["last_error"]
    check_identity(stats)
    emit(log, 10, "while down")
    server.up()
    assert h.flush(10)
    assert len(server.uuids()) == 40
    stats = h.stats()
    assert stats["shipped"] == 40 and stats["pending"] == 0 and stats["dropped"] == 0
    check_identity(stats)


# -- 413 -----------------------------------------------------------------------


def test_413_splits_the_batch_until_it_fits(server, make_handler):
    server.max_body = 3000
    h = make_handler(server.url(), compress=False)
    log = attach(h)
    for i in range(60):
        log.info("payload %d %s", i, "x" * 100)
    assert h.flush(10)
    reqs = snapshot(server)
    assert any(r.answered == 413 for r in reqs)
    delivered = [r for r in reqs if r.answered == 201]
    assert all(len(r.wire) <= 3000 for r in delivered)
    assert len(server.uuids()) == 60
    assert len(server.events()) == 60  # each event accepted exactly once
    stats = h.stats()
    assert stats["shipped"] == 60 and stats["rejected"] == 0 and stats["dropped"] == 0
    check_identity(stats)


def test_an_internal_error_after_a_split_drops_and_counts_both_halves(
    server, make_handler, monkeypatch, diagnostics
):
    """The batch taken is resolved by its split: what is left to resolve is its halves."""
    read = StatusReader.read

    def failing(self: StatusReader, answer: Any, count: int) -> Any:
        if answer.status == 201:
            raise RuntimeError("a fault while reading the answer")
        return read(self, answer, count)

    monkeypatch.setattr(StatusReader, "read", failing)
    server.then(status(413))
    h = make_handler(server.url(), batch_max_records=10, flush_interval=2.0)
    emit(attach(h), 10)  # one batch: full at 10
    assert h.flush(5), h.stats()  # nothing left pending until close
    assert [r.answered for r in snapshot(server)] == [413, 201]
    stats = h.stats()
    assert stats["dropped"] == 10 and stats["pending"] == 0 and stats["shipped"] == 0
    check_identity(stats)
    assert any(
        "internal error sending a batch (10 events dropped, counted)" in w
        for w in diagnostics.warnings()
    ), diagnostics.warnings()


def read_dead_letters(folder: Any) -> list[dict[str, Any]]:
    path = os.path.join(folder, "dead-letter.lship")
    with open(path, "rb") as f:
        result = read_frames(f.read())
    assert result.version_ok and result.corrupt == 0
    assert result.frames[0].get("kind") == "dead-letter"  # the file's header
    assert os.stat(path).st_mode & 0o777 == 0o600
    return result.frames[1:]


def test_413_single_event_too_large_is_rejected_and_dead_lettered(server, make_handler, tmp_path):
    server.max_body = 3000
    h = make_handler(server.url(), compress=False, spill_dir=str(tmp_path))
    log = attach(h)
    log.info("small before")
    log.info("big %s", "y" * 10_000)
    log.info("small after")
    h.flush(10)
    assert wait_until(lambda: h.stats()["rejected"] == 1 and h.stats()["shipped"] == 2)
    received = server.events()
    assert sorted(e["message"] for e in received) == ["small after", "small before"]
    frames = read_dead_letters(tmp_path)
    dead = [e for f in frames for e in f["events"]]
    assert len(dead) == 1 and dead[0]["message"].startswith("big yyyy")
    assert dead[0]["uuid"] not in server.uuids()
    assert frames[0]["status"] == 413
    stats = h.stats()
    assert stats["pending"] == 0 and stats["dropped"] == 0
    check_identity(stats)


# -- other 4xx: rejected -----------------------------------------------------


@pytest.mark.parametrize("code", [400, 422])
def test_other_4xx_is_rejected_dead_lettered_and_not_retried(server, make_handler, tmp_path, code):
    server.then(status(code, b"error: unable to process records"))
    h = make_handler(server.url(), spill_dir=str(tmp_path), batch_max_records=5, flush_interval=2.0)
    log = attach(h)
    emit(log, 5, "first")  # exactly one batch: full at 5 records
    assert wait_until(lambda: h.stats()["rejected"] == 5)
    emit(log, 5, "second")
    assert h.flush(5)
    reqs = snapshot(server)
    assert [r.answered for r in reqs] == [code, 201]  # the rejected batch is never resent
    rejected_uuids = uuids_of(reqs[0])
    assert len(rejected_uuids) == 5 and not rejected_uuids & server.uuids()
    assert len(server.uuids()) == 5
    frames = read_dead_letters(tmp_path)
    assert len(frames) == 1
    assert frames[0]["status"] == code
    assert frames[0]["key"] == header(reqs[0], "Idempotency-Key")
    assert {e["uuid"] for e in frames[0]["events"]} == rejected_uuids
    assert "unable to process records" in frames[0]["reason"]
    stats = h.stats()
    assert stats["rejected"] == 5 and stats["shipped"] == 5
    assert stats["retries"] == 0 and stats["dropped"] == 0 and stats["pending"] == 0
    check_identity(stats)


# -- 401/403/404 and redirects: held -------------------------------------------


@pytest.mark.parametrize("code", [401, 403, 404])
def test_configuration_errors_are_held_with_one_warning(
    server, make_handler, tmp_path, diagnostics, code
):
    server.default = status(code)
    h = make_handler(server.url(), spill_dir=str(tmp_path))  # back-off ceiling 0.2 s
    log = attach(h)
    emit(log, 5)
    assert server.wait_for_requests(5, timeout=5)
    reqs = snapshot(server)
    assert all(r.answered == code for r in reqs)
    assert len({header(r, "Idempotency-Key") for r in reqs}) == 1  # the same batch, held
    gaps = [b.arrived - a.arrived for a, b in itertools.pairwise(reqs)]
    assert min(gaps) >= 0.15, gaps  # retried at the ceiling, not in a tight loop
    stats = h.stats()
    assert stats["shipped"] == 0 and stats["dropped"] == 0 and stats["rejected"] == 0
    assert stats["pending"] == 5
    check_identity(stats)
    assert not (tmp_path / "dead-letter.lship").exists()
    warnings = diagnostics.warnings()
    assert len(warnings) == 1, warnings
    assert str(code) in warnings[0]

    server.default = status(201)
    assert h.flush(5)
    assert len(server.uuids()) == 5
    stats = h.stats()
    assert stats["shipped"] == 5 and stats["pending"] == 0
    check_identity(stats)
    assert len(diagnostics.warnings()) == 1


@pytest.mark.parametrize("code", [302, 308])
def test_redirect_is_held_not_followed(server, make_handler, diagnostics, code):
    server.default = status(code, Location=server.url("/elsewhere"))
    h = make_handler(server.url("/app"))
    log = attach(h)
    emit(log, 3)
    assert server.wait_for_requests(3, timeout=5)
    reqs = snapshot(server)
    assert all(r.path == "/app" and r.answered == code for r in reqs)
    assert len({header(r, "Idempotency-Key") for r in reqs}) == 1
    stats = h.stats()
    assert stats["shipped"] == 0 and stats["dropped"] == 0 and stats["rejected"] == 0
    assert stats["pending"] == 3
    assert stats["last_error_kind"] == f"http-{code}", stats["last_error"]  # held, not a failure
    check_identity(stats)
    warnings = diagnostics.warnings()
    said = f"the endpoint redirects to {server.url('/elsewhere')}: set url to the final address"
    assert len(warnings) == 1 and said in warnings[0], warnings

    server.default = status(201)
    assert h.flush(5)
    assert len(server.uuids()) == 3
    assert all(r.path == "/app" for r in snapshot(server))


# -- a stalled server never slows the application --------------------------------


def test_stalled_server_does_not_slow_the_application(server, make_handler):
    n = 20_000
    server.default = STALL
    h = make_handler(server.url(), capacity=1000)
    log = attach(h, "app.shipped")
    log.info("first")
    assert server.wait_for(lambda s: s.arrivals >= 1, timeout=5)  # the sender is stuck now

    null = attach(logging.NullHandler(), "app.null")

    def loop(lg: logging.Logger) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            lg.info("tight loop %d", i)
        return time.perf_counter() - t0

    baseline = min(loop(null), loop(null))
    shipped_loop = loop(log)
    assert shipped_loop < 20 * baseline, (shipped_loop, baseline)

    stats = h.stats()
    assert stats["emitted"] == n + 1
    assert stats["shipped"] == 0
    assert stats["dropped"] > 0  # the ring (capacity 1000) overflowed
    assert stats["queued"] <= 1000 + 4 * 1000  # the ring, the open batch and 3 batches
    check_identity(stats)

    server.default = status(201)
    server.release.set()
    assert h.flush(10)
    stats = h.stats()
    assert stats["pending"] == 0
    assert stats["shipped"] + stats["dropped"] == n + 1
    assert len(server.uuids()) == stats["shipped"]
    check_identity(stats)


# -- batching --------------------------------------------------------------------


def test_batch_max_records(server, make_handler):
    h = make_handler(server.url(), batch_max_records=10)
    log = attach(h)
    emit(log, 95)
    assert h.flush(5)
    reqs = snapshot(server)
    assert all(1 <= len(r.events) <= 10 for r in reqs), [len(r.events) for r in reqs]
    assert len(reqs) >= 10
    assert len(server.uuids()) == 95


def test_batch_max_bytes_counts_uncompressed_bytes_and_big_events_go_alone(server, make_handler):
    limit = 2048
    h = make_handler(server.url(), batch_max_bytes=limit, compress=True)
    log = attach(h)
    for i in range(40):
        log.info("small %d %s", i, "s" * 100)
    log.info("huge %s", "h" * 5000)
    for i in range(10):
        log.info("after %d %s", i, "a" * 100)
    assert h.flush(5)
    reqs = snapshot(server)
    assert len(server.uuids()) == 51
    for r in reqs:
        raw = gzip.decompress(r.wire)
        if any(e["message"].startswith("huge") for e in r.events):
            assert len(r.events) == 1
        else:
            assert len(raw) <= limit, (len(raw), len(r.events))
    assert len(reqs) >= 4


def test_flush_interval_sends_a_partial_batch_without_flush(server, make_handler):
    h = make_handler(server.url(), flush_interval=0.2)
    log = attach(h)
    emit(log, 3)  # far below batch_max_records and batch_max_bytes
    assert server.wait_for_uuids(3, timeout=3)
    assert len(snapshot(server)) == 1


def test_a_batch_ages_from_its_first_event_not_from_when_the_pump_took_it(server, make_handler):
    # After a flush the pump sleeps a whole flush_interval with nothing to do;
    # an event logged then must still go out one flush_interval after it was
    # logged, not when the pump wakes plus another interval.
    interval = 3.0
    h = make_handler(server.url(), flush_interval=interval)
    log = attach(h)
    log.info("wakes the worker")
    assert h.flush(5)
    t0 = time.monotonic()
    log.info("logged while the pump sleeps")
    assert server.wait_for_uuids(2, timeout=interval + 5)
    elapsed = time.monotonic() - t0
    # Not early; and well before the old rule's two intervals (6 s).
    assert interval - 0.1 <= elapsed <= interval + 2.5, elapsed


def test_the_tail_of_a_fast_stream_does_not_wait_out_flush_interval(server, make_handler):
    # A full batch marks the stream as fast; once it stops, its last 50 events
    # go out one or two quiet periods (a tenth of flush_interval: 0.5 s) later,
    # not after 5 s.
    h = make_handler(server.url(), batch_max_records=100, flush_interval=5.0)
    log = attach(h)
    emit(log, 250)
    t0 = time.monotonic()
    assert server.wait_for_uuids(250, timeout=3.0)
    assert time.monotonic() - t0 >= 0.4  # not before the stream fell quiet
    assert [len(r.events) for r in snapshot(server)] == [100, 100, 50]


def test_pauses_shorter_than_the_quiet_period_do_not_cut_batches(server, make_handler):
    h = make_handler(server.url(), batch_max_records=100, flush_interval=5.0)
    log = attach(h)
    emit(log, 100)  # a full batch: the stream is fast
    for _ in range(3):
        emit(log, 30)
        time.sleep(0.02)  # the application's pace; the quiet period is 0.5 s
    assert server.wait_for_uuids(190, timeout=4.0)
    assert [len(r.events) for r in snapshot(server)] == [100, 90]


def test_an_event_dated_in_the_future_still_goes_out(server, make_handler, monkeypatch):
    # The wall clock stepped back after the record was made: its age reads
    # negative. It goes out a flush_interval after the pump first saw it,
    # not when the clock catches up.
    # UUIDv7s stay ordered after such a record, an hour ahead, for the rest of
    # the process: not for the tests after this one.
    monkeypatch.setattr(uuid7, "_last_ms", uuid7._last_ms)
    h = make_handler(server.url(), flush_interval=0.5)
    log = attach(h)
    log.info("wakes the worker")
    assert h.flush(5)
    record = logging.makeLogRecord(
        {"name": log.name, "levelno": logging.INFO, "levelname": "INFO", "msg": "dated ahead"}
    )
    record.created = time.time() + 3600
    log.handle(record)
    assert server.wait_for_uuids(2, timeout=5)


def test_a_slow_stream_is_batched_by_flush_interval(server, make_handler):
    # Pauses longer than the quiet period (0.4 s), but a stream that never
    # fills a batch: its events wait for their batch to age, together.
    h = make_handler(server.url(), flush_interval=4.0)
    log = attach(h)
    for i in range(3):
        log.info("slow %d", i)
        time.sleep(0.5)  # the application's pace
    assert server.wait_for_uuids(3, timeout=8.0)
    assert [len(r.events) for r in snapshot(server)] == [3]


# -- flush -------------------------------------------------------------------------


def test_flush_returns_true_once_delivered(server, make_handler):
    h = make_handler(server.url(), flush_interval=5.0)
    log = attach(h)
    emit(log, 100)
    assert h.flush(5)
    assert len(server.uuids()) == 100  # delivered already, no waiting needed
    stats = h.stats()
    assert stats["shipped"] == 100 and stats["pending"] == 0
    check_identity(stats)


def test_flush_returns_false_at_its_deadline_when_the_server_stalls(server, make_handler):
    server.default = STALL
    h = make_handler(server.url(), shutdown_timeout=0.6)
    log = attach(h)
    emit(log, 5)
    for timeout in (0.0, 0.5, None):  # None: shutdown_timeout, as logging.shutdown calls it
        t0 = time.monotonic()
        ok = h.flush() if timeout is None else h.flush(timeout)
        elapsed = time.monotonic() - t0
        assert ok is False
        if timeout is None:
            # Within shutdown_timeout; it may keep part of it for close() to spill.
            assert 0.3 <= elapsed <= 0.6 + 0.5, elapsed
        else:
            assert timeout - 0.01 <= elapsed <= timeout + 0.5, (timeout, elapsed)
    stats = h.stats()
    assert stats["pending"] == 5 and stats["dropped"] == 0
    check_identity(stats)

    server.default = status(201)
    server.release.set()
    assert h.flush(5)
    assert len(server.uuids()) == 5


# -- authentication and headers ------------------------------------------------------


def test_token_and_headers_are_sent(server, make_handler):
    h = make_handler(server.url(), token="s3cret-token", headers={"X-Tenant": "acme"})
    assert "s3cret-token" not in repr(h)
    log = attach(h)
    emit(log, 3)
    assert h.flush(5)
    reqs = snapshot(server)
    assert reqs
    for r in reqs:
        assert header(r, "Authorization") == "Bearer s3cret-token"
        assert header(r, "X-Tenant") == "acme"
    assert len(server.uuids()) == 3


def test_token_file_is_sent_as_bearer(server, make_handler, tmp_path):
    token_file = tmp_path / "ingest-token"
    token_file.write_text("from-a-file\n")
    h = make_handler(server.url(), token_file=str(token_file))
    assert "from-a-file" not in repr(h)
    log = attach(h)
    emit(log, 3)
    assert h.flush(5)
    reqs = snapshot(server)
    assert reqs and all(header(r, "Authorization") == "Bearer from-a-file" for r in reqs)


def _authorizations(server, make_handler, url):
    """The handler for ``url``, and the Authorization headers its requests carried."""
    h = make_handler(url)
    emit(attach(h), 2)
    assert h.flush(5)
    reqs = snapshot(server)
    assert reqs
    return h, {header(r, "Authorization") for r in reqs}


def _no_token_from_the_environment(monkeypatch):
    for name in ("LOGSHIP_TOKEN", "LOGSHIP_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_no_authorization_header_without_a_token(server, make_handler, monkeypatch):
    _no_token_from_the_environment(monkeypatch)
    h = make_handler(server.url())
    log = attach(h)
    emit(log, 1)
    assert h.flush(5)
    assert all(header(r, "Authorization") is None for r in snapshot(server))


def test_token_wins_over_a_netrc_entry(server, make_handler, tmp_path, monkeypatch):
    """requests adds Basic auth from ~/.netrc (or $NETRC) to requests that carry none."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password elsewhere\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    h = make_handler(server.url(), token="s3cret-token")
    log = attach(h)
    emit(log, 1)
    assert h.flush(5)
    reqs = snapshot(server)
    assert reqs and all(header(r, "Authorization") == "Bearer s3cret-token" for r in reqs)


def test_a_netrc_login_is_used_without_a_token(server, make_handler, tmp_path, monkeypatch):
    """As requests does: the environment (here $NETRC) is read once, when the worker starts."""
    _no_token_from_the_environment(monkeypatch)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password elsewhere\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    _, sent = _authorizations(server, make_handler, server.url())
    assert sent == {"Basic " + base64.b64encode(b"someone:elsewhere").decode()}


@pytest.mark.parametrize("proxied", [False, True], ids=["direct", "proxy"])
def test_a_url_with_a_user_alone_sends_it_with_an_empty_password(
    server, make_handler, monkeypatch, tmp_path, proxied
):
    """``https://TOKEN@host``, as curl sends it: requests alone would send no login at all."""
    _no_token_from_the_environment(monkeypatch)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))  # no ~/.netrc login to win
    _clear_proxies(monkeypatch)
    if proxied:
        monkeypatch.setenv("HTTP_PROXY", server.url(""))
        url = "http://k3y%2Fsecret@logs.example.invalid/ingest"
    else:
        url = server.url().replace("://", "://k3y%2Fsecret@")
    h, sent = _authorizations(server, make_handler, url)
    assert sent == {"Basic " + base64.b64encode(b"k3y/secret:").decode()}
    assert "k3y" not in repr(h)


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def _clear_proxies(monkeypatch):
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_http_proxy_from_the_environment(server, make_handler, monkeypatch):
    """HTTP_PROXY is honoured: the request goes to the proxy, in absolute form."""
    _clear_proxies(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", server.url(""))
    h = make_handler("http://logs.example.invalid/ingest")
    log = attach(h)
    emit(log, 3)
    assert h.flush(5)
    reqs = snapshot(server)
    assert reqs and all(r.path == "http://logs.example.invalid/ingest" for r in reqs)
    assert len(server.uuids()) == 3


def test_an_answer_that_trickles_in_through_a_proxy_is_cut_at_the_timeout(
    server, make_handler, monkeypatch
):
    _clear_proxies(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", server.url(""))
    server.then(TRICKLE)  # the proxy's answer: each byte within the timeout, never whole
    h = make_handler("http://logs.example.invalid/ingest", timeout=0.5)
    emit(attach(h), 3)
    assert h.flush(20)
    assert len(server.uuids()) == 3 and server.arrivals == 2
    assert h.stats()["retries"] == 1


def test_no_proxy_bypasses_the_proxy(server, make_handler, monkeypatch, refused_port):
    _clear_proxies(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{refused_port}")  # a proxy that refuses
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    h = make_handler(server.url())
    log = attach(h)
    emit(log, 2)
    assert h.flush(5)
    assert len(server.uuids()) == 2


# -- keep-alive ----------------------------------------------------------------------


def test_many_batches_reuse_the_connection(server, make_handler):
    h = make_handler(server.url(), batch_max_records=10)
    log = attach(h)
    for round_ in range(10):
        emit(log, 10, f"round {round_}")
        assert h.flush(5)
    assert len(snapshot(server)) >= 10
    assert len(server.uuids()) == 100
    assert server.connections <= 2, server.connections


def test_close_releases_the_connection_after_a_late_answer(server, make_handler):
    """A request still in flight when close() gives up must not leave its socket open."""
    h = make_handler(server.url(), shutdown_timeout=0.3)
    log = attach(h)
    server.then(delayed(1.0))
    log.info("slow")
    assert server.wait_for(lambda s: s.arrivals >= 1, timeout=5)
    t0 = time.monotonic()
    h.close()
    assert time.monotonic() - t0 < 0.3 + 0.5
    assert server.wait_for_uuids(1, timeout=5)  # the late answer came back
    try:
        # logship's end of the kept-alive connection must be closed by now
        assert server.wait_for(lambda s: s.open_connections == 0, timeout=1.5)
    finally:
        # Close what was left open, so that no later test meets its ResourceWarning.
        transport = getattr(getattr(h, "_worker", None), "transport", None)
        if transport is not None:
            transport.close()
