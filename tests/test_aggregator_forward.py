"""``protocol="forward"`` into a real Fluent Bit's ``forward`` input: over TCP, TLS and a
Unix socket, with the ``shared_key`` handshake, and a spilled batch replayed.

Besides the ``file`` output with ``format plain`` (the records), each Fluent Bit writes a
second file with ``format out_file``: ``TAG: [SECONDS.NANOSECONDS, RECORD]`` per line,
which shows the tag as it arrived (after ``tag_prefix``) and the EventTime it took.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from conftest import attach, check_identity, require_within
from fluentbit import FluentBit

RAW = "raw.log"
_RAW_LINE = re.compile(r"^(?P<tag>[^:]+): \[(?P<seconds>\d+)\.(?P<nanos>\d{9}), (?P<record>.*)\]$")


@pytest.fixture
def forward_bit(tmp_path: Path) -> Iterator[Callable[..., FluentBit]]:
    """Makes Fluent Bits with one forward input (settings added) and both file outputs."""
    made: list[FluentBit] = []

    def make(**settings: str) -> FluentBit:
        folder = tmp_path / f"forward-bit-{len(made)}"
        raw = f"[OUTPUT]\n    name file\n    match *\n    path {folder}\n    file {RAW}\n"
        inputs = [{"name": "forward", "listen": "127.0.0.1", "port": "{port}", **settings}]
        made.append(FluentBit(folder, inputs, raw + "    format out_file\n"))
        return made[-1].start()

    yield make
    for fb in made:
        fb.kill()  # nothing is read after the test: no grace period to wait out


def arrived(fb: FluentBit) -> list[tuple[str, str, dict[str, Any]]]:
    """``(tag, time as SECONDS.NANOSECONDS, record)`` of each line of the out_file output."""
    try:
        lines = (fb.folder / RAW).read_text().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        m = _RAW_LINE.match(line)
        if m:
            found.append((m["tag"], f"{m['seconds']}.{m['nanos']}", json.loads(m["record"])))
    return found


def event_time_of(stamp: str) -> str:
    """The EventTime Fluent Bit shows for an event's timestamp: its microseconds, in ns."""
    seconds = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    return f"{seconds}.{stamp[20:26]}000"


def ship(make_handler: Any, url: str, n: int, **options: Any) -> Any:
    h = make_handler(url, protocol="forward", **options)
    log = attach(h)
    for i in range(n):
        log.info("event %d", i, extra={"i": i})
    return h


def test_every_event_arrives_over_tcp_with_its_tag_and_event_time(forward_bit, make_handler):
    fb = forward_bit(tag_prefix="in.")
    h = ship(make_handler, f"tcp://127.0.0.1:{fb.port}", 500, tag="app", batch_max_records=100)
    assert h.flush(10), h.stats()
    records = fb.wait_for(500)
    assert sorted(r["i"] for r in records) == list(range(500))
    require_within(lambda: len(arrived(fb)) >= 500, what="the out_file output")
    for tag, when, record in arrived(fb):
        assert tag == "in.app"
        assert when == event_time_of(record["timestamp"])
    stats = h.stats()
    assert stats["shipped"] == 500 and stats["retries"] == 0
    check_identity(stats)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_files(ca: trustme.CA, folder: Path) -> tuple[str, str, str]:
    """The server's certificate chain and key, and the CA to trust it by, as files."""
    folder.mkdir(parents=True, exist_ok=True)
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = folder / "server.pem", folder / "server.key", folder / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return str(cert), str(key), str(ca_file)


def test_every_event_arrives_over_tls_verified_against_the_ca(
    forward_bit, make_handler, ca, tmp_path
):
    cert, key, ca_file = tls_files(ca, tmp_path / "tls")
    fb = forward_bit(
        **{"tls": "on", "tls.verify": "off", "tls.crt_file": cert, "tls.key_file": key}
    )
    url = f"tls://localhost:{fb.port}"
    h = ship(make_handler, url, 300, ca_file=ca_file)
    assert h.flush(10), h.stats()
    assert sorted(r["i"] for r in fb.wait_for(300)) == list(range(300))
    check_identity(h.stats())
    # Not trusted without the CA, exactly as https:// would not be.
    refused = ship(make_handler, url, 3, shutdown_timeout=0.5)
    require_within(lambda: refused.stats()["last_error_kind"] == "tls-untrusted", what="tls")
    assert refused.stats()["shipped"] == 0
    check_identity(refused.stats())


def test_every_event_arrives_over_a_unix_socket(fluent_bit, make_handler, tmp_path):
    path = tmp_path / "fb.sock"
    fb: FluentBit = fluent_bit([{"name": "forward", "unix_path": str(path)}])
    h = ship(make_handler, f"unix://{path}", 300)
    assert h.flush(10), h.stats()
    assert sorted(r["i"] for r in fb.wait_for(300)) == list(range(300))
    check_identity(h.stats())


def test_the_shared_key_handshake_with_the_token_and_a_wrong_key_held(forward_bit, make_handler):
    fb = forward_bit(shared_key="s3cret", self_hostname="fluent-bit")
    url = f"tcp://127.0.0.1:{fb.port}"
    h = ship(make_handler, url, 200, token="s3cret")
    assert h.flush(10), h.stats()
    assert sorted(r["i"] for r in fb.wait_for(200)) == list(range(200))
    check_identity(h.stats())
    wrong = ship(make_handler, url, 5, token="not-it", shutdown_timeout=0.5)
    # Fluent Bit hangs up after a PING with a wrong digest: no PONG to say why.
    require_within(lambda: wrong.stats()["last_error_kind"] == "shared-key", what="a refusal")
    stats = wrong.stats()
    assert stats["pending"] == 5 and stats["dropped"] == 0 and stats["shipped"] == 0
    assert "refused the shared key" in stats["last_error"]
    check_identity(stats)


def test_a_spilled_batch_is_replayed_when_fluent_bit_is_up(tmp_path, make_handler):
    fb = FluentBit(tmp_path / "fb", [{"name": "forward", "listen": "127.0.0.1", "port": "{port}"}])
    url, spill_dir = f"tcp://127.0.0.1:{fb.port}", str(tmp_path / "spill")
    down = ship(make_handler, url, 200, spill=True, spill_dir=spill_dir, shutdown_timeout=0.5)
    down.close()
    stats = down.stats()
    assert stats["spilled"] == 200 and stats["shipped"] == 0
    check_identity(stats)
    with fb:
        # A handler built on a folder that holds spilled events replays them at once.
        up = make_handler(url, protocol="forward", spill=True, spill_dir=spill_dir)
        records = fb.wait_for(200)
        assert sorted(r["i"] for r in records) == list(range(200))
        require_within(lambda: up.stats()["replayed"] == 200, what="the replay")
        stats = up.stats()
        assert stats["adopted"] == 200 and stats["shipped"] == 200 and stats["pending"] == 0
        check_identity(stats)
