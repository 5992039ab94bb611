"""Django: a project configured only through ``settings.LOGGING`` (tests/django_project).

Real Django, its test client, and ``django.setup()``, which builds the
``ShipHandler`` from ``LOGGING`` exactly as ``manage.py`` and ``wsgi.py`` do.
The endpoint and spill folder come from ``LOGSHIP_URL`` and ``LOGSHIP_SPILL_DIR``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.test import Client

from logship import ShipHandler

from conftest import flushed, one
from faultserver import FaultServer


@pytest.fixture
def ship(server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The handler Django built from settings.LOGGING; closed after the test."""
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "django_project.settings")
    monkeypatch.setenv("LOGSHIP_URL", server.url("/django"))
    monkeypatch.setenv("LOGSHIP_SPILL_DIR", str(tmp_path / "spill"))
    django.setup(set_prefix=False)  # configures logging from settings.LOGGING, every time
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, ShipHandler)]
    try:
        assert len(handlers) == 1, logging.getLogger().handlers
        yield handlers[0]
    finally:
        for h in handlers:
            h.close()


@pytest.fixture
def client() -> Client:
    # As a real server does: an exception in a view becomes a 500, it is not re-raised.
    return Client(raise_request_exception=False)


def test_the_handler_comes_from_settings_logging(ship: ShipHandler, server: FaultServer) -> None:
    assert ship.options.url == (server.url("/django"),)
    assert ship.level == logging.INFO
    assert logging.getLogger().level == logging.INFO


def test_a_view_log_and_the_access_log_carry_the_request(
    ship: ShipHandler, server: FaultServer, client: Client
) -> None:
    assert client.get("/hello/", {"name": "ada"}).status_code == 200
    events = flushed(ship, server)
    view = one(events, logger="django_project.views")
    assert view["message"] == "said hello to ada"
    assert view["path"] == "/hello/"
    assert view["level"] == "INFO"
    assert (view["service"], view["env"]) == ("django-test", "test")
    access = one(events, logger="django_project.access")
    assert access["message"] == "GET /hello/ 200"
    assert (access["method"], access["path"], access["status_code"]) == ("GET", "/hello/", 200)
    assert access["host"] == "testserver"
    assert isinstance(access["duration_ms"], float)


def test_a_500_ships_django_request_error_with_the_traceback(
    ship: ShipHandler, server: FaultServer, client: Client
) -> None:
    assert client.get("/boom/").status_code == 500
    events = flushed(ship, server)
    error = one(events, logger="django.request")
    assert error["level"] == "ERROR"
    assert error["message"] == "Internal Server Error: /boom/"
    assert error["status_code"] == 500
    # Django passes the HttpRequest itself as an extra: it arrives as its repr.
    assert error["request"] == "<WSGIRequest: GET '/boom/'>"
    tb = error["exception"]
    assert tb.startswith("Traceback (most recent call last):")
    assert 'django_project/views.py", line' in tb and "in boom" in tb
    assert tb.endswith("RuntimeError: boom: the view failed")
    assert one(events, logger="django_project.access")["status_code"] == 500


def test_a_404_ships_a_warning(ship: ShipHandler, server: FaultServer, client: Client) -> None:
    assert client.get("/nowhere/").status_code == 404
    warning = one(flushed(ship, server), logger="django.request")
    assert warning["level"] == "WARNING"
    assert warning["message"] == "Not Found: /nowhere/"
    assert warning["status_code"] == 404
    assert warning["request"] == "<WSGIRequest: GET '/nowhere/'>"
    assert "exception" not in warning


def test_a_disallowed_host_ships_the_security_error(
    ship: ShipHandler, server: FaultServer, client: Client
) -> None:
    assert client.get("/hello/", HTTP_HOST="evil.example").status_code == 400
    error = one(flushed(ship, server), logger="django.security.DisallowedHost")
    assert error["level"] == "ERROR"
    assert "Invalid HTTP_HOST header: 'evil.example'" in error["message"]
    assert error["status_code"] == 400
    assert error["request"].startswith("<WSGIRequest: GET ")
    assert "DisallowedHost" in error["exception"]


def test_many_requests_every_event_once(
    ship: ShipHandler, server: FaultServer, client: Client
) -> None:
    for i in range(50):
        client.get("/hello/", {"name": f"user-{i}"})
    events = flushed(ship, server)
    names = sorted(e["message"] for e in events if e["logger"] == "django_project.views")
    assert names == sorted(f"said hello to user-{i}" for i in range(50))
    assert len({e["uuid"] for e in events}) == len(events) == 100
