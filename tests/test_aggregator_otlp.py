"""``protocol="otlp"`` into a real Fluent Bit's ``opentelemetry`` input.

The ``file`` output's ``plain`` format shows only a log record's body (as
``log``); a ``stdout`` output with ``format json_lines`` also prints, under
``__internal__``, the group's resource and scope and each record's OTLP
metadata (attributes, severity, ids), which these tests read from Fluent
Bit's log. Fluent Bit prints ``traceId``/``spanId`` as raw bytes, so only
their presence is checked here; their form is checked against the fake in
``test_delivery_otlp.py``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from conftest import attach, check_identity, require
from fluentbit import FluentBit

STDOUT = "\n[OUTPUT]\n    name stdout\n    match *\n    format json_lines\n"


def otel_input(**settings: str) -> list[dict[str, str]]:
    return [{"name": "opentelemetry", "listen": "127.0.0.1", "port": "{port}", **settings}]


def printed(fb: FluentBit, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Wait until the stdout output printed ``n`` records; return them, each made flat.

    A record: its body (``log``), ``date``, the group's ``resource`` attributes
    and ``scope``, and the record's ``otlp`` metadata.
    """
    deadline = time.monotonic() + timeout
    while True:
        out = []
        for line in fb.log.read_text(errors="replace").splitlines():
            if not line.startswith('{"date"'):
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # a line still being written
            internal = doc.get("__internal__", {})
            group = internal.get("group_attributes", {})
            out.append(
                {
                    "log": doc.get("log"),
                    "date": doc.get("date"),
                    "resource": group.get("resource", {}).get("attributes", {}),
                    "scope": group.get("scope", {}).get("name"),
                    **internal.get("log_metadata", {}).get("otlp", {}),
                }
            )
        if len(out) >= n or time.monotonic() > deadline:
            assert len(out) >= n, f"Fluent Bit printed {len(out)} records, not {n}: {fb.log_text()}"
            return out
        threading.Event().wait(0.05)


@pytest.fixture
def otel_fluent_bit(fluent_bit: Any) -> Any:
    """Makes Fluent Bits with an ``opentelemetry`` input (``settings`` added) and both outputs."""

    def make(**settings: str) -> FluentBit:
        fb: FluentBit = fluent_bit(otel_input(**settings), extra=STDOUT)
        return fb

    return make


@pytest.mark.parametrize("compress", [True, False])
def test_every_event_reaches_fluent_bits_opentelemetry_input(
    otel_fluent_bit, make_handler, compress
):
    fb = otel_fluent_bit()
    h = make_handler(
        f"http://127.0.0.1:{fb.port}",
        protocol="otlp",
        compress=compress,
        fields={"service": "billing", "env": "prod"},
    )
    log = attach(h)
    for i in range(500):
        log.info("event %d", i, extra={"i": i})
    assert h.flush(10), h.stats()
    bodies = fb.wait_for(500, key="log")
    assert sorted(int(r["log"].split()[1]) for r in bodies) == list(range(500))
    records = printed(fb, 500)
    assert sorted(r["attributes"]["i"] for r in records) == list(range(500))
    assert len({r["attributes"]["log.record.uid"] for r in records}) == 500
    for r in records:
        assert r["resource"]["service.name"] == "billing"
        assert {"host.name", "os.type", "os.version"} <= set(r["resource"])
        assert r["scope"] == "app"
        assert (r["severity_number"], r["severity_text"]) == (9, "INFO")
        assert r["attributes"]["env"] == "prod" and r["attributes"]["code.line.number"] > 0
        assert r["observed_timestamp"] >= r["date"] * 1e9 - 1e3
    stats = h.stats()
    assert stats["shipped"] == 500 and stats["rejected"] == 0
    check_identity(stats)


def test_levels_exceptions_ids_and_scopes_arrive(otel_fluent_bit, make_handler):
    fb = otel_fluent_bit()
    h = make_handler(f"http://127.0.0.1:{fb.port}/v1/logs", protocol="otlp")
    app, db = attach(h, "app"), attach(h, "app.db")
    app.warning("héllo\nsecond line 😀", extra={"trace_id": "ab" * 16, "span_id": "cd" * 8})
    try:
        raise KeyError("missing")
    except KeyError:
        db.exception("lookup failed")
    db.log(15, "between levels", extra={"row": {"id": 7}, "tags": ["a", "b"]})
    assert h.flush(10), h.stats()
    by_body = {r["log"]: r for r in printed(fb, 3)}
    warned = by_body["héllo\nsecond line 😀"]
    assert (warned["scope"], warned["severity_number"], warned["severity_text"]) == (
        "app",
        13,
        "WARN",
    )
    assert "trace_id" in warned and "span_id" in warned  # raw bytes in Fluent Bit's record
    assert "trace_id" not in warned["attributes"]
    failed = by_body["lookup failed"]
    assert (failed["scope"], failed["severity_number"]) == ("app.db", 17)
    assert failed["attributes"]["exception.type"] == "KeyError"
    assert failed["attributes"]["exception.message"] == "'missing'"
    assert failed["attributes"]["exception.stacktrace"].startswith("Traceback")
    between = by_body["between levels"]
    assert (between["severity_number"], between["severity_text"]) == (8, "Level 15")
    assert between["attributes"]["row"] == {"id": 7} and between["attributes"]["tags"] == ["a", "b"]
    check_identity(h.stats())


def test_fluent_bits_413_splits_the_batch_and_every_event_arrives(otel_fluent_bit, make_handler):
    fb = otel_fluent_bit(buffer_max_size="32K")
    big = {
        "resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "x" * 40_000}}]}]}]
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{fb.port}/v1/logs",
        json.dumps(big).encode(),
        {"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    require(refused.value.code == 413, f"Fluent Bit answered {refused.value.code} to 40 KB")
    h = make_handler(
        f"http://127.0.0.1:{fb.port}", protocol="otlp", compress=False, flush_interval=2.0
    )
    log = attach(h)
    for i in range(200):
        log.info("sized %d %s", i, "z" * 200)  # about 170 KB in one batch: over 32K
    assert h.flush(20), h.stats()
    bodies = fb.wait_for(200, key="log")
    assert sorted(int(r["log"].split()[1]) for r in bodies) == list(range(200))
    stats = h.stats()
    assert stats["shipped"] == 200 and stats["rejected"] == 0 and stats["dropped"] == 0
    check_identity(stats)


def test_a_custom_level_name_is_the_severity_text(otel_fluent_bit, make_handler):
    logging.addLevelName(25, "NOTICE")
    fb = otel_fluent_bit()
    h = make_handler(f"http://127.0.0.1:{fb.port}", protocol="otlp")
    attach(h).log(25, "noticed")
    assert h.flush(10)
    (record,) = printed(fb, 1)
    assert (record["severity_number"], record["severity_text"]) == (12, "NOTICE")
    check_identity(h.stats())
