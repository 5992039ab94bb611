"""The JSON fast path writes exactly the event the builder and the general encoder make.

Each record below goes through :class:`JsonEventWriter` and through
``EventBuilder.build`` plus ``Encoding.encode_event``; the two texts must
decode to the same event, key order included (only the uuid differs, as each
path makes its own). Records the fast path is meant to take are checked to
have taken it, so that a change which quietly sends everything down the
slow path shows up here rather than only in the benchmarks.
"""

from __future__ import annotations

import collections
import datetime
import json
import logging
import math
import uuid
from types import MappingProxyType
from typing import Any

import msgpack
import pytest

from logship.pure.batching import make_batches
from logship.pure.encoding import Encoding
from logship.pure.event import EventBuilder, dict_message
from logship.pure.eventjson import JsonEventWriter
from logship.pure.protocols.http import HttpEncoder
from logship.pure.snapshot import extras_of, resolve
from logship.ring import Item

LOGGER = logging.getLogger("bench.eventjson")


class Unrepresentable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class EarlyAttrRecord(logging.LogRecord):
    """A record class that sets an attribute of its own before logging's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.tenant = "acme"
        super().__init__(*args, **kwargs)


class Spy:
    """Encoding.encode_event, counting the events that took the general path."""

    def __init__(self, encoding: Encoding) -> None:
        self.encoding = encoding
        self.calls = 0

    def __call__(self, event: dict[str, Any]) -> bytes:
        self.calls += 1
        return self.encoding.encode_event(event)


def record(
    msg: Any = "user %s did %s", args: Any = (7, "thing"), **extra: Any
) -> logging.LogRecord:
    return LOGGER.makeRecord(LOGGER.name, logging.INFO, __file__, 42, msg, args, None, "fn", extra)


def item(
    rec: logging.LogRecord, exception: str | None = None, stack: str | None = None, context=None
) -> Item:
    """The ring item ``ShipHandler.emit`` would make of ``rec``."""
    payload = None
    if isinstance(rec.msg, dict) and not rec.args:
        fields, message, exception, stack = dict_message(rec.msg, exception, stack)
        payload = resolve(fields)[0]
    else:
        message = rec.getMessage()
    extras = extras_of(rec)[0]
    return Item(0, len(message), rec, message, exception, stack, context, extras, payload)


def both(items: list[Item], fields: dict[str, Any] | None = None, name: str = "json"):
    """Each item's bytes by the fast writer and by the general path; and the spy.

    The general path is given the fast one's timestamp and uuid, so the two
    must be the same bytes.
    """
    encoding = Encoding(name)
    builder = EventBuilder(fields or {})
    spy = Spy(encoding)
    writer = JsonEventWriter(builder, spy)
    spy.calls = 0  # the constructor encodes fields= once
    fast = writer.encode_many(items)
    general = []
    for it, raw in zip(items, fast, strict=True):
        event = json.loads(raw)
        built = builder.build_item(it, event["timestamp"], event["uuid"])
        general.append(encoding.encode_event(built))
    return fast, general, spy


def assert_same(fast: list[bytes], general: list[bytes]) -> None:
    assert fast == general
    for raw in fast:
        assert uuid.UUID(json.loads(raw)["uuid"]).version == 7


FAST_CASES = {
    "plain": lambda: item(record()),
    "no args": lambda: item(record("static text", ())),
    "quotes and control characters": lambda: item(record('say "hi"\\ \n\t\x00 %s', ("x",))),
    "non-ASCII": lambda: item(record("café ☕ %s", ("日本",))),
    "a lone surrogate": lambda: item(record("bad \ud800 text", ())),
    "scalar extras": lambda: item(
        record(request_id=12, user="ann", ok=True, nothing=None, ratio=0.25, big=2**80)
    ),
    "ones of every type": lambda: item(record(i=1, b=True, f=1.0, s="1", z=0, n=False)),
    "exception and stack": lambda: item(
        record(), exception='Traceback:\n  File "x"\nValueError: boom', stack="Stack:\n  here"
    ),
    "a non-ASCII extra key": lambda: item(record(clé="valeur")),
    # resolved at the call, on the application's thread: no longer unusual on the worker
    "a set and a datetime": lambda: item(
        record(tags={"only"}, when=datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc))
    ),
    "an object with a failing repr": lambda: item(record(thing=Unrepresentable())),
    "a str subclass": lambda: item(record(level_name=type("S", (str,), {})("sub"))),
    "bound context": lambda: item(
        record(request_id=3),
        context=MappingProxyType({"trace": "t1", "n": 2, "ok": False, "r": 0.5, "x": None}),
    ),
}

SLOW_CASES = {
    "nested extras": lambda: item(record(payload={"a": [1, 2, {"b": None}]}, tags=("x", "y"))),
    "NaN and infinities": lambda: item(record(nan=math.nan, inf=math.inf, ninf=-math.inf)),
    "a non-string extra key": lambda: item(_with_key(record(), 1, "one")),
    "a core-field extra": lambda: item(record(level="mine")),
    "a core-field extra and its prefixed name": lambda: item(
        record(**{"line": 1, "extra_line": 2})
    ),
    "bound context with a nested value": lambda: item(
        record(), context=MappingProxyType({"trace": "t1", "tags": ["a"]})
    ),
    "bound context with NaN": lambda: item(record(), context=MappingProxyType({"r": math.nan})),
    "bound context and an extra= of the same key": lambda: item(
        record(trace="mine"), context=MappingProxyType({"trace": "t1"})
    ),
    "a dict message": lambda: item(
        record({"event": "did %s", "positional_args": ("x",), "k": 1}, ())
    ),
    "a dict subclass message": lambda: item(record(collections.OrderedDict(event="ordered"), ())),
    "an attribute set before logging's (and no function name)": lambda: item(
        EarlyAttrRecord("n", logging.INFO, __file__, 1, "early", (), None)
    ),
    "no thread name and no pid": lambda: item(_set(record(), threadName=None, process=None)),
    "a bool pid": lambda: item(_set(record(), process=True)),
    "a level name that is not a string": lambda: item(_set(record(), levelname=25)),
}


def _set(rec: logging.LogRecord, **attrs: Any) -> logging.LogRecord:
    for k, v in attrs.items():
        setattr(rec, k, v)
    return rec


def _with_key(rec: logging.LogRecord, key: Any, value: Any) -> logging.LogRecord:
    rec.__dict__[key] = value
    return rec


@pytest.mark.parametrize("case", FAST_CASES)
def test_fast_path_matches_the_builder(case):
    fast, general, spy = both([FAST_CASES[case]()])
    assert_same(fast, general)
    assert spy.calls == 0, "the fast path should have taken this record"


@pytest.mark.parametrize("case", SLOW_CASES)
def test_unusual_records_match_the_builder(case):
    fast, general, spy = both([SLOW_CASES[case]()])
    assert_same(fast, general)
    assert spy.calls == 1, "this record should have taken the general path"


def test_a_mixed_batch_keeps_its_order():
    cases = [*FAST_CASES.values(), *SLOW_CASES.values()] * 3
    items = [make() for make in cases]
    fast, general, _spy = both(items)
    assert_same(fast, general)
    uuids = [json.loads(raw)["uuid"] for raw in fast]
    assert uuids == sorted(uuids) and len(set(uuids)) == len(uuids)


@pytest.mark.parametrize(
    "fields", [{"service": "billing"}, {"service": "billing", "shard": 3, "tags": ["a", "b"]}]
)
def test_fields_match_the_builder(fields):
    fast, general, spy = both(
        [item(record(request_id=1)), item(record(service="override"))], fields
    )
    assert_same(fast, general)
    assert spy.calls == 1  # only the record whose extra= overrides a field
    assert json.loads(fast[1])["service"] == "override"


def test_a_context_key_that_is_a_field_takes_the_builder():
    context = MappingProxyType({"service": "from-context", "trace": "t"})
    fast, general, spy = both(
        [item(record(), context=context), item(record(), context=MappingProxyType({"t": 1}))],
        {"service": "billing"},
    )
    assert_same(fast, general)
    assert spy.calls == 1  # the first only: its context replaces a field in place
    assert json.loads(fast[0])["service"] == "from-context"


def test_one_context_shared_by_many_events_is_written_once():
    context = MappingProxyType({"request_id": "r-1"})
    items = [item(record(i=i), context=context) for i in range(5)]
    builder = EventBuilder({})
    encoding = Encoding("json")
    writer = JsonEventWriter(builder, Spy(encoding))
    fast = writer.encode_many(items)
    assert [json.loads(raw)["request_id"] for raw in fast] == ["r-1"] * 5
    assert list(writer._contexts) == [id(context)]


def test_ndjson_uses_the_same_writer():
    fast, general, spy = both([item(record(request_id=5))], name="ndjson")
    assert_same(fast, general)
    assert spy.calls == 0


def test_the_caches_stay_correct_when_cleared_and_refilled():
    """Past the bound the caches are cleared (at the next batch) and filled again.

    Values that compare equal across types (True and 1, 1.0 and 1, a str
    subclass and a str) must never find each other's cached text.
    """
    encoding = Encoding("json")
    builder = EventBuilder({})
    writer = JsonEventWriter(builder, encoding.encode_event)
    first = []
    for i in range(5000):
        rec = record(request_id=i)
        rec.name, rec.threadName = f"svc.{i}", f"worker-{i}"
        first.append(item(rec))
    writer.encode_many(first)
    assert len(writer._fragments) >= 4096
    tricky = [
        item(_set(record(), process=1)),
        item(_set(record(), process=True)),
        item(_set(record(), process=1.0)),
        item(_set(record(), lineno=True)),
        item(_set(record(), name=type("Name", (str,), {})(LOGGER.name))),
    ]
    for batch in ([first[0], *tricky], [*tricky, first[1]]):
        fast = writer.encode_many(batch)
        assert len(writer._fragments) < 4096  # cleared at the start of the batch
        for raw, it in zip(fast, batch, strict=True):
            event = json.loads(raw)
            built = builder.build_item(it, event["timestamp"], event["uuid"])
            assert raw == encoding.encode_event(built)


def unreadable(rec: logging.LogRecord, attr: str) -> logging.LogRecord:
    """``rec``, made (after ``__init__``, which reads some attributes) to raise on ``attr``."""

    def fail(self: Any) -> Any:
        raise RuntimeError(f"no {attr}")

    prop = property(fail, lambda self, value: None)
    rec.__class__ = type("Unreadable", (logging.LogRecord,), {attr: prop})
    return rec


def test_a_record_that_cannot_be_read_still_yields_an_event():
    rec = unreadable(record("still here", ()), "levelname")
    writer = JsonEventWriter(EventBuilder({}), Encoding("json").encode_event)
    (event,) = [json.loads(b) for b in writer.encode_many([item(rec)])]
    assert event["message"] == "still here" and "build_error" in event


@pytest.mark.parametrize("name", ["json", "msgpack"])
def test_an_event_that_cannot_be_encoded_at_all_yields_a_fallback_event(name):
    """An integer too long to write as text (over 4300 digits) fails even the cleaned retry."""
    items = [item(record("before", ())), item(record("huge", (), big=10**5000, request_id=2))]
    items.append(item(record("after", ())))
    encoding = Encoding(name)
    bodies = HttpEncoder(name, False, EventBuilder({})).units(items)
    events = encoding.decode(encoding.join(bodies))
    assert [e["message"] for e in events] == ["before", "huge", "after"]
    assert events[1]["big"] == "<int of 16610 bits>"


@pytest.mark.parametrize("name", ["json", "msgpack"])
def test_a_key_no_encoding_could_write_is_made_text_at_the_call(name):
    """A mapping key too long to write as text (it cost its event, once)."""
    items = [item(record("bad key", (), payload={10**5000: 1})), item(record("after", ()))]
    encoding = Encoding(name)
    bodies = HttpEncoder(name, False, EventBuilder({})).units(items)
    events = encoding.decode(encoding.join(bodies))
    assert [e["message"] for e in events] == ["bad key", "after"]
    assert events[0]["payload"] == {"<int of 16610 bits>": 1}


# -- bodies: events encoded one by one, then joined ------------------------------------


@pytest.mark.parametrize("name", ["json", "ndjson", "msgpack"])
def test_a_joined_body_decodes_to_the_events(name):
    encoding = Encoding(name)
    events = [{"message": f"m{i}", "n": i, "nested": {"a": [i]}} for i in range(20)]
    assert encoding.decode(encoding.encode(events)) == events


def test_a_joined_msgpack_body_is_the_packed_list():
    encoding = Encoding("msgpack")
    for n in (0, 1, 15, 16, 70_000):
        events = [{"i": i} for i in range(n)]
        assert encoding.encode(events) == msgpack.packb(events, use_bin_type=True)


@pytest.mark.parametrize("name", ["json", "ndjson", "msgpack"])
def test_batches_are_cut_at_max_bytes_in_order(name):
    encoding = Encoding(name)
    units = [encoding.encode_event({"message": "x" * (i % 50), "i": i}) for i in range(300)]
    units.insert(100, encoding.encode_event({"message": "y" * 5000, "i": -1}))  # alone too big
    batches = make_batches(units, HttpEncoder(name, False), 2000)
    assert sum(b.count for b in batches) == len(units)
    decoded = [e for b in batches for e in encoding.decode(b.body)]
    assert decoded == [encoding.decode(encoding.join([u]))[0] for u in units]
    for b in batches:
        assert len(b.body) <= 2000 or b.count == 1
        assert b.raw_size == len(b.body)


@pytest.mark.parametrize("name", ["json", "msgpack"])
def test_a_record_with_an_unusable_created_time_costs_only_its_own_time(name):
    odd = [unreadable(record("raises", ()), "created")]
    for value in ("soon", math.nan, math.inf, 1e300, -5.0):
        odd.append(_set(record("odd %s", (value,)), created=value))
    items = [item(record("before", ())), *map(item, odd), item(record("after", ()))]
    encoding = Encoding(name)
    builder = EventBuilder({})
    if name == "json":
        bodies = JsonEventWriter(builder, encoding.encode_event).encode_many(items)
    else:
        bodies = [encoding.encode_event(e) for e in builder.build_many(items)]
    events = encoding.decode(encoding.join(bodies))
    assert [e["message"] for e in events] == [i.message for i in items]
    assert all(e["timestamp"].startswith("20") for e in events)


def test_extra_values_are_taken_at_the_call():
    tags = ["a"]
    config = {"depth": 1}
    it = item(record(tags=tags, config=config))
    tags.append("b")  # later changes by the application are not seen
    config["depth"] = 2
    (fast,) = JsonEventWriter(EventBuilder({}), Encoding("json").encode_event).encode_many([it])
    event = json.loads(fast)
    assert event["tags"] == ["a"] and event["config"] == {"depth": 1}
