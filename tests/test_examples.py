"""Every example in examples/ runs, as its docstring says, against a live receiver.

Each one is a real subprocess with ``LOGSHIP_URL`` pointing at a
:class:`~logship.cli.receive.Receiver` on 127.0.0.1, stopped the way a user
would stop it; then the events it should have shipped are checked. Every
example must be run by some test (``test_every_example_is_run_by_a_test``):
the FastAPI, Celery, structlog and loguru ones are in test_fastapi.py,
test_celery.py, test_structlog.py and test_loguru.py.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logship.cli.receive import Receiver

from conftest import one
from procs import REPO, Proc, child_env

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

EXAMPLES = os.path.join(REPO, "examples")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# The examples run here, and the test that runs each.
RUN_HERE = {
    "plain.py": "test_plain",
    "dictconfig.py": "test_dictconfig",
    "flask_app.py": "test_flask_app",
    "django_app": "test_django_app",
    "gunicorn_app": "test_gunicorn_app",
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def example_env(receiver: Receiver, tmp_path: Path, **extra: str) -> dict[str, str]:
    return child_env(
        LOGSHIP_URL=receiver.endpoint("/examples"),
        LOGSHIP_SPILL_DIR=str(tmp_path / "spill"),  # never the user's cache folder
        XDG_RUNTIME_DIR=str(tmp_path),  # gunicorn's control socket
        **extra,
    )


def get(port: int, path: str, **headers: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def no_duplicates(receiver: Receiver) -> list[dict[str, Any]]:
    assert receiver.counts()["duplicates"] == 0
    return receiver.events()


def test_every_example_is_run_by_a_test() -> None:
    examples = {
        name
        for name in os.listdir(EXAMPLES)
        if not name.startswith((".", "_")) and (name.endswith(".py") or "." not in name)
    }
    tests = [p.read_text() for p in Path(REPO, "tests").glob("test_*.py")]
    untested = {name for name in examples if not any(f'"{name}"' in text for text in tests)}
    assert not untested, f"examples run by no test in tests/: {sorted(untested)}"
    assert set(RUN_HERE) <= examples
    assert all(callable(globals()[test]) for test in RUN_HERE.values())


def test_plain(receiver: Receiver, tmp_path: Path) -> None:
    script = os.path.join(EXAMPLES, "plain.py")
    with Proc([sys.executable, script], env=example_env(receiver, tmp_path)) as p:
        assert p.wait(30) == 0, p.describe()
    events = no_duplicates(receiver)
    assert [e["message"] for e in events] == [
        "starting",
        "processed item 0",
        "processed item 1",
        "processed item 2",
        "item failed",
        "done: delivered=True shipped=5 pending=0",  # logged after flush(): delivered at exit
    ]
    assert {(e["logger"], e["service"], e["env"]) for e in events} == {
        ("example.plain", "plain-example", "dev")
    }
    failed = one(events, message="item failed")
    assert failed["item"] == 3 and failed["exception"].endswith(
        "ZeroDivisionError: division by zero"
    )


def test_dictconfig(receiver: Receiver, tmp_path: Path) -> None:
    script = os.path.join(EXAMPLES, "dictconfig.py")
    with Proc([sys.executable, script], env=example_env(receiver, tmp_path)) as p:
        assert p.wait(30) == 0, p.describe()
    assert "DEBUG billing.db: query took 3 ms" in p.stderr  # the terminal gets it...
    events = no_duplicates(receiver)
    assert [(e["logger"], e["level"]) for e in events] == [  # ...logship does not
        ("billing.invoices", "INFO"),
        ("billing.invoices", "WARNING"),
        ("billing.invoices", "ERROR"),
    ]
    sent = one(events, message="invoice INV-7 sent")
    assert (sent["customer"], sent["amount_cents"], sent["service"]) == ("ada", 1250, "billing")
    error = one(events, level="ERROR")
    assert error["exception"].endswith("KeyError: 'INV-9'")


def test_flask_app(receiver: Receiver, tmp_path: Path) -> None:
    script = os.path.join(EXAMPLES, "flask_app.py")
    env = example_env(receiver, tmp_path, PORT="0")
    with Proc([sys.executable, script], env=env) as p:
        port = int(p.wait_for(r"Running on http://127\.0\.0\.1:(\d+)")[1])
        assert get(port, "/orders/7", **{"X-Request-ID": "r-7"})[0] == 200
        assert get(port, "/boom")[0] == 500
        # werkzeug logs a request after its answer is sent (in colours), on a daemon thread:
        # wait for that line, printed after "ship" has taken the event.
        p.wait_for(r'GET /boom HTTP/1\.1(\x1b\[[0-9;]*m)?" 500')
        p.send_signal(signal.SIGTERM)  # as `docker stop` would
        assert p.wait(30) == 128 + signal.SIGTERM, p.describe()
    events = no_duplicates(receiver)
    order = one(events, logger="shop", level="INFO")
    assert order["message"] == "order 7 looked up"
    assert (order["order_id"], order["path"], order["request_id"]) == (7, "/orders/7", "r-7")
    error = one(events, logger="shop", level="ERROR")
    assert error["message"] == "Exception on /boom [GET]" and error["path"] == "/boom"
    assert error["exception"].endswith("RuntimeError: the payment service is down")
    # werkzeug's request log, with the colours it adds whether or not there is a terminal
    requests = [ANSI.sub("", e["message"]) for e in events if e["logger"] == "werkzeug"]
    assert any('"GET /orders/7 HTTP/1.1" 200' in m for m in requests), requests
    assert any('"GET /boom HTTP/1.1" 500' in m for m in requests), requests


def test_django_app(receiver: Receiver, tmp_path: Path) -> None:
    manage = os.path.join(EXAMPLES, "django_app", "manage.py")
    args = [sys.executable, manage, "runserver", "--noreload", "127.0.0.1:0"]
    env = example_env(receiver, tmp_path, DJANGO_RUNSERVER_HIDE_WARNING="true")
    with Proc(args, env=env) as p:
        # Django 6 (Python 3.12+) says "Starting WSGI development server at".
        started = r"Starting (?:WSGI )?development server at http://127\.0\.0\.1:(\d+)/"
        port = int(p.wait_for(started)[1])
        assert get(port, "/hello/?name=ada") == (200, "hello, ada\n")
        assert get(port, "/boom/")[0] == 500
        # runserver logs a request after its answer is sent, on a daemon thread: Ctrl-C
        # before that line would end the process without it. The example lists "ship"
        # before "console", so once the line is printed logship has the event.
        p.wait_for(r'django\.server: "GET /boom/ HTTP/1\.1" 500')
        p.send_signal(signal.SIGINT)  # Ctrl-C: runserver exits normally
        assert p.wait(30) == 0, p.describe()
    events = no_duplicates(receiver)
    hello = one(events, logger="mysite.views")
    assert (hello["message"], hello["visitor"], hello["service"]) == (
        "said hello to ada",
        "ada",
        "mysite",
    )
    error = one(events, logger="django.request")
    assert (error["level"], error["message"]) == ("ERROR", "Internal Server Error: /boom/")
    assert error["status_code"] == 500 and error["request"] == "<WSGIRequest: GET '/boom/'>"
    assert error["exception"].endswith("RuntimeError: the payment service is down")
    served = one(events, logger="django.server", status_code=200)
    assert '"GET /hello/?name=ada HTTP/1.1" 200' in served["message"]
    assert served["request"].startswith("<socket.socket")  # runserver's extra: its socket
    assert one(events, logger="django.server", status_code=500)["level"] == "ERROR"


def test_gunicorn_app(receiver: Receiver, tmp_path: Path) -> None:
    cwd = os.path.join(EXAMPLES, "gunicorn_app")
    args = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", "127.0.0.1:0"]
    with Proc(
        [*args, "app:app"], env=example_env(receiver, tmp_path), cwd=cwd, new_session=True
    ) as p:
        port = int(p.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)")[1])
        status, body = get(port, "/hello", **{"X-Request-ID": "r-1"})
        assert status == 200 and body.startswith("r-1 handled by worker "), body
        assert get(port, "/boom")[0] == 500
        p.send_signal(signal.SIGTERM)
        # Past gunicorn's own graceful_timeout (30 s), which a worker still booting
        # when the signal comes may use up on a loaded machine.
        assert p.wait(60) == 0, p.describe()
    events = no_duplicates(receiver)
    handled = one(events, logger="example.gunicorn", request_id="r-1")
    assert handled["pid"] == int(body.rsplit(" ", 1)[1]) != p.pid
    assert one(events, message="app loaded")["pid"] == p.pid  # preload_app: in the master
    error = one(events, message="Error handling request GET /boom")
    assert error["exception"].endswith("RuntimeError: the payment service is down")
    assert one(events, message="Shutting down: Master")["pid"] == p.pid
    assert {e["service"] for e in events} == {"gunicorn-example"}
