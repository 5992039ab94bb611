"""Flask: ``dictConfig`` before the app is created (Flask's advice), and ``app.logger``.

Real Flask and its test client. Unhandled exceptions reach the handler
through Flask's own ``app.logger.error(..., exc_info=...)``.
"""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator

import flask
import pytest
from flask.logging import default_handler

from logship import ShipHandler

from conftest import FAST, flushed, one
from faultserver import FaultServer


class RequestFields(logging.Filter):
    """Adds the current request's facts to every record logged while handling it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if flask.has_request_context():
            record.method = flask.request.method
            record.path = flask.request.path
            record.request_id = flask.request.headers.get("X-Request-ID", "-")
        return True


def create_app() -> flask.Flask:
    app = flask.Flask("shop")

    @app.get("/orders/<int:order_id>")
    def order(order_id: int) -> str:
        app.logger.info("order %d looked up", order_id, extra={"order_id": order_id})
        return "ok\n"

    @app.get("/boom")
    def boom() -> str:
        raise ZeroDivisionError("the view failed")

    return app


@pytest.fixture
def ships() -> Iterator[list[ShipHandler]]:
    """Every ShipHandler reachable from a logger at the end of the test, closed then."""
    found: list[ShipHandler] = []
    yield found
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for lg in loggers:
        for h in getattr(lg, "handlers", []):
            if isinstance(h, ShipHandler) and h not in found:
                found.append(h)
    for h in found:
        h.close()


def test_dictconfig_before_the_app(server: FaultServer, ships: list[ShipHandler]) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"request": {"()": RequestFields}},
            "handlers": {
                "ship": {
                    "class": "logship.ShipHandler",
                    "url": server.url("/flask"),
                    "fields": {"service": "shop"},
                    "filters": ["request"],
                    "spill": False,
                    **FAST,
                },
            },
            "root": {"level": "INFO", "handlers": ["ship"]},
        }
    )
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, ShipHandler)
    ships.append(handler)
    app = create_app()
    # The root logger handles records, so Flask adds no stderr handler of its own.
    assert default_handler not in app.logger.handlers

    client = app.test_client()
    assert client.get("/orders/7", headers={"X-Request-ID": "r-7"}).status_code == 200
    assert client.get("/boom", headers={"X-Request-ID": "r-8"}).status_code == 500
    events = flushed(handler, server)

    info = one(events, logger="shop", level="INFO")
    assert info["message"] == "order 7 looked up"
    assert (info["order_id"], info["method"], info["path"]) == (7, "GET", "/orders/7")
    assert (info["request_id"], info["service"]) == ("r-7", "shop")

    error = one(events, logger="shop", level="ERROR")
    assert error["message"] == "Exception on /boom [GET]"
    assert (error["path"], error["request_id"]) == ("/boom", "r-8")
    assert error["exception"].startswith("Traceback (most recent call last):")
    assert error["exception"].endswith("ZeroDivisionError: the view failed")
    assert "in boom" in error["exception"]


def test_app_logger(server: FaultServer, ships: list[ShipHandler]) -> None:
    app = create_app()
    handler = ShipHandler(url=server.url("/flask"), spill=False, **FAST)
    ships.append(handler)
    handler.addFilter(RequestFields())
    app.logger.addHandler(handler)
    app.logger.setLevel(logging.INFO)

    client = app.test_client()
    for i in range(20):
        assert client.get(f"/orders/{i}").status_code == 200
    assert client.get("/boom").status_code == 500
    events = flushed(handler, server)

    orders = sorted(e["order_id"] for e in events if e["level"] == "INFO")
    assert orders == list(range(20))
    assert {e["logger"] for e in events} == {"shop"}
    assert len({e["uuid"] for e in events}) == len(events) == 21
    error = one(events, level="ERROR")
    assert error["path"] == "/boom" and "ZeroDivisionError" in error["exception"]


def test_records_outside_a_request(server: FaultServer, ships: list[ShipHandler]) -> None:
    app = create_app()
    handler = ShipHandler(url=server.url("/flask"), spill=False, **FAST)
    ships.append(handler)
    handler.addFilter(RequestFields())
    app.logger.addHandler(handler)
    app.logger.setLevel(logging.INFO)
    with app.app_context():
        app.logger.warning("cache warmed", extra={"entries": 3})
    event = one(flushed(handler, server), level="WARNING")
    assert event["entries"] == 3 and "path" not in event
