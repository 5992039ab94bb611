"""A fleet on 127.0.0.1: three Fluent Bit nodes, each with an ``http`` input, and HAProxy.

Each node (:class:`fluentbit.FluentBit`) buffers on disk and writes what it
takes to its own ``file`` output; :meth:`Fleet.counts` reads the three
outputs back. HAProxy (Debian's ``haproxy``, found through ``HAPROXY``,
``PATH`` or ``/usr/sbin``; tests that need it are skipped, saying why,
without it) balances HTTP requests over the nodes with health checks on each
node's ``/health`` and retries on another node, configured as
``docs/scaling.md`` shows, with faster checks. Every port is a free one;
:meth:`Fleet.kill` is a SIGKILL, :meth:`Fleet.start_node` brings a node back
on its port with its storage. The ``fleet`` fixture (conftest.py) stops
every process it started, whatever the test did. Like fluentbit.py, this
needs pytest only for a test's own calls: ``benchmarks/fleet_bench.py``
uses it too.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fluentbit import FluentBit, free_port, terminate, unavailable

ENV = "HAPROXY"

#: A node's input: its health endpoint is what HAProxy checks.
HTTP_INPUT = {
    "name": "http",
    "listen": "127.0.0.1",
    "port": "{port}",
    "enable_health_endpoint": "true",
}

#: HAProxy in front of the nodes: docs/scaling.md's configuration, with the
#: tests' ports and faster health checks (a node is down after two failed
#: checks 0.2 s apart); test_fleet.py checks that the rest is the guide's.
HAPROXY_CONFIG = """\
global
    maxconn 1024
    tune.bufsize 65536
    log stdout format raw local0

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    timeout connect 1s
    timeout client 60s
    timeout http-request 10s
    timeout http-keep-alive 30s
    timeout server 5s
    timeout check 1s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout 503

frontend logs
    bind 127.0.0.1:{port}
    default_backend fluent_bit

backend fluent_bit
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server check inter {inter} fastinter {inter} downinter {inter} fall 2 rise 2
{servers}

listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


def haproxy_binary() -> str:
    """The HAProxy binary, or skip the test saying why there is none."""
    path = os.environ.get(ENV) or shutil.which("haproxy")
    if not path and os.access("/usr/sbin/haproxy", os.X_OK):
        path = "/usr/sbin/haproxy"  # Debian's place, off a user's PATH
    if not path:
        unavailable(
            f"no HAProxy: install it (apt-get install haproxy) or set {ENV} (see tests/fleet.py)"
        )
    if not os.access(path, os.X_OK):
        unavailable(f"{ENV}={path} is not an executable HAProxy")
    return path


def _wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        threading.Event().wait(0.02)


class HAProxy:
    """One HAProxy process in front of ``ports``, in the foreground, logging to its folder."""

    def __init__(self, folder: Path, ports: list[int], inter: str = "200ms") -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port, self.stats_port = free_port(), free_port()
        self.names = [f"node{i}" for i in range(len(ports))]
        servers = "\n".join(
            f"    server {name} 127.0.0.1:{port}"
            for name, port in zip(self.names, ports, strict=True)
        )
        self.config = self.folder / "haproxy.cfg"
        self.config.write_text(
            HAPROXY_CONFIG.format(
                port=self.port, stats_port=self.stats_port, inter=inter, servers=servers
            )
        )
        self.log = self.folder / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, path: str = "/app") -> str:
        """The URL a handler ships to."""
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self, timeout: float = 15.0) -> HAProxy:
        """Start it (``-db``: in the foreground) and wait until every node is UP."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [haproxy_binary(), "-db", "-f", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            _wait(lambda: self._alive() and self.all_up(), timeout, "HAProxy to see every node UP")
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}: {self.log_text()}") from None
        return self

    def _alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"HAProxy exited: {self.log_text()}")
        return True

    def servers(self) -> dict[str, dict[str, str]]:
        """Each node's row of HAProxy's statistics (``status``, ``wretr``, ``wredis``, …)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2
            ) as r:
                text = r.read().decode()
        except OSError:
            return {}
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {row["svname"]: row for row in rows if row["svname"] in self.names}

    def status(self, name: str) -> str:
        """``UP``, ``DOWN`` or a transition (``UP 1/2``), as HAProxy sees node ``name``."""
        return self.servers().get(name, {}).get("status", "")

    def all_up(self) -> bool:
        rows = self.servers()
        return len(rows) == len(self.names) and all(r["status"] == "UP" for r in rows.values())

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM (HAProxy's hard stop), SIGKILL if it lingers; reaped either way."""
        terminate(self.proc)


class Fleet:
    """Three (``size``) Fluent Bit nodes buffering on disk, and HAProxy before them (``proxy``)."""

    def __init__(self, folder: Path, size: int = 3, proxy: bool = True) -> None:
        self.nodes = [
            FluentBit(folder / f"node{i}", [HTTP_INPUT], storage=True) for i in range(size)
        ]
        self.proxy = HAProxy(folder / "haproxy", [n.port for n in self.nodes]) if proxy else None
        if proxy:
            haproxy_binary()  # skip before starting anything

    def start(self) -> Fleet:
        """Start every node, then HAProxy; on a failure, stop what started and raise."""
        try:
            for node in self.nodes:
                node.start()
            if self.proxy is not None:
                self.proxy.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop HAProxy and kill every node (each reaped): nothing is read from them after."""
        if self.proxy is not None:
            self.proxy.stop()
        for node in self.nodes:
            node.kill()

    def url(self, path: str = "/app") -> str:
        """HAProxy's URL."""
        assert self.proxy is not None, "a fleet without HAProxy"
        return self.proxy.url(path)

    def urls(self, path: str = "/app") -> list[str]:
        """Each node's own URL, in order."""
        return [f"http://127.0.0.1:{n.port}{path}" for n in self.nodes]

    def kill(self, i: int) -> set[str]:
        """SIGKILL node ``i``; return the uuids it held unwritten (see ``FluentBit.held``)."""
        self.nodes[i].kill()
        return self.nodes[i].held()

    def start_node(self, i: int) -> None:
        """Start node ``i`` again, on its port, with what its storage holds."""
        self.nodes[i].start()

    def records(self) -> list[dict[str, Any]]:
        """Every record every node has written."""
        return [r for n in self.nodes for r in n.records()]

    def counts(self, key: str = "uuid") -> Counter[Any]:
        """How many times each value of ``key`` was written, over every node."""
        return Counter(r[key] for r in self.records() if key in r)

    def wait_for(self, values: set[Any], key: str = "uuid", timeout: float = 30.0) -> Counter[Any]:
        """Wait until every one of ``values`` of ``key`` was written; the counts, or fail."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counts(key)
            missing = values - counts.keys()
            if not missing:
                return counts
            if time.monotonic() > deadline:
                import pytest  # a test's own call

                logs = "\n".join(n.log_text() for n in self.nodes)
                pytest.fail(f"{len(missing)} of {len(values)} never written: {logs}")
            threading.Event().wait(0.1)
