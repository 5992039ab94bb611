"""Per-request and per-task fields: ``logship.context``, ``bind`` and ``unbind``."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import logship
from logship.context import CONTEXT
from logship.pure.event import EventBuilder

from conftest import attach, shipped


@pytest.fixture(autouse=True)
def _empty_context() -> Iterator[None]:
    """Each test starts, and leaves the next one, with nothing bound."""
    token = CONTEXT.set(None)
    yield
    CONTEXT.reset(token)


# -- the API alone --------------------------------------------------------------------------


def test_bind_and_unbind_change_the_current_fields() -> None:
    assert dict(logship.context.current()) == {}
    logship.bind(request_id="r-1", user="ada")
    logship.bind(user="bob")
    assert dict(logship.context.current()) == {"request_id": "r-1", "user": "bob"}
    logship.unbind("user", "not-bound")
    assert dict(logship.context.current()) == {"request_id": "r-1"}
    logship.unbind("request_id")
    assert CONTEXT.get() is None  # nothing bound: nothing for emit to carry


def test_context_block_nests_and_restores() -> None:
    logship.bind(service_area="eu")
    with logship.context(request_id="r-1") as outer:
        assert dict(outer) == {"service_area": "eu", "request_id": "r-1"}
        with logship.context(request_id="r-2", step="pay"):
            assert logship.context.current()["request_id"] == "r-2"
        assert dict(logship.context.current()) == dict(outer)
    assert dict(logship.context.current()) == {"service_area": "eu"}


def test_context_block_restores_after_an_exception() -> None:
    with pytest.raises(RuntimeError), logship.context(request_id="r-1"):
        raise RuntimeError("boom")
    assert dict(logship.context.current()) == {}


def test_the_mapping_is_read_only_and_a_snapshot() -> None:
    logship.bind(a=1)
    snapshot = logship.context.current()
    with pytest.raises(TypeError):
        snapshot["a"] = 2  # type: ignore[index]
    logship.bind(a=2)
    assert snapshot["a"] == 1  # what an earlier emit captured does not change


@pytest.mark.parametrize("name", ["message", "level", "uuid", "exception"])
def test_core_field_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        logship.bind(**{name: "x"})
    with pytest.raises(ValueError, match=name):
        logship.context(**{name: "x"})
    assert dict(logship.context.current()) == {}


def test_a_context_block_cannot_be_entered_twice_at_once() -> None:
    block = logship.context(a=1)
    with block, pytest.raises(RuntimeError), block:
        pass


def test_builder_merges_context_after_fields_and_before_extra() -> None:
    builder = EventBuilder({"service": "billing", "k": "fields", "f": 1})
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "hi", (), None)
    event = builder.build(
        record, "hi", None, None, context={"k": "context", "c": 2, "f": 3}, extras={"k": "extra"}
    )
    assert event["k"] == "extra"  # extra= wins over context
    assert event["f"] == 3  # context wins over fields
    assert event["c"] == 2 and event["service"] == "billing"
    assert event["message"] == "hi"


# -- through a ShipHandler ------------------------------------------------------------------


def test_events_carry_what_was_bound_at_the_call(server: Any, make_handler: Any) -> None:
    h = make_handler(server.url(), fields={"service": "billing", "tier": "fields"})
    log = attach(h)
    log.info("before")
    with logship.context(request_id="r-1", tier="context"):
        log.info("inside", extra={"step": 1})
        logship.bind(user="ada")
        log.info("bound")
    log.info("after")
    assert h.flush(10)
    events = {e["message"]: e for e in shipped(server, 4)}
    assert "request_id" not in events["before"] and events["before"]["tier"] == "fields"
    assert events["inside"]["request_id"] == "r-1" and events["inside"]["tier"] == "context"
    assert events["inside"]["step"] == 1 and "user" not in events["inside"]
    assert events["bound"]["user"] == "ada" and events["bound"]["request_id"] == "r-1"
    # The block restored what was bound before it: nothing.
    assert "request_id" not in events["after"] and "user" not in events["after"]


def test_context_is_captured_on_the_callers_thread(server: Any, make_handler: Any) -> None:
    h = make_handler(server.url())
    log = attach(h)
    for i in range(50):
        with logship.context(i=i):
            log.info("n %d", i)  # the worker builds the event after the block has exited
    assert h.flush(10)
    assert sorted(e["i"] for e in shipped(server, 50)) == list(range(50))


def test_bound_values_are_resolved_when_bound(server: Any, make_handler: Any) -> None:
    """A list changed after it was bound ships as bound; an object's repr runs where it is bound."""

    class Ticket:
        def __init__(self) -> None:
            self.threads: list[str] = []

        def __repr__(self) -> str:
            self.threads.append(threading.current_thread().name)
            return "Ticket(7)"

    h = make_handler(server.url())
    log = attach(h)
    steps, ticket = ["parse"], Ticket()
    with logship.context(steps=steps, ticket=ticket, shape=(1, 2)):
        assert logship.context.current()["ticket"] == "Ticket(7)"
        log.info("bound")
        steps.append("validate")  # after the call: not in the event
    assert h.flush(10)
    (event,) = shipped(server, 1)
    assert event["steps"] == ["parse"] and event["shape"] == [1, 2]
    assert event["ticket"] == "Ticket(7)"
    assert ticket.threads == [threading.current_thread().name]


def test_no_context_adds_no_field(server: Any, make_handler: Any) -> None:
    h = make_handler(server.url())
    attach(h).info("plain")
    assert h.flush(10)
    (event,) = shipped(server, 1)
    assert set(event) == {
        "timestamp",
        "level",
        "logger",
        "message",
        "hostname",
        "uuid",
        "kernel_version",
        "pid",
        "thread",
        "module",
        "func",
        "line",
    }


def test_each_thread_has_its_own_context(server: Any, make_handler: Any) -> None:
    h = make_handler(server.url())
    log = attach(h)
    logship.bind(request_id="main")
    ready = threading.Barrier(3, timeout=10)

    def serve(rid: str) -> None:
        log.info("fresh thread")  # a new thread does not inherit the main thread's fields
        logship.bind(request_id=rid)
        ready.wait()  # both threads have bound before either logs again
        log.info("in %s", rid)

    threads = [threading.Thread(target=serve, args=(f"t-{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    ready.wait()
    for t in threads:
        t.join(10)
    log.info("in main")
    # A copied context carries the fields into a thread.
    copied = threading.Thread(target=contextvars.copy_context().run, args=(log.info, "copied"))
    copied.start()
    copied.join(10)
    assert h.flush(10)
    events = shipped(server, 6)
    fresh = [e for e in events if e["message"] == "fresh thread"]
    assert len(fresh) == 2 and all("request_id" not in e for e in fresh)
    by_message = {e["message"]: e for e in events}
    assert by_message["in t-0"]["request_id"] == "t-0"
    assert by_message["in t-1"]["request_id"] == "t-1"
    assert by_message["in main"]["request_id"] == "main"
    assert by_message["copied"]["request_id"] == "main"


def test_each_asyncio_task_keeps_its_own_request_id(server: Any, make_handler: Any) -> None:
    h = make_handler(server.url())
    log = attach(h)

    async def handle(rid: str, steps: int) -> None:
        logship.bind(request_id=rid)  # once, at the start of the task
        for step in range(steps):
            log.info("%s step %d", rid, step)
            await asyncio.sleep(0)  # let the other tasks run in between

    async def main() -> None:
        await asyncio.gather(*(handle(f"r-{n}", 5) for n in range(4)))
        log.info("after the tasks")

    asyncio.run(main())
    assert h.flush(10)
    events = shipped(server, 21)
    for e in events:
        if e["message"] == "after the tasks":
            assert "request_id" not in e  # a task's binding stays in the task
        else:
            assert e["message"].startswith(e["request_id"] + " step"), e
    assert {e.get("request_id") for e in events} == {None, "r-0", "r-1", "r-2", "r-3"}
