"""What an application hands a handler cannot hurt its shipping: values taken at the call,
user code kept off logship's threads, sizes counted, keys an encoding cannot carry, and
secrets in files (token file, client key) checked at construction."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import threading
from typing import Any

import pytest
import trustme

import logship
from logship.pure.snapshot import resolve

from conftest import attach, check_identity, flushed, one

# -- values taken at the call -------------------------------------------------------------


def test_an_extra_value_changed_after_the_call_ships_as_it_was(server, make_handler):
    h = make_handler(server.url(), flush_interval=5.0)
    log = attach(h)
    order = {"items": ["book"], "state": {"paid": False}}
    log.info("order placed", extra={"order": order, "tags": ("a", "b")})
    order["items"].append("pen")
    order["state"]["paid"] = True
    event = one(flushed(h, server), message="order placed")
    assert event["order"] == {"items": ["book"], "state": {"paid": False}}
    assert event["tags"] == ["a", "b"]


class Slow:
    """An object whose repr takes long and says on which thread it ran."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def __repr__(self) -> str:
        self.release.wait(10)
        return f"<slow on {threading.current_thread().name}>"


def test_a_slow_repr_costs_its_own_thread_not_everyone_elses_shipping(server, make_handler):
    h = make_handler(server.url())
    log = attach(h)
    release = threading.Event()
    slow_done = threading.Event()

    def log_slow() -> None:
        log.info("slow", extra={"thing": Slow(release)})
        slow_done.set()

    t = threading.Thread(target=log_slow, name="app-slow")
    t.start()
    try:
        # The worker is not stuck: other threads' events are delivered meanwhile.
        log.info("fast")
        assert h.flush(5), h.stats()
        assert [e["message"] for e in server.events()] == ["fast"]
        assert not slow_done.is_set()
    finally:
        release.set()
        t.join(10)
    event = one(flushed(h, server), message="slow")
    assert event["thing"] == "<slow on app-slow>"  # it ran on the caller's thread


class Exploding:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_a_failing_repr_costs_only_its_value(server, make_handler):
    h = make_handler(server.url())
    log = attach(h)
    log.info("a", extra={"bad": Exploding(), "good": 1})
    log.info("b")
    events = flushed(h, server)
    assert one(events, message="a")["bad"] == "<unrepresentable Exploding>"
    assert one(events, message="a")["good"] == 1
    assert one(events, message="b")
    check_identity(h.stats())


def test_a_value_that_holds_itself_costs_one_field_not_the_call(server, make_handler):
    # Held twice, a list that holds itself has 2**32 paths to the depth limit: walked
    # on the calling thread, the call would never return.
    loop: list[Any] = []
    loop += [loop, loop]
    tree: dict[str, Any] = {"name": "root"}
    tree["self"] = tree
    wide: list[Any] = [0]
    for _ in range(40):  # no cycle, but 2**40 paths through shared lists
        wide = [wide, wide]
    h = make_handler(server.url())
    log = attach(h)
    log.info("a", extra={"loop": loop, "tree": tree, "wide": wide, "good": 1})
    event = one(flushed(h, server), message="a")
    assert event["loop"] == ["<cycle>", "<cycle>"]
    assert event["tree"] == {"name": "root", "self": "<cycle>"}
    assert json_size(event["wide"]) < 200_000 and event["good"] == 1
    check_identity(h.stats())


def json_size(value: Any) -> int:
    return len(json.dumps(value))


def test_a_huge_container_is_cut_at_the_call(server, make_handler):
    h = make_handler(server.url())
    log = attach(h)
    numbers = list(range(1_000_000))
    log.info("huge", extra={"numbers": numbers, "map": dict.fromkeys(range(20_000), 1)})
    event = one(flushed(h, server), message="huge")
    assert event["numbers"][:3] == [0, 1, 2] and event["numbers"][-1] == "<990000 more cut>"
    assert len(event["numbers"]) == 10_001
    assert len(event["map"]) == 10_001 and event["map"]["…"] == "<10000 more cut>"
    check_identity(h.stats())


@pytest.mark.parametrize(
    ("value", "chars"),
    [
        ("text", 4),
        (7, 0),  # a number alone: nothing to count (no container to grow)
        ([1, 2.5, None, True], 2 + 4 * 8),  # inside a container: about what JSON writes
        ({"k": "vv", "n": 1}, 2 + 1 + 2 + 1 + 8),
        ([[], ()], 2 + 2 + 2),
        (list(range(20_000)), 2 + 10_000 * 8 + len("<10000 more cut>")),
    ],
)
def test_a_values_weight_in_capacity_bytes(value, chars):
    assert resolve(value)[1] == chars


class _Unhashable:
    """A record attribute a filter set: it can be neither hashed nor compared."""

    def __repr__(self) -> str:
        return "Unhashable"

    def __hash__(self) -> int:
        raise RuntimeError("no hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparison")


@pytest.mark.parametrize("durability", ["memory", "crash"])
def test_a_record_whose_name_is_not_text_ships_and_never_raises(
    server, make_handler, tmp_path, durability
):
    # A record made by hand, as a program that forwards records from elsewhere
    # makes them, or one whose name and function a filter replaced.
    spill = {"spill": True, "spill_dir": str(tmp_path)} if durability == "crash" else {}
    spill["durability"] = durability
    h = make_handler(server.url(), **spill)
    for name in (None, 42, ["a"], _Unhashable()):
        record = logging.makeLogRecord({"name": name, "msg": "odd", "levelno": 20})
        record.funcName = name
        assert h.handle(record)
    events = flushed(h, server)
    shown = sorted(["None", "42", "['a']", "Unhashable"])
    assert sorted(str(e["logger"]) for e in events) == shown
    assert sorted(str(e["func"]) for e in events) == shown
    check_identity(h.stats())


# -- sizes ------------------------------------------------------------------------------------


def test_extra_strings_count_against_capacity_bytes(server, make_handler):
    mib = 1024 * 1024
    # block: each event fills the ring alone; the caller waits for the worker to take it
    h = make_handler(server.url(), capacity_bytes=mib, overflow="block")
    log = attach(h)
    big = "x" * (10 * mib)
    for i in range(5):
        log.info("big %d", i, extra={"blob": big, "raw": big.encode()})
    stats = h.stats()
    assert stats["truncated"] == 5
    events = flushed(h, server)
    assert len(events) == 5
    for e in events:
        assert len(e["blob"]) + len(e["raw"]) + len(e["message"]) <= mib
        assert e["blob"].endswith("…[truncated by logship]")


# -- keys an encoding cannot carry --------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["msgpack", "json", "ndjson"])
def test_a_key_msgpack_cannot_carry_costs_nothing(server, make_handler, encoding):
    h = make_handler(server.url(), encoding=encoding)
    log = attach(h)
    for i in range(50):
        log.info("ok %d", i)
    log.info("odd", extra={"m": {(1, 2): "tuple key", 3: "int key", None: "none key"}})
    events = flushed(h, server)
    assert len(events) == 51 and h.stats()["rejected"] == 0
    odd = one(events, message="odd")["m"]
    # Keys as JSON writes them, whatever the encoding
    assert odd["(1, 2)"] == "tuple key" and odd["3"] == "int key" and odd["null"] == "none key"


# -- secrets in files, checked at construction ---------------------------------------------------


@pytest.fixture
def encrypted_pair(tmp_path: Any) -> tuple[str, str]:
    """A client certificate and its key, the key encrypted with a password."""
    ca = trustme.CA()
    cert = ca.issue_cert("client@example.com")
    cert_path, plain_key, key_path = (
        tmp_path / "client.pem",
        tmp_path / "plain.key",
        tmp_path / "client.key",
    )
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(plain_key))
    openssl = subprocess.run(
        [
            "openssl",
            "pkey",
            "-in",
            str(plain_key),
            "-aes256",
            "-passout",
            "pass:s3cret",
            "-out",
            str(key_path),
        ],
        capture_output=True,
        timeout=30,
    )
    if openssl.returncode != 0:
        pytest.skip(f"openssl cannot encrypt a key here: {openssl.stderr!r}")
    return str(cert_path), str(key_path)


def test_an_encrypted_client_key_fails_at_construction_without_prompting(encrypted_pair):
    cert, key = encrypted_pair
    with pytest.raises(ValueError) as e:
        logship.ShipHandler(url="https://127.0.0.1:9/x", client_cert=cert, client_key=key)
    assert str(e.value).startswith("logship: option 'client_key' names an encrypted private key")


def test_a_key_that_is_not_the_certificates_fails_at_construction(tmp_path):
    ca = trustme.CA()
    a, b = ca.issue_cert("a.example"), ca.issue_cert("b.example")
    a.cert_chain_pems[0].write_to_path(str(tmp_path / "a.pem"))
    b.private_key_pem.write_to_path(str(tmp_path / "b.key"))
    with pytest.raises(ValueError, match="'client_cert' and 'client_key' cannot be loaded"):
        logship.ShipHandler(
            url="https://127.0.0.1:9/x",
            client_cert=str(tmp_path / "a.pem"),
            client_key=str(tmp_path / "b.key"),
        )


class Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def said():
    s = Said()
    logging.getLogger("logship").addHandler(s)
    yield s
    logging.getLogger("logship").removeHandler(s)


@pytest.mark.parametrize(
    ("mode", "owner", "expected"),
    [
        (0o600, None, None),
        (0o640, None, "readable by its group"),
        (0o644, None, "readable by every user"),
        (0o600, 54321, "is owned by uid 54321"),
    ],
)
def test_a_token_file_others_can_read_is_said_at_construction(
    tmp_path, said, mode, owner, expected
):
    path = tmp_path / "token"
    path.write_text("tok\n")
    path.chmod(mode)
    if owner is not None:
        if os.geteuid() != 0:
            pytest.skip("changing a file's owner needs root")
        os.chown(path, owner, -1)
    h = logship.ShipHandler(url="http://127.0.0.1:9/x", token_file=str(path), spill=False)
    h.close()
    found = [m for m in said.messages if "token file" in m]
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0] and "tok\n" not in found[0]


def test_a_token_file_emptied_mid_rotation_keeps_the_previous_token(server, make_handler, tmp_path):
    path = tmp_path / "token"
    path.write_text("first-token\n")
    path.chmod(0o600)
    h = make_handler(server.url(), token_file=str(path))
    log = attach(h)
    log.info("one")
    assert h.flush(5)
    path.write_text("")  # a rotation caught half way
    os.utime(path, (1, 1))
    log.info("two")
    assert h.flush(5)
    seen = [r.headers.get("Authorization") for r in server.requests]
    assert seen == ["Bearer first-token", "Bearer first-token"]


def test_a_rejected_body_that_does_not_decode_is_dead_lettered_whole():
    from logship.pure.batching import Batch
    from logship.pure.protocols.http import HttpEncoder
    from logship.worker.sender import dead_letter_events

    body = b"\x1f\x8b not gzip at all"
    (letter,) = dead_letter_events(HttpEncoder("msgpack", True), Batch(body, 3, "msgpack", True))
    assert base64.b64decode(letter["undecodable_body"]) == body
    assert letter["events"] == 3 and letter["encoding"] == "msgpack" and letter["error"]
