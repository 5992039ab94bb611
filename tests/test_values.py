"""Hostile values at run time (SPEC section 3): nothing raises into the log call,
and the event still arrives, with what cannot be carried sent as its repr."""

from __future__ import annotations

import datetime
import logging
import math
import sys
from typing import Any

import pytest

from conftest import attach, check_identity


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr refused")

    __str__ = __repr__


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


def ship(server, make_handler, log_call, **options: Any) -> dict[str, Any]:
    """Log through ``log_call(logger)``, flush, and return the one event that arrived."""
    h = make_handler(server.url(), **options)
    log = attach(h, "values")
    log_call(log)  # must not raise
    assert h.flush(5)
    stats = h.stats()
    check_identity(stats)
    assert stats["shipped"] == 1 and stats["dropped"] == 0, stats
    (event,) = server.events()
    return event


ENCODINGS = ["json", "ndjson", "msgpack"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_an_extra_whose_repr_raises(server, make_handler, encoding):
    event = ship(
        server,
        make_handler,
        lambda log: log.info("bad repr", extra={"bad": BadRepr()}),
        encoding=encoding,
    )
    assert event["message"] == "bad repr"
    assert isinstance(event["bad"], str) and "BadRepr" in event["bad"]


def test_a_message_argument_whose_repr_and_str_raise(server, make_handler):
    event = ship(server, make_handler, lambda log: log.info("value: %r", BadRepr()))
    assert isinstance(event["message"], str) and event["message"]


def test_a_message_object_whose_str_raises(server, make_handler):
    event = ship(server, make_handler, lambda log: log.info(BadRepr()))
    assert isinstance(event["message"], str) and event["message"]


@pytest.mark.parametrize("encoding", ["json", "ndjson"])
def test_values_json_cannot_carry_are_sent_as_their_repr(server, make_handler, encoding):
    when = datetime.datetime(2026, 11, 24, 10, 0, tzinfo=datetime.timezone.utc)
    extra = {
        "a_set": {3},
        "custom": Opaque(),
        "raw": b"\x00\xffbytes",
        "when": when,
        "day": when.date(),
    }
    event = ship(
        server, make_handler, lambda log: log.info("odd values", extra=extra), encoding=encoding
    )
    assert event["message"] == "odd values"
    assert event["custom"] == "<Opaque thing>"
    assert event["raw"] == repr(b"\x00\xffbytes")
    assert event["when"] == repr(when)
    assert event["day"] == repr(when.date())
    assert event["a_set"] in ([3], repr({3}))  # a set may travel as a list or as its repr


def test_values_msgpack_cannot_carry_are_sent_as_their_repr(server, make_handler):
    when = datetime.datetime(2026, 11, 24, 10, 0, tzinfo=datetime.timezone.utc)
    extra = {"custom": Opaque(), "when": when, "a_set": {3}}
    event = ship(
        server, make_handler, lambda log: log.info("odd values", extra=extra), encoding="msgpack"
    )
    assert event["custom"] == "<Opaque thing>"
    assert event["when"] == repr(when)
    assert event["a_set"] in ([3], repr({3}))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_nan_and_infinity(server, make_handler, encoding):
    extra = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "fine": 1.5}
    event = ship(
        server, make_handler, lambda log: log.info("floats", extra=extra), encoding=encoding
    )
    assert event["fine"] == 1.5
    if encoding == "msgpack":  # msgpack carries IEEE floats as they are
        assert math.isnan(event["nan"]) or event["nan"] == "nan"
    else:  # JSON has no NaN or Infinity: their repr
        assert (event["nan"], event["inf"], event["ninf"]) == ("nan", "inf", "-inf")


@pytest.mark.parametrize(
    "encoding",
    [
        "json",
        "ndjson",
        "msgpack",
    ],
)
def test_a_dict_with_keys_that_are_not_strings(server, make_handler, encoding):
    odd = {1: "int", (2, 3): "tuple", None: "none", "ok": "str"}
    event = ship(
        server, make_handler, lambda log: log.info("keys", extra={"odd": odd}), encoding=encoding
    )
    assert event["odd"]["ok"] == "str"
    assert set(event["odd"].values()) == {"int", "tuple", "none", "str"}
    assert all(isinstance(k, str) for k in event["odd"])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_dict_with_int_keys(server, make_handler, encoding):
    event = ship(
        server,
        make_handler,
        lambda log: log.info("keys", extra={"by_id": {1: "a", 2: "b"}}),
        encoding=encoding,
    )
    assert sorted(event["by_id"].values()) == ["a", "b"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_self_referencing_dict(server, make_handler, encoding):
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    cycle: list[Any] = [1]
    cycle.append(cycle)
    event = ship(
        server,
        make_handler,
        lambda log: log.info("cycles", extra={"loop": loop, "cycle": cycle}),
        encoding=encoding,
    )
    assert event["message"] == "cycles"
    assert event["loop"]["name"] == "loop"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_integers_the_encoding_cannot_hold(server, make_handler, encoding):
    huge = 2**64 + 5
    extra = {"huge": huge, "negative": -(2**70), "small": 42, "edge": 2**64 - 1}
    event = ship(server, make_handler, lambda log: log.info("ints", extra=extra), encoding=encoding)
    assert event["small"] == 42 and event["edge"] == 2**64 - 1
    assert event["huge"] in (huge, str(huge))
    assert event["negative"] in (-(2**70), str(-(2**70)))
    if encoding == "msgpack":
        assert event["huge"] == str(huge)


def test_a_batch_with_one_bad_event_loses_no_other_event(server, make_handler):
    h = make_handler(server.url(), encoding="msgpack")
    log = attach(h, "values")
    for i in range(50):
        extra = {"i": i, "big": 2**80} if i == 25 else {"i": i}
        log.info("event %d", i, extra=extra)
    assert h.flush(5)
    events = server.events()
    assert sorted(e["i"] for e in events) == list(range(50))
    assert len({e["uuid"] for e in events}) == 50


def test_format_arguments_that_do_not_match(server, make_handler):
    event = ship(server, make_handler, lambda log: log.info("%d items", "x"))
    assert "%d items" in event["message"]
    assert "x" in event["message"]


def test_too_few_format_arguments(server, make_handler):
    event = ship(server, make_handler, lambda log: log.info("%s and %s", "one"))
    assert "%s and %s" in event["message"]


def test_a_message_larger_than_capacity_bytes_is_truncated_and_delivered(server, make_handler):
    huge = "x" * 50_000
    h = make_handler(server.url(), capacity_bytes=2000)
    log = attach(h, "values")
    log.info("head %s", huge)
    assert h.flush(5)
    stats = h.stats()
    check_identity(stats)
    assert stats["truncated"] == 1 and stats["shipped"] == 1 and stats["dropped"] == 0
    (event,) = server.events()
    assert event["message"].startswith("head xxx")
    assert len(event["message"]) <= 2000


def huge_with_traceback(log) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("head %s", "x" * 50_000)


@pytest.mark.parametrize("overflow", ["drop_newest", "drop_oldest"])
def test_a_huge_message_with_a_traceback_is_truncated_and_delivered(server, make_handler, overflow):
    h = make_handler(server.url(), capacity_bytes=2000, overflow=overflow)
    log = attach(h, "values")
    huge_with_traceback(log)
    assert h.flush(5)
    stats = h.stats()
    check_identity(stats)
    assert stats["truncated"] == 1
    assert stats["shipped"] == 1 and stats["dropped"] == 0, stats
    (event,) = server.events()
    assert event["message"].startswith("head xxx")
    assert len(event["message"]) + len(event.get("exception", "")) <= 2000


def test_arguments_mutated_after_the_call_ship_the_value_at_call_time(server, make_handler):
    items = ["first"]
    state = {"step": 1}

    def log_then_mutate(log) -> None:
        log.info("items=%s state=%s", items, state)
        items.append("second")
        state["step"] = 2

    h = make_handler(server.url(), flush_interval=0.5)
    log = attach(h, "values")
    log_then_mutate(log)
    assert h.flush(5)
    (event,) = server.events()
    assert event["message"] == "items=['first'] state={'step': 1}"


def test_a_handler_after_this_one_that_rewrites_the_record_changes_nothing_shipped(
    server, make_handler
):
    """A console handler whose formatter colours ``levelname`` in place (a common recipe)
    runs after ShipHandler, while the event waits in the ring: the event keeps the record's
    attributes as they were at the call."""

    class Colouring(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            record.levelname = f"\x1b[32m{record.levelname}\x1b[0m"
            record.name, record.funcName, record.lineno = "renamed", "elsewhere", -1

    h = make_handler(server.url(), flush_interval=0.5)
    log = attach(h, "values")
    log.addHandler(Colouring())
    log.warning("as it was")
    assert h.flush(5)
    (event,) = server.events()
    assert (event["level"], event["logger"]) == ("WARNING", "values")
    assert event["func"] != "elsewhere" and event["line"] > 0


def test_an_extra_naming_a_core_field_does_not_overwrite_it(server, make_handler):
    extra = {"uuid": "mine", "hostname": "spoofed", "level": "NOPE", "service": "kept"}
    event = ship(server, make_handler, lambda log: log.warning("collide", extra=extra))
    assert event["uuid"] != "mine" and event["hostname"] != "spoofed"
    assert event["level"] == "WARNING" and event["service"] == "kept"


def test_a_multi_line_message_and_traceback_stay_one_event(server, make_handler):
    def log_call(log) -> None:
        try:
            raise KeyError("line one\nline two")
        except KeyError:
            log.error("first line\nsecond line\nthird line", exc_info=True, stack_info=True)

    event = ship(server, make_handler, log_call)
    assert event["message"] == "first line\nsecond line\nthird line"
    assert "Traceback (most recent call last)" in event["exception"]
    assert "KeyError" in event["exception"]
    assert "Stack (most recent call last)" in event["stack"]


def test_a_hostile_record_attribute_does_not_lose_the_event(server, make_handler):
    class Exploding:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(name)

        def __repr__(self) -> str:
            raise RuntimeError("repr")

    event = ship(
        server, make_handler, lambda log: log.info("hostile", extra={"thing": Exploding()})
    )
    assert event["message"] == "hostile"


def test_recursion_limit_depth_values(server, make_handler):
    deep: Any = "bottom"
    for _ in range(min(5000, sys.getrecursionlimit() * 2)):
        deep = [deep]
    event = ship(server, make_handler, lambda log: log.info("deep", extra={"deep": deep}))
    assert event["message"] == "deep"
