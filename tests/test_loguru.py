"""loguru: what a standard handler gets from it, and the example's sink (docs/loguru.md)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from types import ModuleType
from typing import Any

import pytest

import logship
from logship.cli.receive import Receiver

from conftest import shipped
from faultserver import FaultServer
from procs import REPO, plain_env

loguru = pytest.importorskip(
    "loguru", reason="loguru is not installed (pip install 'pylogship[test]')"
)
logger = loguru.logger

EXAMPLE = os.path.join(REPO, "examples", "loguru_app.py")


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("loguru_app", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ShipSink: Any = load_example().ShipSink


@pytest.fixture
def sinks() -> Iterator[list[int]]:
    """Ids of the loguru sinks a test adds; removed after it (loguru's logger is global)."""
    added: list[int] = []
    yield added
    for sink_id in added:
        logger.remove(sink_id)


def events(server: FaultServer, handler: logship.ShipHandler, n: int) -> list[dict[str, Any]]:
    assert handler.flush(10), handler.stats()
    return sorted(shipped(server, n), key=lambda e: e["uuid"])


def test_a_standard_handler_gets_the_formatted_line_and_one_extra_field(
    server: FaultServer, make_handler: Any, sinks: list[int]
) -> None:
    """``logger.add(handler)``: loguru's own record, as docs/loguru.md describes it."""
    handler = make_handler(server.url())
    sinks.append(logger.add(handler, format="{level} {message}"))
    logger.bind(user="ada").info("cart priced at {total}", total=4599)
    try:
        raise KeyError("sku-1")
    except KeyError:
        logger.exception("lookup failed")
    priced, failed = events(server, handler, 2)
    # The message is the sink's formatted line; the fields, one nested object.
    assert priced["message"] == "INFO cart priced at 4599"
    assert priced["extra"] == {"user": "ada", "total": 4599} and "user" not in priced
    # The traceback, as loguru renders it, is in the message; the exception field
    # is the placeholder loguru sets so that a logging formatter adds nothing.
    assert failed["message"].startswith("ERROR lookup failed\nTraceback")
    assert "KeyError: 'sku-1'" in failed["message"]
    assert failed["exception"] == "\n"


def test_the_sink_makes_fields_of_loguru_s_extra(
    server: FaultServer, make_handler: Any, sinks: list[int]
) -> None:
    handler = make_handler(server.url(), fields={"service": "shop"})
    sinks.append(logger.add(ShipSink(handler), level="TRACE"))
    log = logger.bind(user="ada", cart={"items": 3})
    with logger.contextualize(request_id="r-1"), logship.context(tenant="acme"):
        log.info("cart priced at {total} cents", total=4599)
    logger.success("order shipped")
    logger.trace("cache probed")
    priced, success, trace = events(server, handler, 3)

    assert priced["message"] == "cart priced at 4599 cents"
    assert (priced["user"], priced["cart"], priced["total"]) == ("ada", {"items": 3}, 4599)
    assert (priced["request_id"], priced["tenant"], priced["service"]) == ("r-1", "acme", "shop")
    assert priced["logger"] == __name__ and priced["level"] == "INFO"
    assert priced["func"] == "test_the_sink_makes_fields_of_loguru_s_extra"
    assert priced["module"] == "test_loguru" and priced["thread"] == "MainThread"
    assert "extra" not in priced
    # loguru's own level names; nothing bound outside the blocks.
    assert (success["level"], success["message"]) == ("SUCCESS", "order shipped")
    assert trace["level"] == "TRACE"
    assert "request_id" not in success and "tenant" not in success and "user" not in success


def test_the_event_has_loguru_s_time(
    server: FaultServer, make_handler: Any, sinks: list[int]
) -> None:
    handler = make_handler(server.url())
    times: list[datetime] = []
    sinks.append(logger.add(lambda m: times.append(m.record["time"])))
    sinks.append(logger.add(ShipSink(handler)))
    logger.info("timed")
    (event,) = events(server, handler, 1)
    shipped_at = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert shipped_at == times[0]


def test_exceptions_arrive_with_their_traceback(
    server: FaultServer, make_handler: Any, sinks: list[int]
) -> None:
    handler = make_handler(server.url())
    sinks.append(logger.add(ShipSink(handler)))

    def charge() -> None:
        raise TimeoutError("payment gateway did not answer")

    try:
        charge()
    except TimeoutError:
        logger.exception("payment failed")
    try:
        charge()
    except TimeoutError as e:
        logger.opt(exception=e).warning("retrying")
    failed, retrying = events(server, handler, 2)
    for event in (failed, retrying):
        assert event["exception"].startswith("Traceback (most recent call last):")
        assert "in charge" in event["exception"]
        assert event["exception"].endswith("TimeoutError: payment gateway did not answer")
    assert (failed["message"], failed["level"]) == ("payment failed", "ERROR")
    assert (retrying["message"], retrying["level"]) == ("retrying", "WARNING")


def test_names_that_collide_are_kept_under_a_prefix(
    server: FaultServer, make_handler: Any, sinks: list[int]
) -> None:
    handler = make_handler(server.url())
    sinks.append(logger.add(ShipSink(handler)))
    # name, args and message are LogRecord attributes; hostname and uuid, core fields.
    logger.bind(name="ada", args=[1], message="m", hostname="evil", uuid="u").info("spoof")
    (event,) = events(server, handler, 1)
    assert event["message"] == "spoof" and event["logger"] == __name__
    assert (event["extra_name"], event["extra_args"], event["extra_message"]) == ("ada", [1], "m")
    assert (event["extra_hostname"], event["extra_uuid"]) == ("evil", "u")
    assert event["hostname"] != "evil" and event["uuid"] != "u"


def test_the_handler_s_filters_see_the_record(
    server: FaultServer, make_handler: Any, sinks: list[int]
) -> None:
    handler = make_handler(server.url())
    handler.addFilter(logship.RedactFilter())
    sinks.append(logger.add(ShipSink(handler)))
    logger.bind(password="hunter2").warning("login retried with token=abc123")
    (event,) = events(server, handler, 1)
    assert event["password"] == "[REDACTED]"
    assert event["message"] == "login retried with token=[REDACTED]"


def test_with_enqueue_loguru_s_context_stays_and_logship_s_does_not(
    server: FaultServer, make_handler: Any, sinks: list[int]
) -> None:
    """``enqueue=True`` runs the sink on loguru's own thread, where logship.context is empty."""
    handler = make_handler(server.url())
    sinks.append(logger.add(ShipSink(handler), enqueue=True))
    with logger.contextualize(request_id="r-1"), logship.context(tenant="acme"):
        logger.info("queued")
    logger.complete()  # wait for loguru's thread to have written it
    (event,) = events(server, handler, 1)
    assert event["request_id"] == "r-1" and "tenant" not in event
    assert event["thread"] == threading.current_thread().name  # the caller's, from loguru's record


def test_loguru_example_against_a_live_receiver(tmp_path: Any) -> None:
    with Receiver() as receiver:
        done = subprocess.run(
            [sys.executable, EXAMPLE, receiver.endpoint("/loguru")],
            env=plain_env(LOGSHIP_SPILL_DIR=str(tmp_path / "spill")),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert receiver.counts()["duplicates"] == 0
        got = {e["message"]: e for e in receiver.events()}
    assert list(got) == [
        "service started",
        "cart priced at 4599 cents",
        "login retried",
        "payment failed",
        "order shipped",
    ]
    assert {e["service"] for e in got.values()} == {"loguru-example"}
    assert {e["logger"] for e in got.values()} == {"__main__"}
    assert got["service started"]["version"] == "1.4.2"
    priced = got["cart priced at 4599 cents"]
    assert (priced["user"], priced["items"], priced["total_cents"]) == ("ada", 3, 4599)
    assert (priced["request_id"], priced["tenant"]) == ("r-42", "acme")
    assert got["login retried"]["password"] == "[REDACTED]"
    failed = got["payment failed"]
    assert failed["level"] == "ERROR" and failed["request_id"] == "r-42"
    assert failed["exception"].endswith("TimeoutError: payment gateway did not answer")
    assert got["order shipped"]["level"] == "SUCCESS" and "user" not in got["order shipped"]
