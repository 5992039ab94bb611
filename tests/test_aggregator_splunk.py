"""``protocol="splunk"`` into a real Fluent Bit's ``splunk`` input (its HEC endpoint).

The input answers 200 ``{"text":"Success","code":0}``, 403 for a wrong token
and 401 for none (``/work/shared/aggregators/README.md``), and keeps each
envelope whole as one record: ``{"time", "host", "source", "sourcetype",
"event"}``.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pytest

from logship.cli import main

from conftest import attach, check_identity, require_held, require_within, wait_until

TOKEN = "hec-7d1f0c2a9b"


def splunk_input(fluent_bit: Any) -> Any:
    return fluent_bit(
        [{"name": "splunk", "listen": "127.0.0.1", "port": "{port}", "splunk_token": TOKEN}]
    )


def envelopes(fb: Any, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Wait until ``n`` distinct events were written; every envelope written."""

    def uuids() -> set[Any]:
        return {r["event"].get("uuid") for r in fb.records() if isinstance(r.get("event"), dict)}

    require_within(lambda: len(uuids()) >= n, timeout, f"{n} events in Fluent Bit")
    return [r for r in fb.records() if isinstance(r.get("event"), dict)]


def test_every_event_reaches_fluent_bits_splunk_input_once(fluent_bit, make_handler):
    fb = splunk_input(fluent_bit)
    h = make_handler(
        f"http://127.0.0.1:{fb.port}",  # no path: /services/collector/event
        protocol="splunk",
        token=TOKEN,
        fields={"service": "billing"},
        sourcetype="app:json",
        batch_max_records=100,
    )
    log = attach(h, "app.pay")
    for i in range(500):
        log.info("event %d", i, extra={"i": i})
    assert h.flush(10), h.stats()
    found = envelopes(fb, 500)
    assert len(found) == 500  # each once
    assert sorted(r["event"]["i"] for r in found) == list(range(500))
    first = found[0]
    assert first["host"] == first["event"]["hostname"]
    assert first["source"] == "app.pay" and first["sourcetype"] == "app:json"
    assert "index" not in first  # the token's default index
    assert {r["event"]["service"] for r in found} == {"billing"}
    for r in found:  # epoch seconds, to the microsecond of the event's timestamp
        stamp = dt.datetime.fromisoformat(r["event"]["timestamp"].replace("Z", "+00:00"))
        assert abs(r["time"] - stamp.timestamp()) < 1e-6
    stats = h.stats()
    assert stats["shipped"] == 500 and stats["rejected"] == 0 and stats["retries"] == 0
    check_identity(stats)


def write_token(path: Any, token: str, when: float) -> None:
    path.write_text(token + "\n")
    os.chmod(path, 0o600)
    os.utime(path, (when, when))  # a change the token file's reader cannot miss


def test_a_wrong_token_holds_the_events_until_the_token_is_right(
    fluent_bit, make_handler, tmp_path
):
    fb = splunk_input(fluent_bit)
    token_file = tmp_path / "hec-token"
    write_token(token_file, "not-the-token", 1_000_000)
    h = make_handler(f"http://127.0.0.1:{fb.port}", protocol="splunk", token_file=str(token_file))
    log = attach(h)
    for i in range(20):
        log.warning("held %d", i)
    require_held(h, "http-403", 20)
    assert fb.records() == []

    write_token(token_file, TOKEN, 2_000_000)  # held batches are retried at the ceiling
    found = envelopes(fb, 20)
    assert sorted(r["event"]["message"] for r in found) == sorted(f"held {i}" for i in range(20))
    assert h.flush(10)
    stats = h.stats()
    assert stats["shipped"] == 20 and stats["dropped"] == 0 and stats["rejected"] == 0
    check_identity(stats)


def test_events_spilled_under_a_wrong_token_are_replayed_by_the_next_handler(
    fluent_bit, make_handler, tmp_path
):
    fb = splunk_input(fluent_bit)
    url = f"http://127.0.0.1:{fb.port}"
    spill = str(tmp_path / "spill")
    first = make_handler(url, protocol="splunk", token="wrong", spill=True, spill_dir=spill)
    log = attach(first)
    for i in range(30):
        log.error("kept %d", i)
    require_within(lambda: first.stats()["last_error_kind"] == "http-403", what="a 403")
    first.close()
    stats = first.stats()
    assert stats["spilled"] == 30 and stats["dropped"] == 0 and stats["shipped"] == 0
    check_identity(stats)

    second = make_handler(url, protocol="splunk", token=TOKEN, spill=True, spill_dir=spill)
    # a handler whose spill folder holds batches starts at once, to replay them
    assert wait_until(lambda: second.stats()["replayed"] >= 30, 20), second.stats()
    found = envelopes(fb, 30)
    kept = [r for r in found if r["event"]["message"].startswith("kept")]
    assert sorted(r["event"]["message"] for r in kept) == sorted(f"kept {i}" for i in range(30))
    assert second.flush(10)
    check_identity(second.stats())


@pytest.mark.parametrize("token, verdict", [(TOKEN, "PASS"), ("wrong", "FAIL")])
def test_logship_check_sends_its_test_event_as_an_envelope(fluent_bit, capsys, token, verdict):
    fb = splunk_input(fluent_bit)
    code = main(["check", f"http://127.0.0.1:{fb.port}", "--protocol", "splunk", "--token", token])
    out = capsys.readouterr().out
    post = next(line for line in out.splitlines() if line.strip().startswith("POST"))
    assert post.split()[1] == verdict, out
    assert token not in out
    if verdict == "PASS":
        assert code == 0
        (record,) = envelopes(fb, 1)
        assert record["source"] == "logship.check" and record["event"]["logship_check"] is True
        assert record["event"]["uuid"] in post
    else:
        assert code == 1 and "403" in post and "check the token" in post
