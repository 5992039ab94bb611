"""``protocol="loki"`` against a small Loki push endpoint written from Loki's documentation.

There is no Loki here and Fluent Bit has no Loki input, so :class:`FakeLoki`
does what "Loki HTTP API" (``POST /loki/api/v1/push``), "Understand labels"
and "Multi-tenancy" say a push gets:

- a JSON body (``Content-Type: application/json``, gzip allowed) of streams,
  each with at least one label named ``[a-zA-Z_][a-zA-Z0-9_]*`` and values
  ``[<nanoseconds as a string>, <line>]``; anything else is a 400;
- 204 when it is stored; with multi-tenancy on (``auth_enabled: true``), a
  push without ``X-Scope-OrgID`` is a 401 "no org id";
- a line older than ``reject_old_samples_max_age`` is refused with a 400
  naming it, while the push's other lines are stored (Loki's ingester keeps
  the valid entries of a push it answers 400); an entry equal to one the
  stream holds (same time, same line) is stored once.
"""

from __future__ import annotations

import calendar
import gzip
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from logship.cli import main
from logship.cli.spillinspect import read_dead_letters

from conftest import attach, check_identity, require_held, require_within, wait_until
from faultserver import Action, FaultServer, status

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
WEEK_NS = 7 * 24 * 3600 * 10**9


class FakeLoki(FaultServer):
    """Loki's push endpoint. A scripted action (``then``) answers a request instead."""

    def __init__(self) -> None:
        super().__init__()
        self.multi_tenant = False
        #: (tenant, labels) to entries, in the order stored
        self.streams: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[int, str]]] = {}
        self.pushes: list[dict[str, Any]] = []  # every push body that parsed

    def respond(self, path: str, headers: dict[str, str], wire: bytes) -> Action:
        if path != "/loki/api/v1/push":
            return status(404, b"404 page not found\n")
        tenant = headers.get("X-Scope-OrgID")
        if self.multi_tenant and not tenant:
            return status(401, b"no org id\n")
        if headers.get("Content-Type", "").split(";")[0] != "application/json":
            return status(400, b"snappy: corrupt input\n")  # read as protobuf
        try:
            raw = gzip.decompress(wire) if headers.get("Content-Encoding") == "gzip" else wire
            push = json.loads(raw)
            problem = self._store(tenant or "fake", push)
        except (OSError, ValueError, TypeError, KeyError) as e:
            return status(400, f"loghttp.PushRequest: {e}\n".encode())
        return status(400, problem.encode()) if problem else status(204)

    def _store(self, tenant: str, push: dict[str, Any]) -> str:
        """Store what is valid; return Loki's words for what is not ("" when all was)."""
        oldest = time.time_ns() - WEEK_NS
        valid = []
        for stream in push["streams"]:
            labels = stream["stream"]
            if not labels:
                raise ValueError("error at least one label pair is required per stream")
            for name, value in labels.items():
                if not (LABEL_NAME.fullmatch(name) and not name.startswith("__")):
                    raise ValueError(f"invalid label name {name!r}")
                if not isinstance(value, str):
                    raise TypeError(f"label {name} is not a string")
            for nanos, line in stream["values"]:
                if not (isinstance(nanos, str) and nanos.isdigit() and isinstance(line, str)):
                    raise TypeError(f"not an entry: {[nanos, line]!r}")
            valid.append(stream)
        with self.cond:
            self.pushes.append(push)
        refused = []
        for stream in valid:
            key = (tenant, tuple(sorted(stream["stream"].items())))
            for nanos, line in stream["values"]:
                if int(nanos) < oldest:
                    refused.append(f"entry for stream '{key[1]}' has timestamp too old: {nanos}")
                    continue
                with self.cond:
                    entries = self.streams.setdefault(key, [])
                    if (int(nanos), line) not in entries:
                        entries.append((int(nanos), line))
        return ",\n".join(refused)

    def events(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Every stored line, read back as an event."""
        with self.cond:
            return [json.loads(line) for v in self.streams.values() for _t, line in v]

    def labels_of(self) -> dict[str, dict[str, str]]:
        """Each stored event's stream labels, by the event's uuid."""
        with self.cond:
            return {
                json.loads(line)["uuid"]: dict(key[1])
                for key, v in self.streams.items()
                for _t, line in v
            }


@pytest.fixture
def loki() -> Iterator[FakeLoki]:
    """A fake Loki on 127.0.0.1, stopped after the test."""
    server = FakeLoki().start()
    yield server
    server.stop()


def nanos_of(stamp: str) -> int:
    """An event's RFC 3339 timestamp in nanoseconds, computed apart from logship's code."""
    seconds = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    return seconds * 10**9 + int(stamp[20:26]) * 1000


def test_events_are_pushed_in_streams_by_label_with_nanosecond_times(loki, make_handler):
    h = make_handler(
        loki.url(""),  # no path: /loki/api/v1/push
        protocol="loki",
        token="glc-abc",
        fields={"service": "billing", "env": "prod"},
        batch_max_records=50,
    )
    log = attach(h, "app.pay")
    for i in range(120):
        level = (logging.INFO, logging.WARNING, logging.ERROR)[i % 3]
        log.log(level, "event %d", i, extra={"i": i, "user": f"u{i}"})
    assert h.flush(10), h.stats()
    events = loki.events()
    assert sorted(e["i"] for e in events) == list(range(120))  # each once
    labels = loki.labels_of()
    for e in events:  # level and the keys of fields; the line is the whole event
        assert labels[e["uuid"]] == {"level": e["level"], "service": "billing", "env": "prod"}
        assert e["user"] == f"u{e['i']}" and e["logger"] == "app.pay"
    with loki.cond:
        stored = {k: list(v) for k, v in loki.streams.items()}
    assert len(stored) == 3  # INFO, WARNING, ERROR
    for entries in stored.values():
        for nanos, line in entries:
            assert nanos == nanos_of(json.loads(line)["timestamp"])
    for push in loki.pushes:  # within a push: one stream per label set, values in time order
        keys = [tuple(sorted(s["stream"].items())) for s in push["streams"]]
        assert len(keys) == len(set(keys))
        for s in push["streams"]:
            times = [int(t) for t, _line in s["values"]]
            assert times == sorted(times)
    (request, *_rest) = loki.requests
    assert request.path == "/loki/api/v1/push"
    assert request.headers["Authorization"] == "Bearer glc-abc"
    assert request.headers["Content-Encoding"] == "gzip"
    check_identity(h.stats())


def test_the_labels_option_chooses_the_stream_labels(loki, make_handler):
    h = make_handler(loki.url(""), protocol="loki", labels=["logger", "http.status"])
    log = attach(h, "api")
    log.info("ok", extra={"http.status": 200})
    log.info("missing", extra={"http.status": 404})
    log.info("no status")
    assert h.flush(10), h.stats()
    by_message = {e["message"]: loki.labels_of()[e["uuid"]] for e in loki.events()}
    assert by_message == {
        "ok": {"logger": "api", "http_status": "200"},
        "missing": {"logger": "api", "http_status": "404"},
        "no status": {"logger": "api"},
    }


def test_the_tenant_goes_in_x_scope_orgid_from_headers(loki, make_handler):
    loki.multi_tenant = True
    h = make_handler(loki.url(""), protocol="loki", headers={"X-Scope-OrgID": "team-a"})
    attach(h).info("for team a")
    assert h.flush(10), h.stats()
    assert {key[0] for key in loki.streams} == {"team-a"}


def test_without_a_tenant_loki_says_no_org_id_and_the_events_are_held(loki, make_handler):
    loki.multi_tenant = True
    h = make_handler(loki.url(""), protocol="loki", shutdown_timeout=0.5)  # held: no wait at close
    log = attach(h)
    for i in range(5):
        log.info("held %d", i)
    require_held(h, "http-401", 5)
    assert loki.streams == {}


def test_a_400_is_never_resent_and_its_batch_is_dead_lettered(loki, make_handler, tmp_path):
    old = time.time() - 8 * 24 * 3600  # older than Loki takes

    def age(record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("old"):
            record.created = old
        return True

    h = make_handler(
        loki.url(""),
        protocol="loki",
        spill_dir=str(tmp_path),
        batch_max_records=6,
        flush_interval=5.0,
    )
    log = attach(h)
    log.addFilter(age)
    for m in ("new 0", "old 1", "new 2", "new 3", "old 4", "new 5"):
        log.info(m)  # full at 6: one batch
    assert h.flush(10), h.stats()
    (refused,) = loki.requests  # never resent
    assert refused.answered == 400
    stats = h.stats()
    assert stats["rejected"] == 6 and stats["retries"] == 0 and stats["pending"] == 0
    check_identity(stats)
    (letter,) = read_dead_letters(str(tmp_path)).batches
    assert sorted(e["message"] for e in letter.events or ()) == [
        "new 0", "new 2", "new 3", "new 5", "old 1", "old 4",
    ]  # fmt: skip
    assert letter.status == 400 and "timestamp too old" in letter.reason
    # what Loki kept of that push: its valid lines (the dead letter holds them all)
    assert sorted(e["message"] for e in loki.events()) == ["new 0", "new 2", "new 3", "new 5"]


@pytest.mark.parametrize(
    "answer",
    [
        status(429, b"Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec)"),
        status(500, b"rpc error: code = Unavailable"),
        status(503, b"no healthy ingesters", Retry_After="0"),
    ],
)
def test_429_and_5xx_are_retried_with_the_same_timestamps_and_lines(loki, make_handler, answer):
    loki.then(answer, answer)
    h = make_handler(loki.url(""), protocol="loki", batch_max_records=10, flush_interval=5.0)
    log = attach(h)
    for i in range(10):
        log.warning("retried %d", i)
    assert h.flush(10), h.stats()
    first, second, third = loki.requests
    assert [r.answered for r in (first, second, third)] == [answer.status, answer.status, 204]
    assert first.wire == second.wire == third.wire  # the body as built: same times, same lines
    assert len({r.headers["Idempotency-Key"] for r in (first, second, third)}) == 1
    assert sorted(e["message"] for e in loki.events()) == sorted(f"retried {i}" for i in range(10))
    stats = h.stats()
    assert stats["retries"] == 2 and stats["shipped"] == 10 and stats["rejected"] == 0
    check_identity(stats)


def test_a_spilled_batch_is_replayed_with_the_bytes_first_sent(loki, make_handler, tmp_path):
    loki.then(*[status(500, b"ingester unavailable")] * 100)
    spill = str(tmp_path / "spill")
    first = make_handler(loki.url(""), protocol="loki", spill=True, spill_dir=spill)
    log = attach(first)
    for i in range(7):
        log.error("spilled %d", i)
    require_within(lambda: len(loki.requests) >= 2, what="a retried push")
    first.close()
    assert first.stats()["spilled"] == 7
    check_identity(first.stats())
    with loki.cond:
        loki.script.clear()
        refused = list(loki.requests)
    second = make_handler(loki.url(""), protocol="loki", spill=True, spill_dir=spill)
    assert wait_until(lambda: second.stats()["replayed"] == 7, 20), second.stats()
    replay = loki.requests[-1]
    assert replay.answered == 204
    assert replay.wire == refused[0].wire
    assert replay.headers["Idempotency-Key"] == refused[0].headers["Idempotency-Key"]
    assert sorted(e["message"] for e in loki.events()) == sorted(f"spilled {i}" for i in range(7))
    check_identity(second.stats())


def test_logship_check_pushes_its_test_event_and_names_the_missing_tenant(loki, capsys):
    loki.multi_tenant = True
    assert main(["check", loki.url(""), "--protocol", "loki"]) == 1
    out = capsys.readouterr().out
    assert "X-Scope-OrgID" in out and "multi-tenant" in out
    argv = ["check", loki.url(""), "--protocol", "loki", "--header", "X-Scope-OrgID: ops"]
    assert main(argv) == 0, capsys.readouterr().out
    (event,) = loki.events()
    assert event["logship_check"] is True and event["logger"] == "logship.check"
    assert {key[0] for key in loki.streams} == {"ops"}
