"""structlog's standard-library integration, and dicts as messages: fields, not strings."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

import logship
from logship.cli.receive import Receiver

from conftest import attach, shipped
from procs import REPO, plain_env


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def configure(*processors: Any) -> None:
    structlog.configure(
        processors=list(processors),
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def one_event(server: Any, handler: logship.ShipHandler) -> dict[str, Any]:
    assert handler.flush(10)
    (event,) = shipped(server, 1)
    return event


WRAP = structlog.stdlib.ProcessorFormatter.wrap_for_formatter


# -- (a) ProcessorFormatter.wrap_for_formatter: the record's msg is the event dict --------------


def test_wrap_for_formatter_keys_become_fields(server: Any, make_handler: Any) -> None:
    configure(structlog.stdlib.add_log_level, WRAP)
    h = make_handler(server.url(), fields={"service": "shop"})
    attach(h, "shop")
    structlog.get_logger("shop").info("cart priced", items=3, total={"cents": 4599}, user="ada")
    event = one_event(server, h)
    assert event["message"] == "cart priced"
    assert event["items"] == 3 and event["total"] == {"cents": 4599} and event["user"] == "ada"
    assert event["logger"] == "shop" and event["level"] == "INFO" and event["service"] == "shop"
    # structlog's own "level" key collides with the core field: kept under the prefix.
    assert event["extra_level"] == "info"
    # wrap_for_formatter's plumbing (the stdlib logger, the method name) is not shipped.
    assert "_logger" not in event and "_name" not in event and "event" not in event


def test_core_fields_are_never_overwritten(server: Any, make_handler: Any) -> None:
    configure(WRAP)
    h = make_handler(server.url())
    attach(h, "shop")
    structlog.get_logger("shop").warning(
        "spoof", hostname="evil", uuid="u", message="m", timestamp=0, line=-1
    )
    event = one_event(server, h)
    assert event["message"] == "spoof" and event["hostname"] != "evil" and event["uuid"] != "u"
    assert event["extra_hostname"] == "evil" and event["extra_uuid"] == "u"
    assert event["extra_message"] == "m" and event["extra_timestamp"] == 0
    assert event["extra_line"] == -1 and event["level"] == "WARNING"


def test_exceptions_from_structlog(server: Any, make_handler: Any) -> None:
    configure(structlog.processors.format_exc_info, WRAP)
    h = make_handler(server.url())
    attach(h, "shop")
    log = structlog.get_logger("shop")
    try:
        raise ValueError("card declined")
    except ValueError as e:
        log.exception("via exception()")  # stdlib's exception() sets record.exc_info
        log.error("via exc_info=True", exc_info=True)  # rendered by format_exc_info
        error = e
    log.error("via an exception object", exc_info=error)  # rendered by format_exc_info too
    assert h.flush(10)
    events = {e["message"]: e for e in shipped(server, 3)}
    for message, event in events.items():
        assert "ValueError: card declined" in event["exception"], message
        assert event["exception"].startswith("Traceback"), message
        assert "exc_info" not in event and "extra_exception" not in event, message


def test_exception_object_without_format_exc_info_is_rendered_by_logship(
    server: Any, make_handler: Any
) -> None:
    configure(WRAP)
    h = make_handler(server.url())
    attach(h, "shop")
    try:
        raise KeyError("sku-1")
    except KeyError as e:
        error = e
    structlog.get_logger("shop").error("lookup failed", exc_info=error)
    event = one_event(server, h)
    assert "KeyError: 'sku-1'" in event["exception"] and "exc_info" not in event


def test_unresolved_exc_info_true_stays_visible(server: Any, make_handler: Any) -> None:
    # Without format_exc_info, exc_info=True reaches the worker, long after the
    # except block: the traceback is gone, and the event says one was asked for.
    configure(WRAP)
    h = make_handler(server.url())
    attach(h, "shop")
    try:
        raise OSError("disk")
    except OSError:
        structlog.get_logger("shop").error("write failed", exc_info=True)
    event = one_event(server, h)
    assert event["exc_info"] is True and "exception" not in event


def test_stack_info_and_positional_args(server: Any, make_handler: Any) -> None:
    configure(structlog.processors.StackInfoRenderer(), WRAP)
    h = make_handler(server.url())
    attach(h, "shop")
    log = structlog.get_logger("shop")
    log.info("with stack", stack_info=True)
    log.info("user %s bought %d", "ada", 3)  # no PositionalArgumentsFormatter configured
    assert h.flush(10)
    events = {e["message"]: e for e in shipped(server, 2)}
    assert "test_stack_info_and_positional_args" in events["with stack"]["stack"]
    assert "stack_info" not in events["with stack"]
    assert "positional_args" not in events["user ada bought 3"]


def test_structlog_contextvars_and_logship_context_both_arrive(
    server: Any, make_handler: Any
) -> None:
    configure(structlog.contextvars.merge_contextvars, WRAP)
    h = make_handler(server.url())
    attach(h, "shop")
    structlog.contextvars.bind_contextvars(tenant="acme")
    with logship.context(request_id="r-7"):
        structlog.get_logger("shop").info("both", n=1)
    event = one_event(server, h)
    assert event["tenant"] == "acme" and event["request_id"] == "r-7" and event["n"] == 1


def test_a_processor_formatter_on_another_handler_still_works(
    server: Any, make_handler: Any
) -> None:
    """The dict stays a dict for the other handlers: logship does not stringify it."""
    configure(WRAP)
    h = make_handler(server.url())
    out = io.StringIO()
    console = logging.StreamHandler(out)
    console.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=structlog.processors.JSONRenderer())
    )
    logger = attach(h, "shop")
    logger.addHandler(console)
    structlog.get_logger("shop").info("twice", n=2)
    event = one_event(server, h)
    assert event["message"] == "twice" and event["n"] == 2
    printed = json.loads(out.getvalue())
    assert printed["event"] == "twice" and printed["n"] == 2


def test_redact_filter_keeps_the_event_dict_a_dict(server: Any, make_handler: Any) -> None:
    configure(WRAP)
    h = make_handler(server.url())
    h.addFilter(logship.RedactFilter())
    attach(h, "shop")
    structlog.get_logger("shop").info(
        "login with password=hunter2", user="ada", password="hunter2", card="4111111111111111"
    )
    event = one_event(server, h)
    assert event["message"] == "login with password=[REDACTED]"
    assert event["password"] == "[REDACTED]" and event["card"] == "[REDACTED]"
    assert event["user"] == "ada"


# -- (b) render_to_log_kwargs: the keys arrive as extra= ----------------------------------------


def test_render_to_log_kwargs(server: Any, make_handler: Any) -> None:
    configure(
        structlog.stdlib.add_log_level,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.stdlib.render_to_log_kwargs,
    )
    h = make_handler(server.url())
    attach(h, "shop")
    log = structlog.get_logger("shop")
    log.info("user %s signed in", "ada", attempt=2, roles=["admin"])
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed", step="pay")
    assert h.flush(10)
    events = {e["message"]: e for e in shipped(server, 2)}
    signed_in = events["user ada signed in"]
    assert signed_in["attempt"] == 2 and signed_in["roles"] == ["admin"]
    assert signed_in["extra_level"] == "info" and signed_in["level"] == "INFO"
    failed = events["failed"]
    assert failed["step"] == "pay" and "RuntimeError: boom" in failed["exception"]
    assert failed["level"] == "ERROR"


# -- (c) plain extra= and dict messages --------------------------------------------------------


def test_plain_extra_fields(server: Any, make_handler: Any) -> None:
    h = make_handler(server.url())
    log = attach(h, "shop")
    log.info(
        "order %s", "o-1", extra={"order": {"id": "o-1", "lines": [1, 2]}, "hostname": "spoof"}
    )
    event = one_event(server, h)
    assert event["message"] == "order o-1" and event["order"] == {"id": "o-1", "lines": [1, 2]}
    assert event["extra_hostname"] == "spoof" and event["hostname"] != "spoof"


def test_a_dict_message_becomes_fields(server: Any, make_handler: Any) -> None:
    h = make_handler(server.url())
    log = attach(h, "shop")
    log.info({"event": "paid", "amount": 12, 7: "seven"})
    log.info({"amount": 13})  # no "event": an empty message
    log.info({"event": "with args %s"}, "x")  # args: an ordinary %-message, not unpacked
    assert h.flush(10)
    events = shipped(server, 3)
    assert events[0]["message"] == "paid" and events[0]["amount"] == 12
    assert events[0]["7"] == "seven"
    assert events[1]["message"] == "" and events[1]["amount"] == 13
    assert "amount" not in events[2] and events[2]["message"] == "{'event': 'with args x'}"


def test_a_dict_message_is_resolved_on_the_callers_thread(server: Any, make_handler: Any) -> None:
    """A dict msg's values are taken at the call: no user code runs on logship's threads."""
    h = make_handler(server.url())
    log = attach(h, "shop")

    class Loud:
        def __repr__(self) -> str:
            return f"<loud on {threading.current_thread().name}>"

    log.info({"event": "object", "value": Loud()})
    event = one_event(server, h)
    assert event["message"] == "object" and event["value"] == "<loud on MainThread>"


# -- the example --------------------------------------------------------------------------------


def test_structlog_example_against_a_live_receiver(tmp_path: Any) -> None:
    env = plain_env(LOGSHIP_SPILL_DIR=str(tmp_path))  # not the user's cache folder
    with Receiver() as receiver:
        done = subprocess.run(
            [
                sys.executable,
                os.path.join(REPO, "examples", "structlog_app.py"),
                receiver.endpoint(),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert receiver.wait_for(5, timeout=10)
        events = {e["message"]: e for e in receiver.events()}
    assert set(events) == {
        "service started",
        "cart priced",
        "login retried",
        "payment failed",
        "a standard-library record, formatted",
    }
    assert events["service started"]["version"] == "1.4.2"
    assert "request_id" not in events["service started"]
    priced = events["cart priced"]
    assert priced["items"] == 3 and priced["currency"] == "EUR" and priced["request_id"] == "r-42"
    assert priced["logger"] == "shop.checkout" and priced["service"] == "structlog-example"
    assert events["login retried"]["password"] == "[REDACTED]"
    assert events["login retried"]["level"] == "WARNING"
    failed = events["payment failed"]
    assert "TimeoutError: payment gateway did not answer" in failed["exception"]
    assert failed["gateway"] == "acme" and failed["level"] == "ERROR"
