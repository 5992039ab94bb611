"""Several endpoints (SPEC section 9): the pure rules from tables, then real collectors."""

from __future__ import annotations

import pytest

import logship
from logship.cli.spillinspect import read_dead_letters, summarize
from logship.pure.endpoints import Endpoint, EndpointSet
from logship.pure.retry import Backoff

from conftest import attach, check_identity, require_within
from faultserver import FaultServer, status


def endpoint_set(n: int, balance: str = "failover") -> EndpointSet:
    # A back-off without jitter's randomness in its bounds: 1 s, then 2 s…, ceiling 30 s.
    return EndpointSet([Endpoint(f"http://e{i}") for i in range(n)], balance, Backoff(30.0, 2.0))  # type: ignore[arg-type]


# -- the rules -------------------------------------------------------------------------------


def test_failover_takes_the_first_that_may_be_tried():
    s = endpoint_set(3)
    assert s.pick(0.0) == 0
    delay = s.failed(0, 0.0, "refused")
    assert 1.0 <= delay <= 2.0
    assert s.pick(0.1) == 1  # at once, not after the back-off
    s.failed(1, 0.1, "refused")
    assert s.pick(0.2) == 2
    s.succeeded(2, 10)
    assert s.pick(0.3) == 2
    assert s.pick(2.5) == 0  # the first, once its back-off has passed: back to it
    s.succeeded(0, 5)
    assert [e["state"] for e in s.views()] == ["up", "down", "up"]
    assert [e["delivered"] for e in s.views()] == [5, 0, 10]


def test_every_endpoint_backing_off_means_waiting_for_the_first_back():
    s = endpoint_set(2)
    d0 = s.failed(0, 0.0, "refused")
    d1 = s.failed(1, 0.0, "refused")
    assert s.pick(0.0) is None and not s.any_up(0.0)
    assert s.until_next(0.0) == pytest.approx(min(d0, d1))
    assert s.pick(max(d0, d1)) == 0


def test_back_off_grows_per_endpoint_and_resets_on_success():
    s = endpoint_set(2)
    first = s.failed(0, 0.0, "x")
    second = s.failed(0, 10.0, "x")
    assert second > first  # attempt 1: twice the base
    s.succeeded(0, 1)
    assert s.failed(0, 20.0, "x") <= 2.0  # attempt 0 again
    assert s.endpoints[1].attempt == 0  # the other's is its own


def test_round_robin_takes_turns_among_those_that_answer():
    s = endpoint_set(3, "round_robin")
    assert [s.pick(0.0) for _ in range(6)] == [0, 1, 2, 0, 1, 2]
    s.failed(1, 0.0, "refused")
    assert [s.pick(0.1) for _ in range(4)] == [0, 2, 0, 2]


def test_a_held_endpoint_waits_the_ceiling_while_the_others_carry_on():
    s = endpoint_set(2)
    s.held(0, 0.0, "HTTP 401")
    assert s.pick(1.0) == 1 and s.any_up(1.0)
    assert s.views()[0]["state"] == "held" and s.pick(30.0) == 0


def test_a_rejection_is_no_failure_of_the_endpoint():
    s = endpoint_set(2)
    s.failed(0, 0.0, "x")
    s.answered(0)
    assert s.pick(0.0) == 0 and s.endpoints[0].attempt == 0


# -- options -----------------------------------------------------------------------------------


def test_several_urls_as_a_list_or_comma_separated(monkeypatch):
    h = logship.ShipHandler(url=["http://a:1/x", "http://b:2/x"], spill=False)
    assert h.options.url == ("http://a:1/x", "http://b:2/x")
    h.close()
    monkeypatch.setenv("LOGSHIP_URL", "http://a:1/x, http://b:2/x")
    h = logship.ShipHandler(spill=False, balance="round_robin")
    assert h.options.url == ("http://a:1/x", "http://b:2/x")
    h.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": []}, "option 'url' is an empty list"),
        ({"url": ["http://a/x", "http://A/x"]}, "names an endpoint twice"),
        ({"url": "http://a/x", "balance": "round_robin"}, "'balance' needs several endpoints"),
        ({"url": ["http://a/x", "ftp://b/x"]}, "must start with"),
    ],
)
def test_wrong_endpoint_options_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        logship.ShipHandler(spill=False, **kwargs)


# -- real collectors -----------------------------------------------------------------------------


@pytest.fixture
def servers():
    made = [FaultServer().start() for _ in range(3)]
    yield made
    for s in made:
        s.stop()


def delivered_by(server: FaultServer) -> set[str]:
    return {e["uuid"] for e in server.events()}


def test_failover_carries_on_with_the_next_endpoint_and_spills_nothing(
    servers, make_handler, tmp_path, refused_url
):
    a, b, _c = servers
    h = make_handler(
        [refused_url, a.url(), b.url()], spill=True, spill_dir=str(tmp_path), batch_max_records=50
    )
    log = attach(h)
    for i in range(500):
        log.info("event %d", i)
    assert h.flush(10), h.stats()
    stats = h.stats()
    assert len(delivered_by(a)) == 500 and not b.requests
    assert stats["spilled"] == 0 and stats["shipped"] == 500
    states = [e["state"] for e in stats["endpoints"]]
    assert states == ["down", "up", "unknown"]
    assert stats["endpoints"][1]["delivered"] == 500
    check_identity(stats)


def test_failover_goes_back_to_the_first_when_it_recovers(servers, make_handler):
    a, b, _c = servers
    a.down()
    h = make_handler([a.url(), b.url()], retry_max_backoff=0.2)
    log = attach(h)
    log.info("while the first is down")
    assert h.flush(10)
    assert len(b.events()) == 1
    a.up()

    def first_takes_over() -> bool:
        # Once its back-off has passed, the next batch tries the first again.
        log.info("probe")
        assert h.flush(5)
        return bool(a.events())

    require_within(first_takes_over, 10, "the first endpoint to take over again")
    assert h.stats()["endpoints"][0]["state"] == "up"


def test_a_batch_that_fails_moves_with_its_idempotency_key(servers, make_handler):
    a, b, _c = servers
    a.then(status(503))
    h = make_handler([a.url(), b.url()], flush_interval=5.0)
    log = attach(h)
    for i in range(10):
        log.info("event %d", i)
    assert h.flush(10)
    (failed,) = a.requests
    (moved,) = b.requests
    assert failed.headers["Idempotency-Key"] == moved.headers["Idempotency-Key"]
    assert len(b.events()) == 10
    assert h.stats()["retries"] == 1 and h.stats()["spilled"] == 0


def test_round_robin_spreads_batches(servers, make_handler):
    h = make_handler([s.url() for s in servers], balance="round_robin", batch_max_records=10)
    log = attach(h)
    for i in range(300):
        log.info("event %d", i)
    assert h.flush(10)
    counts = [len(delivered_by(s)) for s in servers]
    assert sum(counts) == 300 and all(c >= 50 for c in counts), counts
    check_identity(h.stats())


def test_with_every_endpoint_down_the_spill_replays_to_whichever_comes_back(
    servers, make_handler, tmp_path
):
    a, b, _c = servers
    a.down()
    b.down()
    h = make_handler(
        [a.url(), b.url()],
        spill=True,
        spill_dir=str(tmp_path),
        capacity=100,
        batch_max_records=10,
        retry_max_backoff=0.2,
    )
    log = attach(h)
    for i in range(300):
        log.info("event %d", i)
        if i % 10 == 9:
            require_within(lambda: h.stats()["queued"] <= 80, 10, "the ring to drain to the spill")
    require_within(lambda: h.stats()["spilled"] > 0, 10, "something to be spilled")
    b.up()
    require_within(lambda: h.stats()["pending"] == 0, 20, "the spill to be replayed")
    assert len(delivered_by(b)) == 300 and not a.events()
    check_identity(h.stats())


def test_a_rejection_is_dead_lettered_with_the_endpoint_that_rejected(
    servers, make_handler, tmp_path, refused_url
):
    _a, b, _c = servers
    b.default = status(422, b"no such stream")
    folder = str(tmp_path / "spill")
    h = make_handler([refused_url, b.url()], spill=True, spill_dir=folder)
    attach(h).info("rejected")
    require_within(lambda: h.stats()["rejected"] == 1, 10, "the rejection")
    (letter,) = read_dead_letters(folder).batches
    assert (letter.status, letter.url) == (422, b.url())
    # The folder is still the handler's: named after its first endpoint.
    assert summarize(folder, set()).url == refused_url
