"""FastAPI under uvicorn: examples/fastapi_app run by a real uvicorn (docs/frameworks/fastapi.md).

Each test starts uvicorn in a subprocess with the example's ``log_config.json``
(``--log-config``, as the example's docstring says), sends real HTTP requests
with an ``X-Request-ID`` each, and counts what arrives at a local collector.
The last test measures the event loop's lag inside the server while the
collector is down or stalled and requests keep logging.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from logship.cli.receive import Receiver

from conftest import one, require, wait_until
from faultserver import STALL, FaultServer, status
from procs import REPO, Proc, child_env

pytest.importorskip("fastapi", reason="FastAPI is not installed (pip install 'pylogship[test]')")
pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install 'pylogship[test]')")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

EXAMPLE = os.path.join(REPO, "examples", "fastapi_app")
STARTED = r"Uvicorn running on http://127\.0\.0\.1:(\d+)"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def uvicorn(app: str, app_dir: str, log_config: str, url: str, tmp: Path) -> tuple[Proc, int]:
    """``uvicorn APP --log-config ...`` on a free port of 127.0.0.1; the child and its port."""
    args = [sys.executable, "-m", "uvicorn", app, "--app-dir", app_dir]
    args += ["--log-config", log_config, "--host", "127.0.0.1", "--port", "0"]
    env = child_env(LOGSHIP_URL=url, LOGSHIP_SPILL_DIR=str(tmp / "spill"))
    proc = Proc(args, env=env)
    return proc, int(proc.wait_for(STARTED)[1])


def get(port: int, path: str, request_id: str | None = None) -> tuple[int, str, str | None]:
    """GET ``path``: the status, the body and the X-Request-ID the server answered with."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path, headers={"X-Request-ID": request_id} if request_id else {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace"), resp.getheader("X-Request-ID")
    finally:
        conn.close()


def load(port: int, n: int, prefix: str) -> list[str]:
    """GET /orders/0 .. /orders/n-1, eight at a time, each with its own request id."""
    ids = [f"{prefix}-{i}" for i in range(n)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: get(port, f"/orders/{i}", ids[i]), range(n)))
    for i, (code, body, echoed) in enumerate(answers):
        assert code == 200 and echoed == ids[i], (code, body)
        assert json.loads(body) == {"order": i, "cents": 1250 + i}
    return ids


def check_orders(events: list[dict[str, Any]], ids: list[str]) -> None:
    """Each request's three events arrived once, with its request id, method and path."""
    by_id: dict[str, list[dict[str, Any]]] = {rid: [] for rid in ids}
    for e in events:
        if e.get("request_id") in by_id:
            by_id[e["request_id"]].append(e)
    for i, rid in enumerate(ids):
        got = by_id[rid]
        app = sorted(e["message"] for e in got if e["logger"] == "shop.orders")
        assert app == [f"order {i} looked up", f"order {i} priced"], (rid, got)
        (access,) = [e["message"] for e in got if e["logger"] == "uvicorn.access"]
        assert access.endswith(f'"GET /orders/{i} HTTP/1.1" 200'), access
        assert len(got) == 3, got
        assert {(e["method"], e["path"]) for e in got} == {("GET", f"/orders/{i}")}
        priced = one(got, message=f"order {i} priced")  # logged in the awaited coroutine
        assert priced["cents"] == 1250 + i
    uuids = Counter(e["uuid"] for e in events)
    assert max(uuids.values()) == 1


def test_fastapi_app(receiver: Receiver, tmp_path: Path) -> None:
    """``uvicorn app:app --log-config log_config.json``: every request's events, then SIGTERM."""
    proc, port = uvicorn(
        "app:app",
        EXAMPLE,
        os.path.join(EXAMPLE, "log_config.json"),
        receiver.endpoint("/fastapi"),
        tmp_path,
    )
    with proc:
        ids = load(port, 40, "r")
        assert get(port, "/report", "r-report")[:2] == (200, '{"report":"ready"}')
        assert get(port, "/boom", "r-boom")[0] == 500
        proc.send_signal(signal.SIGTERM)  # as `docker stop` and Kubernetes stop it
        # uvicorn shuts down gracefully, then ends itself with the signal it caught.
        assert proc.wait(30) == -signal.SIGTERM, proc.describe()
    assert receiver.counts()["duplicates"] == 0
    events = receiver.events()
    check_orders(events, ids)

    # A plain def route runs on a thread, in a copy of the request's context.
    report = one(events, message="report built")
    assert (report["request_id"], report["path"], report["service"]) == (
        "r-report",
        "/report",
        "fastapi-example",
    )
    assert report["thread"] != "MainThread"
    # uvicorn logs the unhandled exception in the request's task: the fields are there.
    error = one(events, logger="uvicorn.error", level="ERROR")
    assert error["message"].startswith("Exception in ASGI application")
    assert error["exception"].endswith("RuntimeError: the payment service is down")
    assert (error["request_id"], error["path"]) == ("r-boom", "/boom")
    boom = one(events, logger="uvicorn.access", request_id="r-boom")["message"]
    assert boom.endswith('"GET /boom HTTP/1.1" 500'), boom
    # uvicorn's own lines, up to the lifespan's shutdown, where the example delivers
    # what is queued: the process ends on SIGTERM without running exit handlers.
    errors = [e["message"] for e in events if e["logger"] == "uvicorn.error"]
    for line in (
        "Application startup complete.",
        "Shutting down",
        "Waiting for application shutdown.",
    ):
        assert line in errors, errors
    assert {e["pid"] for e in events} == {proc.pid}


def test_fastapi_app_run_by_python(receiver: Receiver, tmp_path: Path) -> None:
    """``python app.py``: uvicorn.run after install_signal_handlers; its last lines arrive too."""
    env = child_env(
        LOGSHIP_URL=receiver.endpoint("/fastapi"),
        LOGSHIP_SPILL_DIR=str(tmp_path / "spill"),
        PORT="0",
    )
    with Proc([sys.executable, os.path.join(EXAMPLE, "app.py")], env=env) as proc:
        port = int(proc.wait_for(STARTED)[1])
        ids = load(port, 8, "p")
        proc.send_signal(signal.SIGTERM)
        # The signal handed back to logship's handler: a normal exit, with exit handlers.
        assert proc.wait(30) == 128 + signal.SIGTERM, proc.describe()
    assert receiver.counts()["duplicates"] == 0
    events = receiver.events()
    check_orders(events, ids)
    errors = [e["message"] for e in events if e["logger"] == "uvicorn.error"]
    assert "Application shutdown complete." in errors, errors
    assert f"Finished server process [{proc.pid}]" in errors, errors


# -- the event loop never waits on logship ------------------------------------------------------

# The example's app, plus a task that sleeps 1 ms again and again in the
# server's event loop and records how late it wakes, started and read over HTTP.
PROBE_APP = """\
import asyncio
import logging
import sys
import time

sys.path.insert(0, {example!r})

import logship
from app import app

lags = []
tasks = set()


async def measure():
    while True:
        before = time.monotonic()
        await asyncio.sleep(0.001)
        lags.append(time.monotonic() - before - 0.001)


@app.post("/_probe/start")
async def start():
    lags.clear()
    task = asyncio.get_running_loop().create_task(measure())
    tasks.add(task)
    return {{}}


@app.post("/_probe/stop")
async def stop():
    for task in tasks:
        task.cancel()
    tasks.clear()
    return {{"samples": len(lags), "max_lag": max(lags), "stats": await stats()}}


@app.post("/_probe/stats")
async def stats():
    (ship,) = [h for h in logging.getLogger().handlers if isinstance(h, logship.ShipHandler)]
    return ship.stats()
"""

# A logship call that waited on the collector would hold the loop for seconds:
# the stalled collector answers nothing until the test releases it, and the
# handler's timeout (60 s) outlasts the test; with the collector down, the
# sender waits up to retry_max_backoff (5 s) between attempts. The probe's
# 1 ms sleeps wake a few tens of milliseconds late here, behind the requests
# the loop serves, and about 0.1 s late at worst with two CPU-bound processes
# on the machine's two cores: 1 s is ten times that, and well below a wait
# for the network.
MAX_LAG = 1.0


def post(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("POST", path)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
        return json.loads(body)
    finally:
        conn.close()


@pytest.mark.parametrize("outage", ["stalled", "down"])
def test_no_logship_call_blocks_the_event_loop(
    server: FaultServer, tmp_path: Path, outage: str
) -> None:
    (tmp_path / "probe_app.py").write_text(PROBE_APP.format(example=EXAMPLE))
    config = json.loads(Path(EXAMPLE, "log_config.json").read_text())
    config["handlers"]["ship"].update(
        # A small ring and small batches, so that the requests below overflow
        # memory into the spill (past half the ring) with room to spare; a
        # timeout that outlasts the stall; long pauses between attempts.
        capacity=1000,
        batch_max_records=50,
        timeout=60.0,
        retry_max_backoff=5.0,
    )
    log_config = tmp_path / "log_config.json"
    log_config.write_text(json.dumps(config))
    if outage == "stalled":
        server.default = STALL  # every request is read, then held unanswered
    else:
        server.down()  # connections refused

    proc, port = uvicorn(
        "probe_app:app", str(tmp_path), str(log_config), server.url("/fastapi"), tmp_path
    )
    with proc:
        post(port, "/_probe/start")
        ids = load(port, 400, outage)
        probe = post(port, "/_probe/stop")
        stats = probe["stats"]
        # The probe ran all along, and logship was under pressure meanwhile.
        require(probe["samples"] >= 20, probe)
        require(stats["shipped"] == 0 and stats["spilled"] > 0, stats)
        assert probe["max_lag"] < MAX_LAG, probe

        # Nothing was lost: once the collector answers, every request's events arrive.
        if outage == "stalled":
            server.default = status(201)
            server.release.set()  # the stalled requests are cut, and sent again
        else:
            server.up()
        arrived = wait_until(lambda: {e.get("request_id") for e in server.events()} >= set(ids), 30)
        assert arrived, str(post(port, "/_probe/stats"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == -signal.SIGTERM, proc.describe()
    check_orders(server.events(), ids)
