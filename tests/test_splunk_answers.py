"""``protocol="splunk"`` against a small HEC written from Splunk's documentation.

Fluent Bit's ``splunk`` input never refuses part of a request, is never busy
and keeps no index list, so the answers a real HEC gives for those are tested
against :class:`FakeHec`, which follows "Troubleshoot HTTP Event Collector"
and "Format events for HTTP Event Collector":

- HEC reads a request's envelopes one after another and stops at the first
  it cannot take, answering 400 with its ``code`` and the zero-based
  ``invalid-event-number``; the envelopes before it are indexed;
- ``code`` 6 "Invalid data format", 7 "Incorrect index" (an index the token
  may not write to), 9 "Server is busy" (503), 10 "Data channel is missing"
  (a token with indexer acknowledgement, without ``X-Splunk-Request-Channel``),
  12 "Event field is required", 13 "Event field cannot be blank";
- 401 code 2 without a token, 403 code 4 for a wrong one.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from logship.cli import main
from logship.cli.spillinspect import read_dead_letters

from conftest import attach, check_identity, require_held
from faultserver import Action, FaultServer, Request, status

TOKEN = "hec-0f3e"
SUCCESS = {"text": "Success", "code": 0}
BUSY = {"text": "Server is busy", "code": 9}


class FakeHec(FaultServer):
    """HEC's event endpoint. A scripted action (``then``) answers a request instead."""

    def __init__(self) -> None:
        super().__init__()
        self.indexed: list[dict[str, Any]] = []  # envelopes taken, in order
        self.taken: list[list[dict[str, Any]]] = []  # by request answered by respond
        #: the envelope HEC cannot take: ``(code, text)``, or None to take it
        self.refuse: Callable[[dict[str, Any]], tuple[int, str] | None] = lambda env: None
        self.indexes: set[str] | None = None  # the token's allowed indexes (None: any)
        self.needs_channel = False  # indexer acknowledgement on for the token
        self.busy_at: int | None = None  # once: index this many envelopes, then say busy

    def respond(self, path: str, headers: dict[str, str], wire: bytes) -> Action:
        """Index what the request holds, as HEC does, and answer with HEC's JSON."""
        taken: list[dict[str, Any]] = []
        code, body, extra = self._index(path, headers, wire, taken)
        with self.cond:
            self.indexed.extend(taken)
            self.taken.append(taken)
        return Action(
            "status", code, {"Content-Type": "application/json", **extra}, json.dumps(body).encode()
        )

    def _index(
        self, path: str, headers: dict[str, str], wire: bytes, taken: list[dict[str, Any]]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if path != "/services/collector/event":
            return 404, {"text": "Not Found"}, {}
        auth = headers.get("Authorization", "")
        if not auth:
            return 401, {"text": "Token is required", "code": 2}, {}
        if auth != f"Splunk {TOKEN}":
            return 403, {"text": "Invalid token", "code": 4}, {}
        if self.needs_channel and "X-Splunk-Request-Channel" not in headers:
            return 400, {"text": "Data channel is missing", "code": 10}, {}
        text = (
            gzip.decompress(wire) if headers.get("Content-Encoding") == "gzip" else wire
        ).decode()
        decoder, at, n = json.JSONDecoder(), 0, 0
        while at < len(text.rstrip()):
            failed = {"invalid-event-number": n}
            if n == self.busy_at:
                self.busy_at = None
                return 503, {**BUSY, **failed}, {"Retry-After": "1"}
            try:
                envelope, at = decoder.raw_decode(text, at)
            except ValueError:
                return 400, {"text": "Invalid data format", "code": 6, **failed}, {}
            if "event" not in envelope:
                return 400, {"text": "Event field is required", "code": 12, **failed}, {}
            if envelope["event"] in ("", {}):
                return 400, {"text": "Event field cannot be blank", "code": 13, **failed}, {}
            if self.indexes is not None and envelope.get("index", "main") not in self.indexes:
                return 400, {"text": "Incorrect index", "code": 7, **failed}, {}
            refused = self.refuse(envelope)
            if refused is not None:
                return 400, {"text": refused[1], "code": refused[0], **failed}, {}
            taken.append(envelope)
            n += 1
        if n == 0:
            return 400, {"text": "No data", "code": 5}, {}
        return 200, SUCCESS, {}

    def messages(self) -> list[str]:
        with self.cond:
            return [e["event"]["message"] for e in self.indexed]

    def snapshot(self) -> list[Request]:
        with self.cond:
            return list(self.requests)


@pytest.fixture
def hec() -> Iterator[FakeHec]:
    """A fake HEC on 127.0.0.1, stopped after the test."""
    server = FakeHec().start()
    yield server
    server.stop()


def one_batch(log: Any, messages: list[str]) -> None:
    for m in messages:
        log.info(m)


def test_invalid_event_number_indexes_those_before_dead_letters_it_and_resends_the_rest(
    hec, make_handler, tmp_path, capsys
):
    hec.refuse = lambda env: (6, "Invalid data format") if env["event"]["message"] == "m4" else None
    h = make_handler(
        hec.url(""),
        protocol="splunk",
        token=TOKEN,
        spill_dir=str(tmp_path),
        batch_max_records=10,
        flush_interval=5.0,
    )
    log = attach(h)
    one_batch(log, [f"m{i}" for i in range(10)])  # full at 10: one request
    assert h.flush(10), h.stats()
    assert hec.messages() == [f"m{i}" for i in range(10) if i != 4]  # each once, in order
    first, second = hec.snapshot()
    assert (first.answered, second.answered) == (400, 200)
    assert [[e["event"]["message"] for e in taken] for taken in hec.taken] == [
        ["m0", "m1", "m2", "m3"],
        ["m5", "m6", "m7", "m8", "m9"],
    ]
    # the rest goes under a key derived from the batch's
    assert second.headers["Idempotency-Key"].startswith(first.headers["Idempotency-Key"] + ".")
    stats = h.stats()
    assert stats["shipped"] == 9 and stats["rejected"] == 1 and stats["dropped"] == 0
    check_identity(stats)
    (letter,) = read_dead_letters(str(tmp_path)).batches
    assert [e["message"] for e in letter.events or ()] == ["m4"]
    assert letter.status == 400 and '"invalid-event-number": 4' in letter.reason
    assert main(["spill", "status", "--dir", str(tmp_path), "--dead-letters"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    printed = json.loads(line)
    assert printed["event"]["message"] == "m4" and printed["status"] == 400


def test_busy_is_retried_after_retry_after_with_the_same_bytes(hec, make_handler):
    hec.then(status(503, json.dumps(BUSY).encode(), Retry_After="1"))
    h = make_handler(hec.url(""), protocol="splunk", token=TOKEN)
    one_batch(attach(h), [f"b{i}" for i in range(5)])
    assert h.flush(10), h.stats()
    busy, retry = hec.snapshot()
    assert (busy.answered, retry.answered) == (503, 200)
    assert retry.wire == busy.wire  # the body as it was built, under the same key
    assert retry.headers["Idempotency-Key"] == busy.headers["Idempotency-Key"]
    assert hec.messages() == [f"b{i}" for i in range(5)]
    stats = h.stats()
    assert stats["retries"] == 1 and stats["shipped"] == 5 and stats["rejected"] == 0
    check_identity(stats)


def test_busy_honours_retry_after_beyond_the_back_off(hec, make_handler):
    hec.then(status(503, json.dumps(BUSY).encode(), Retry_After="1"))
    h = make_handler(hec.url(""), protocol="splunk", token=TOKEN, retry_max_backoff=0.1)
    one_batch(attach(h), ["late"])
    assert h.flush(10), h.stats()
    busy, retry = hec.snapshot()
    assert retry.arrived - busy.arrived >= 0.9  # the back-off alone would be 0.1 s


def test_busy_part_way_keeps_what_was_indexed_and_resends_only_the_rest(hec, make_handler):
    hec.busy_at = 3
    h = make_handler(
        hec.url(""), protocol="splunk", token=TOKEN, batch_max_records=8, flush_interval=5.0
    )
    one_batch(attach(h), [f"p{i}" for i in range(8)])
    assert h.flush(10), h.stats()
    assert hec.messages() == [f"p{i}" for i in range(8)]  # none twice
    busy, rest = hec.snapshot()
    assert (busy.answered, rest.answered) == (503, 200)
    assert [len(taken) for taken in hec.taken] == [3, 5]
    stats = h.stats()
    assert stats["shipped"] == 8 and stats["retries"] == 1 and stats["rejected"] == 0
    check_identity(stats)


def test_a_400_is_rejected_and_dead_lettered_not_resent(hec, make_handler, tmp_path):
    hec.needs_channel = True
    h = make_handler(hec.url(""), protocol="splunk", token=TOKEN, spill_dir=str(tmp_path))
    one_batch(attach(h), [f"c{i}" for i in range(4)])
    assert h.flush(10), h.stats()
    (refused,) = hec.snapshot()  # never sent again
    assert refused.answered == 400 and hec.indexed == []
    stats = h.stats()
    assert stats["rejected"] == 4 and stats["retries"] == 0 and stats["pending"] == 0
    check_identity(stats)
    (letter,) = read_dead_letters(str(tmp_path)).batches
    assert len(letter.events or ()) == 4 and "Data channel is missing" in letter.reason

    # what the answer says to do: a channel on every request
    channel = {"X-Splunk-Request-Channel": "0e9c1b4e-3c8f-4a5e-9d0c-6a1b2c3d4e5f"}
    h2 = make_handler(hec.url(""), protocol="splunk", token=TOKEN, headers=channel)
    one_batch(attach(h2, "app2"), ["with a channel"])
    assert h2.flush(10) and hec.messages() == ["with a channel"]


def test_an_index_the_token_may_not_use_rejects_the_batch_in_one_request(
    hec, make_handler, tmp_path
):
    hec.indexes = {"main", "payments"}
    h = make_handler(
        hec.url(""),
        protocol="splunk",
        token=TOKEN,
        index="audit",
        spill_dir=str(tmp_path),
        batch_max_records=6,
        flush_interval=5.0,
    )
    one_batch(attach(h), [f"i{i}" for i in range(6)])
    assert h.flush(10), h.stats()
    (refused,) = hec.snapshot()  # not one request per event
    assert refused.answered == 400
    stats = h.stats()
    assert stats["rejected"] == 6 and stats["shipped"] == 0
    check_identity(stats)
    h2 = make_handler(hec.url(""), protocol="splunk", token=TOKEN, index="payments")
    one_batch(attach(h2, "app2"), ["allowed"])
    assert h2.flush(10) and hec.indexed[-1]["index"] == "payments"


def test_a_wrong_token_holds_and_no_token_holds(hec, make_handler):
    for token in ("wrong", None):
        h = make_handler(hec.url(""), protocol="splunk", token=token, shutdown_timeout=0.5)
        one_batch(attach(h), ["kept"])
        require_held(h, "http-403" if token else "http-401", 1)
    assert hec.indexed == []


def test_logship_check_names_what_hec_codes_mean(hec, capsys):
    hec.needs_channel = True
    assert main(["check", hec.url(""), "--protocol", "splunk", "--token", TOKEN]) == 1
    out = capsys.readouterr().out
    assert "indexer acknowledgement" in out and "X-Splunk-Request-Channel" in out
    hec.needs_channel = False
    hec.then(status(503, json.dumps(BUSY).encode()))
    assert main(["check", hec.url(""), "--protocol", "splunk", "--token", TOKEN]) == 0
    out = capsys.readouterr().out
    assert "HEC is busy" in out and "WARN" in out
    assert main(["check", hec.url(""), "--protocol", "splunk", "--token", TOKEN]) == 0
    (request,) = [r for r in hec.snapshot() if r.answered == 200]
    assert request.path == "/services/collector/event"
    assert request.headers["Authorization"] == f"Splunk {TOKEN}"
