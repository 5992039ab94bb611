"""gunicorn serving examples/gunicorn_app in a subprocess, and load for it.

Its ``gunicorn.conf.py`` is loaded by a test config that only changes the
bind address, the worker count, ``preload_app`` and the handler's options.
Each request logs one event with the request id it was sent with; gunicorn
runs in a session of its own, so that a failed test kills it whole.
"""

from __future__ import annotations

import http.client
import itertools
import os
import re
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from procs import REPO, Proc, child_env

EXAMPLE = os.path.join(REPO, "examples", "gunicorn_app")

CONF = """\
import runpy

globals().update(
    (k, v) for k, v in runpy.run_path({example!r}).items() if not k.startswith("__")
)
bind = "127.0.0.1:0"
workers = {workers}
preload_app = {preload}
logconfig_dict["handlers"]["ship"].update({ship!r})
"""


class Gunicorn:
    """gunicorn serving the example app, in a session of its own."""

    def __init__(self, tmp: Path, url: str, *, workers: int, preload: bool, **ship: Any) -> None:
        self.workers = workers
        self.spill = tmp / "spill"
        conf = tmp / "gunicorn_test.conf.py"
        example = os.path.join(EXAMPLE, "gunicorn.conf.py")
        conf.write_text(CONF.format(example=example, workers=workers, preload=preload, ship=ship))
        env = child_env(
            LOGSHIP_URL=url,
            LOGSHIP_SPILL_DIR=str(self.spill),  # one folder for the master and every worker
            XDG_RUNTIME_DIR=str(tmp),  # where gunicorn 25+ puts its control socket
        )
        self.proc = Proc(
            [sys.executable, "-m", "gunicorn", "-c", str(conf), "--chdir", EXAMPLE, "app:app"],
            env=env,
            new_session=True,
        )
        self.port = int(self.proc.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)")[1])

    def get(self, path: str, request_id: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers={"X-Request-ID": request_id})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def load(self, minimum: int) -> dict[str, int]:
        """Send requests, 8 at a time, until ``minimum`` are answered and every worker answered.

        Returns the pid of the worker that answered each request id.
        """
        answered: dict[str, int] = {}
        with ThreadPoolExecutor(8) as pool:
            while len(answered) < minimum or len(set(answered.values())) < self.workers:
                if len(answered) >= 50 * minimum:
                    pytest.fail(f"only workers {set(answered.values())} ever answered")
                ids = [f"req-{len(answered) + i}" for i in range(16)]
                for rid, (status, body) in zip(
                    ids, pool.map(lambda r: self.get("/hello", r), ids), strict=True
                ):
                    assert status == 200, body
                    m = re.fullmatch(rf"{rid} handled by worker (\d+)\n", body)
                    assert m, body
                    answered[rid] = int(m[1])
        return answered

    def paced(self, rate: float, seconds: float, threads: int = 16) -> tuple[dict[str, int], float]:
        """Send ``rate`` requests a second for ``seconds``, from ``threads`` threads.

        Each thread keeps its share of a fixed schedule: a request that is
        late goes at once, and none starts after ``seconds``; so a machine
        that cannot keep up answers fewer. Returns the pid of the worker that
        answered each request id, and the seconds from the first request to
        the last answer.
        """
        answered: dict[str, int] = {}
        lock = threading.Lock()
        start = time.monotonic()
        end = start + seconds

        def client(j: int) -> None:
            for k in itertools.count():
                due = start + (k * threads + j) / rate
                if due >= end or time.monotonic() >= end:
                    return
                threading.Event().wait(max(0.0, due - time.monotonic()))
                rid = f"req-{j}-{k}"
                status, body = self.get("/hello", rid)
                assert status == 200, body
                m = re.fullmatch(rf"{rid} handled by worker (\d+)\n", body)
                assert m, body
                with lock:
                    answered[rid] = int(m[1])

        with ThreadPoolExecutor(threads) as pool:
            for done in [pool.submit(client, j) for j in range(threads)]:
                done.result()
        return answered, time.monotonic() - start

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to the master; it must stop its workers and exit 0 within ``timeout``."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout) == 0, self.proc.describe()
