"""The ring buffer and the overflow policies (SPEC section 2): unit tests of
``logship.ring.Ring``, then the policies through a handler whose endpoint stalls."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from logship.ring import Ring, Signals, holds_ring_lock
from logship.worker import _MAX_READY

from conftest import attach, check_identity, wait_until
from faultserver import STALL, status


def record(n: int) -> logging.LogRecord:
    return logging.LogRecord("ring", logging.INFO, __file__, 1, "event %d", (n,), None)


def put(ring: Ring, n: int, size: int = 1) -> bool:
    return ring.put(record(n), f"event {n}", None, None, size, None, None, None)


def make_ring(capacity: int, capacity_bytes: int, overflow: str, **kw: Any) -> Ring:
    return Ring(capacity, capacity_bytes, overflow, Signals(), **kw)


def numbers(ring: Ring) -> list[int]:
    return [item[2].args[0] for item in ring.items]  # the ring holds plain tuples (Item order)


# -- the Ring alone ---------------------------------------------------------------------------


def test_ring_drop_oldest_keeps_the_newest_and_counts():
    ring = make_ring(5, 10**6, "drop_oldest", wake_at=100)
    for n in range(12):
        put(ring, n)
    assert numbers(ring) == [7, 8, 9, 10, 11]
    assert ring.dropped == 7 and ring.emitted == 12


def test_ring_drop_newest_keeps_the_oldest_and_counts():
    ring = make_ring(5, 10**6, "drop_newest", wake_at=100)
    for n in range(12):
        put(ring, n)
    assert numbers(ring) == [0, 1, 2, 3, 4]
    assert ring.dropped == 7 and ring.emitted == 12


@pytest.mark.parametrize("overflow", ["drop_oldest", "spill"])
def test_ring_spill_without_a_spill_acts_as_drop_oldest(overflow):
    ring = make_ring(3, 10**6, overflow, wake_at=100)
    for n in range(6):
        put(ring, n)
    assert numbers(ring) == [3, 4, 5] and ring.dropped == 3


def test_ring_capacity_bytes_bounds_characters():
    ring = make_ring(1000, 100, "drop_oldest", wake_at=1000)
    for n in range(30):
        put(ring, n, size=30)
        assert ring.chars <= 100
    assert numbers(ring) == [27, 28, 29] and ring.chars == 90 and ring.dropped == 27

    ring = make_ring(1000, 100, "drop_newest", wake_at=1000)
    for n in range(30):
        put(ring, n, size=30)
    assert numbers(ring) == [0, 1, 2] and ring.chars == 90 and ring.dropped == 27


def test_ring_take_frees_room_and_counts_chars():
    ring = make_ring(4, 1000, "drop_newest", wake_at=100)
    for n in range(4):
        put(ring, n, size=10)
    taken = ring.take(3)
    assert [item.seq for item in taken] == [0, 1, 2]  # sequence numbers, oldest first
    assert ring.chars == 10
    put(ring, 4, size=10)
    assert numbers(ring) == [3, 4] and ring.dropped == 0
    assert ring.take(10) and ring.take(10) == [] and ring.chars == 0


def test_ring_wakes_the_worker_at_wake_at():
    ring = make_ring(100, 10**6, "drop_oldest", wake_at=3)
    put(ring, 0)
    put(ring, 1)
    assert not ring.signals.wake.is_set()
    put(ring, 2)
    assert ring.signals.wake.is_set()


def test_pacing_asks_for_a_yield_on_one_call_in_32_while_a_batch_waits_for_a_busy_worker():
    ring = make_ring(1000, 10**6, "spill", wake_at=100, pace=True)
    ring.signals.pump_busy = True
    asks = [put(ring, n) for n in range(400)]
    # Below a batch's worth nothing; from then on every 32nd event the ring holds.
    assert [n + 1 for n, ask in enumerate(asks) if ask] == list(range(128, 401, 32))
    ring.take(1000)
    assert not put(ring, 400)  # the worker took the batch


def test_pacing_leaves_callers_alone_while_the_worker_waits_until_the_ring_is_half_full():
    """An outage: the worker waits for the endpoint; yielding to it would only cost the caller."""
    ring = make_ring(1000, 10**6, "spill", wake_at=100, pace=True)
    asks = [put(ring, n) for n in range(700)]
    assert [n + 1 for n, ask in enumerate(asks) if ask] == list(range(512, 701, 32))
    ring.take(1000)
    ring.signals.sender_busy = True  # a request in flight needs the GIL too
    asks = [put(ring, n) for n in range(700, 900)]
    assert [n + 1 for n, ask in enumerate(asks) if ask] == list(range(128, 201, 32))


def test_without_pacing_put_never_asks_for_a_yield():
    ring = make_ring(100, 10**6, "drop_oldest", wake_at=10)
    assert not any(put(ring, n) for n in range(300))


def test_a_put_from_inside_a_holder_of_the_lock_is_dropped_and_counted_not_a_deadlock():
    """A signal handler or a __del__ that logs lands on a thread that may hold the lock."""
    ring = make_ring(10, 10**6, "drop_oldest", wake_at=100)
    got: list[bool] = []

    @holds_ring_lock
    def holder() -> None:
        with ring.lock:
            got.append(put(ring, 1))  # what a nested log call does
        ring.lost()  # and its failing twin, once the lock is free again

    t = threading.Thread(target=holder, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the nested put waited for its own thread"
    assert got == [False] and not ring.items
    with ring.lock:
        assert ring.snapshot() == {
            "emitted": 2,
            "ring_dropped": 2,
            "ring_len": 0,
            "truncated": 0,
        }


def test_a_put_while_another_thread_holds_the_lock_waits_for_it():
    ring = make_ring(10, 10**6, "drop_oldest", wake_at=100)
    ring.lock.acquire()
    t = threading.Thread(target=put, args=(ring, 1), daemon=True)
    t.start()
    assert wait_until(lambda: not t.is_alive(), timeout=0.2) is False  # it waits
    ring.lock.release()
    t.join(10)
    assert numbers(ring) == [1] and not ring.reentered


def blocked_putter(ring: Ring, count: int) -> tuple[threading.Thread, list[int]]:
    done: list[int] = []

    def run() -> None:
        for n in range(count):
            put(ring, n)
            done.append(n)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, done


def test_ring_block_waits_for_room_then_continues():
    ring = make_ring(3, 10**6, "block", wake_at=100)
    t, done = blocked_putter(ring, 5)
    # The caller blocks on the fourth event: counted as emitted, not in the ring.
    assert wait_until(lambda: ring.emitted == 4)
    assert len(done) == 3 and t.is_alive() and ring.signals.wake.is_set()
    assert ring.take(1)
    assert wait_until(lambda: ring.emitted == 5 and len(done) == 4)
    assert ring.take(2)
    t.join(5)
    assert not t.is_alive() and done == [0, 1, 2, 3, 4]
    assert ring.dropped == 0 and numbers(ring) == [3, 4]


def test_ring_block_is_released_by_close_and_the_event_counted_as_dropped():
    ring = make_ring(2, 10**6, "block", wake_at=100)
    t, done = blocked_putter(ring, 4)
    assert wait_until(lambda: ring.emitted == 3)
    assert done == [0, 1]
    ring.close()
    t.join(5)
    assert not t.is_alive() and done == [0, 1, 2, 3]
    assert ring.emitted == 4 and ring.dropped == 2 and numbers(ring) == [0, 1]


# -- overflow policies through a handler whose endpoint stalls ------------------------------

CAPACITY = 20
BATCH = 5
N = 200


def stalled(server, make_handler, overflow: str, **options: Any):
    server.default = STALL
    options = {"capacity": CAPACITY, "batch_max_records": BATCH, **options}
    h = make_handler(server.url(), overflow=overflow, **options)
    return h, attach(h, "overflow")


def release(server) -> None:
    server.default = status(201)
    server.release.set()


def received(server) -> list[int]:
    return sorted(e["n"] for e in server.events())


@pytest.mark.parametrize("overflow", ["drop_oldest", "spill"])
def test_drop_oldest_keeps_the_newest(server, make_handler, overflow):
    h, log = stalled(server, make_handler, overflow)
    for n in range(N):
        log.info("event %d", n, extra={"n": n})
    stats = h.stats()
    check_identity(stats)
    assert stats["dropped"] > 0 and stats["shipped"] == 0
    release(server)
    assert h.flush(10)
    got = received(server)
    assert set(range(N - CAPACITY, N)) <= set(got)  # the newest are all kept
    stats = h.stats()
    check_identity(stats)
    assert len(got) == stats["shipped"] and len(set(got)) == len(got)
    assert stats["shipped"] + stats["dropped"] == N and stats["pending"] == 0


def test_drop_newest_keeps_the_oldest(server, make_handler):
    # flush_interval is long: every batch is sealed full, so the worker holds exactly
    # ``held`` events once the stalled sender has one and the pump can take no more.
    h, log = stalled(server, make_handler, "drop_newest", flush_interval=60)
    held = (_MAX_READY + 1) * BATCH  # sealed batches (one in flight) and the open one
    for n in range(held):
        log.info("event %d", n, extra={"n": n})
    ring = h._worker.ring
    assert wait_until(lambda: not ring.items and server.arrivals > 0)
    # From here which events the ring refuses does not depend on when the worker runs.
    for n in range(held, N):
        log.info("event %d", n, extra={"n": n})
    stats = h.stats()
    check_identity(stats)
    assert stats["dropped"] == N - held - CAPACITY
    release(server)
    assert h.flush(10)
    assert received(server) == list(range(held + CAPACITY))  # the oldest; the newest refused
    stats = h.stats()
    check_identity(stats)
    assert stats["shipped"] == held + CAPACITY and stats["shipped"] + stats["dropped"] == N


def test_block_blocks_the_caller_until_there_is_room(server, make_handler):
    h, log = stalled(server, make_handler, "block")
    done = threading.Event()

    def produce() -> None:
        for n in range(100):
            log.info("event %d", n, extra={"n": n})
        done.set()

    t = threading.Thread(target=produce, daemon=True)
    t.start()

    def caller_blocked() -> bool:
        s = h.stats()
        return s["pending"] - s["queued"] == 1  # emitted, but not in memory: waiting in put

    assert wait_until(caller_blocked)
    assert not done.is_set()
    stats = h.stats()
    check_identity(stats)
    assert stats["dropped"] == 0 and stats["emitted"] < 100
    release(server)
    assert done.wait(10)
    t.join(5)
    assert h.flush(10)
    assert received(server) == list(range(100))
    stats = h.stats()
    check_identity(stats)
    assert stats["shipped"] == 100 and stats["dropped"] == 0


def test_block_is_released_by_close(server, make_handler):
    h, log = stalled(server, make_handler, "block", shutdown_timeout=1.0)
    done = threading.Event()

    def produce() -> None:
        for n in range(100):
            log.info("event %d", n, extra={"n": n})
        done.set()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    assert wait_until(lambda: (lambda s: s["pending"] - s["queued"] == 1)(h.stats()))
    start = time.monotonic()
    h.close()
    assert time.monotonic() - start < 1.0 + 0.5
    assert done.wait(2)  # the blocked caller was let go, and later events are dropped
    t.join(5)
    stats = h.stats()
    check_identity(stats)
    assert stats["emitted"] == 100 and stats["pending"] == 0
    assert stats["shipped"] + stats["dropped"] == 100


def test_capacity_bytes_bounds_the_characters_held(server, make_handler):
    h, log = stalled(
        server, make_handler, "drop_oldest", capacity=1000, capacity_bytes=500, batch_max_records=1
    )
    for n in range(100):
        log.info("%s", f"{n:03d}" + "x" * 97, extra={"n": n})  # 100 characters each
    stats = h.stats()
    check_identity(stats)
    # At most 5 events fit 500 characters; a handful more are in batches.
    assert stats["queued"] <= 5 + 4, stats
    assert stats["dropped"] >= 100 - 9
    release(server)
    assert h.flush(10)
    got = received(server)
    assert set(range(95, 100)) <= set(got)
    assert len(got) == h.stats()["shipped"] <= 9


def test_stats_identity_holds_in_every_sample_while_four_threads_log(server, make_handler):
    h = make_handler(server.url(), capacity=300, batch_max_records=50, overflow="drop_oldest")
    log = attach(h, "identity")
    samples: list[dict[str, Any]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(h.stats())

    def produce(k: int) -> None:
        for n in range(2500):
            log.info("t%d %d", k, n)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    producers = [threading.Thread(target=produce, args=(k,), daemon=True) for k in range(4)]
    for t in producers:
        t.start()
    for t in producers:
        t.join(20)
    assert h.flush(10)
    stop.set()
    sampler.join(5)
    samples.append(h.stats())

    assert len(samples) > 10
    for s in samples:
        check_identity(s)
        assert s["queued"] <= s["pending"]
    for key in ("emitted", "shipped", "dropped"):
        values = [s[key] for s in samples]
        assert values == sorted(values), f"{key} went backwards"
    final = samples[-1]
    assert final["emitted"] == 10_000 and final["pending"] == 0
    assert final["shipped"] + final["dropped"] == 10_000
    assert len(server.uuids()) == final["shipped"] == len(server.events())


def test_memory_stays_bounded_while_the_endpoint_stalls(server, make_handler):
    h, log = stalled(server, make_handler, "drop_oldest")
    bound = CAPACITY + 3 * BATCH
    worst = 0
    for n in range(2000):
        log.info("event %d", n, extra={"n": n})
        if n % 20 == 19:
            time.sleep(0.001)  # pace the producer so the worker runs between bursts
            stats = h.stats()
            check_identity(stats)
            worst = max(worst, stats["queued"])
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # and let the pump do all it can
        worst = max(worst, h.stats()["queued"])
    release(server)
    assert h.flush(10)
    assert worst <= bound, f"{worst} events in memory, bound {bound}"
