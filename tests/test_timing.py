"""The batch-timing rules (``logship.pure.timing``), from tables of looks: no threads, no clocks."""

from __future__ import annotations

import pytest

from logship.pure.timing import MIN_QUIET, BatchTimer, Look

WALL = 1_700_000_000.0  # the wall clock at monotonic 0 in these tables


def look(now: float, emitted: int = 0, head: float | None = None, waiting: bool = False) -> Look:
    """A look at monotonic ``now``; ``head``: the ring head's age by its created time."""
    created = None if head is None else WALL + now - head
    return Look(now, WALL + now, emitted, created, waiting or head is not None)


# -- an idle ring ------------------------------------------------------------------


def test_an_idle_pump_looks_once_per_interval():
    t = BatchTimer(1.0)
    assert t.age(look(5.0)) is None
    assert t.wait(look(5.0)) == 1.0
    assert t.cycle_due(look(5.0))  # spill and acknowledgements, now and then
    assert not t.due(look(5.0), full=True)  # no batch is open


@pytest.mark.parametrize(
    ("head_age", "expected_wait"),
    [
        (0.0, 1.0),  # just logged: a whole interval
        (0.25, 0.75),  # logged while the pump slept: the rest of its interval
        (1.0, 0.0),  # already due
        (60.0, 0.0),  # made long before it was logged: due at once, not earlier
    ],
)
def test_a_waiting_event_ages_from_when_it_was_logged(head_age, expected_wait):
    t = BatchTimer(1.0)
    assert t.wait(look(10.0, head=head_age)) == pytest.approx(expected_wait)


def test_an_event_dated_in_the_future_ages_from_when_first_seen():
    t = BatchTimer(1.0)
    assert t.wait(look(10.0, head=-3600.0)) == 1.0  # the wall clock stepped back
    assert t.wait(look(10.6, head=-3600.0)) == pytest.approx(0.4)
    assert t.cycle_due(look(11.0, head=-3600.0))


def test_an_event_with_no_usable_time_ages_from_when_first_seen():
    t = BatchTimer(0.5)
    assert t.wait(look(3.0, waiting=True)) == 0.5
    assert not t.cycle_due(look(3.2, waiting=True))
    assert t.cycle_due(look(3.5, waiting=True))


def test_an_aged_event_is_due_whatever_the_clock_reads():
    # now - (now - interval) is less than interval in floating point for some
    # now: an event exactly flush_interval old must be due at any such now,
    # not looked at again and again with a timeout of 0.
    interval = 0.1
    candidates = [2.0**k + f for k in (10, 11, 14, 15, 16) for f in (0.3, 0.123456, 0.777)]
    rounding_short = [now for now in candidates if now - (now - interval) < interval]
    assert rounding_short  # the case this test is about
    for now in rounding_short:
        t = BatchTimer(interval)
        old = Look(now, WALL + now, 1, WALL + now - 60.0, True)
        assert t.wait(old) == 0.0
        assert t.cycle_due(old), now


# -- an open batch -------------------------------------------------------------------


def test_an_open_batch_is_due_at_its_age_or_when_full_or_wanted():
    t = BatchTimer(1.0)
    t.opened(look(0.0), WALL - 0.3)  # its first event was logged 0.3 s ago
    assert t.opened_at == pytest.approx(-0.3)
    assert not t.due(look(0.5))
    assert t.due(look(0.5), full=True)
    assert t.due(look(0.5), wanted=True)
    assert t.due(look(0.75))
    assert t.wait(look(0.5)) == pytest.approx(0.2)


def test_sealing_closes_the_batch():
    t = BatchTimer(1.0)
    t.opened(look(0.0), WALL)
    t.sealed(full=False)
    assert t.opened_at is None and not t.fast
    assert not t.due(look(5.0))


# -- the end of a fast stream -------------------------------------------------------


def fast_timer(interval: float = 1.0) -> BatchTimer:
    t = BatchTimer(interval)
    t.opened(look(0.0), WALL)
    t.sealed(full=True)  # the last batch went out full: the stream fills batches
    return t


def test_a_fast_stream_is_watched_every_quiet_period():
    t = fast_timer()
    assert t.quiet == pytest.approx(0.1)
    assert t.wait(look(1.0)) == pytest.approx(0.1)
    assert BatchTimer(0.05).quiet == MIN_QUIET


@pytest.mark.parametrize(
    ("looks", "due_at_last"),
    [
        # (now, emitted) at each look of the open batch, opened at 0.0
        ([(0.05, 10), (0.12, 10)], False),  # silent, but not yet for a quiet period
        ([(0.05, 10), (0.10, 10), (0.21, 10)], True),  # silent for a quiet period
        ([(0.05, 10), (0.10, 11), (0.21, 12)], False),  # still logging: batches stay whole
        ([(0.05, 10), (0.10, 11), (0.25, 11)], True),  # a pause longer than the quiet period
    ],
)
def test_a_fast_stream_that_falls_silent_is_sealed(looks, due_at_last):
    t = fast_timer()
    t.opened(look(0.0), WALL)
    results = [t.due(look(now, emitted)) for now, emitted in looks]
    assert results[-1] is due_at_last, results
    assert not any(results[:-1])


def test_a_slow_stream_waits_for_its_age():
    t = BatchTimer(1.0)
    t.opened(look(0.0), WALL)
    t.sealed(full=False)  # the last batch went out by age: not fast
    t.opened(look(2.0), WALL + 2.0)
    assert not t.due(look(2.5, 5)) and not t.due(look(2.9, 5))  # silent, but slow
    assert t.due(look(3.0, 5))


def test_a_fast_stream_that_stopped_on_a_batch_boundary_is_no_longer_watched():
    t = fast_timer()
    assert not t.cycle_due(look(0.05, 7))  # notes the count
    t.cycle_due(look(0.2, 7))  # silent for a quiet period, nothing open
    assert not t.fast
    assert t.wait(look(0.3)) == 1.0


# -- a full sender ---------------------------------------------------------------------


def test_with_the_sender_full_only_the_sender_can_help():
    t = BatchTimer(1.0)
    t.opened(look(0.0), WALL - 5.0)  # long due
    t.sender_full = True
    assert t.wait(look(1.0)) == 1.0  # woken by the sender taking a batch, not by age
    assert t.cycle_due(look(1.0))
