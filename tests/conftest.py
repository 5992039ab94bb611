"""Shared fixtures: a fault-injecting collector, handlers that are always closed,
logging's global state restored after each test, a check for leaked threads, a
working directory outside the checkout, real Fluent Bit instances and fleets of
them (fluentbit.py, fleet.py), and the figures tests measured, in the summary."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import logship

from faultserver import FaultServer
from fleet import Fleet
from fluentbit import FluentBit

# Small timings keep the suite fast; the behaviour under test is the same.
FAST = {
    "flush_interval": 0.05,
    "retry_max_backoff": 0.2,
    "shutdown_timeout": 3.0,
    "timeout": 5.0,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests first: under xdist the other worker runs the rest meanwhile."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures tests measured (``record_property("figure", text)``), under xdist too."""
    figures = [
        (report.nodeid, value)
        for report in terminalreporter.stats.get("passed", [])
        for name, value in report.user_properties
        if name == "figure"
    ]
    if figures:
        terminalreporter.section("figures measured")
        for nodeid, text in figures:
            terminalreporter.line(f"{nodeid}: {text}")


@pytest.fixture(autouse=True, scope="session")
def _cwd_outside_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run the tests, and so every child they start, in an empty folder.

    ``python -m`` and ``python -c`` put the working directory first on
    ``sys.path``: a child started that way from the checkout would import its
    ``logship/`` instead of the installed package under test.
    """
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Give each test logging's global state back as it found it."""
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    saved = {
        name: (lg.level, list(lg.handlers), lg.propagate, lg.disabled)
        for name, lg in logging.Logger.manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    saved_disable = logging.root.manager.disable
    yield
    root.setLevel(saved_root[0])
    root.handlers[:] = saved_root[1]
    for name, lg in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(lg, logging.Logger):
            continue
        if name in saved:
            lg.level, handlers, lg.propagate, lg.disabled = saved[name]
            lg.handlers[:] = handlers
        else:
            lg.handlers[:] = []
            lg.setLevel(logging.NOTSET)
            lg.propagate = True
            lg.disabled = False
    logging.disable(saved_disable)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves logship worker threads running."""
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 10
    while True:
        leaked = [
            t
            for t in threading.enumerate()
            if t.ident not in before and t.name.startswith("logship-") and t.is_alive()
        ]
        if not leaked or time.monotonic() > deadline:
            break
        leaked[0].join(0.05)
    if leaked:
        # Where each one waits: what a leak report needs, and the thread may be gone later.
        frames = sys._current_frames()
        where = "".join(
            f"\n{t.name}:\n{''.join(traceback.format_stack(frames[t.ident]))}"
            for t in leaked
            if t.ident in frames
        )
        pytest.fail(f"logship threads still running after the test: {leaked}{where}")


@pytest.fixture
def server() -> Iterator[FaultServer]:
    """A collector on 127.0.0.1 answering 201 unless scripted otherwise."""
    srv = FaultServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def make_handler() -> Iterator[Callable[..., logship.ShipHandler]]:
    """Build ShipHandlers with fast timings; every one is closed after the test."""
    made: list[logship.ShipHandler] = []

    def make(url: str, **options: Any) -> logship.ShipHandler:
        opts = {**FAST, "spill": False, **options}
        h = logship.ShipHandler(url=url, **opts)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def attach(
    handler: logging.Handler, name: str = "app", level: int = logging.DEBUG
) -> logging.Logger:
    """A logger that sends only to ``handler``."""
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    return logger


def check_identity(stats: dict[str, Any]) -> None:
    """SPEC section 2: every event is in exactly one bucket."""
    assert (
        stats["emitted"] + stats["adopted"]
        == stats["shipped"] + stats["dropped"] + stats["rejected"] + stats["pending"]
    ), stats


def require_held(handler: logship.ShipHandler, kind: str, n: int) -> dict[str, Any]:
    """Wait for the answer ``kind`` ("http-401", …); then all ``n`` events are still pending.

    A held batch loses nothing (SPEC section 4): none shipped, dropped or rejected.
    Returns the stats.
    """
    require_within(lambda: handler.stats()["last_error_kind"] == kind, what=f"an answer {kind}")
    stats = handler.stats()
    assert stats["pending"] == n, stats
    assert stats["shipped"] == stats["dropped"] == stats["rejected"] == 0, stats
    check_identity(stats)
    return stats


def flushed(handler: logship.ShipHandler, server: FaultServer) -> list[dict[str, Any]]:
    """Flush ``handler`` (it must deliver everything), check its counters, return what arrived."""
    assert handler.flush(10), handler.stats()
    check_identity(handler.stats())
    return server.events()


def shipped(server: FaultServer, n: int) -> list[dict[str, Any]]:
    """Wait until ``n`` distinct events arrived; all that arrived, in UUID order."""
    assert server.wait_for_uuids(n), f"fewer than {n} events arrived"
    return sorted(server.events(), key=lambda e: e["uuid"])


def one(events: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    """The one event whose fields equal ``match``; fails if there are none or several."""
    found = [e for e in events if all(e.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(e.get("logger"), e.get("message")) for e in events])
    return found[0]


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses every connection (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def refused_url(refused_port: int) -> str:
    """A URL on 127.0.0.1 whose port refuses every connection."""
    return f"http://127.0.0.1:{refused_port}/app"


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.005)
    return True


def require_within(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` until it is true; fail the test at the deadline."""
    if not wait_until(predicate, timeout):
        pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")


def require(condition: object, message: object = "") -> None:
    """A precondition: fails the test, never counts as the failure an assertion checks.

    (Tests marked ``xfail(raises=AssertionError)`` then fail only on the bug itself.)
    """
    if not condition:
        pytest.fail(f"precondition failed: {message}")


@pytest.fixture
def fluent_bit(tmp_path: Path) -> Iterator[Callable[..., FluentBit]]:
    """Makes Fluent Bit instances (``fluent_bit(inputs)``); stops them after the test."""
    made: list[FluentBit] = []

    def make(inputs: list[dict[str, str]], extra: str = "") -> FluentBit:
        fb = FluentBit(tmp_path / f"fluent-bit-{len(made)}", inputs, extra).start()
        made.append(fb)
        return fb

    yield make
    for fb in made:
        # Nothing is read after the test: no need to wait out Fluent Bit's grace period.
        fb.kill()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """Starts fleets (``fleet(proxy=True, size=3)``); every process is stopped after the test."""
    made: list[Fleet] = []

    def make(proxy: bool = True, size: int = 3) -> Fleet:
        f = Fleet(tmp_path / f"fleet-{len(made)}", size, proxy)
        made.append(f)
        return f.start()

    yield make
    for f in made:
        f.stop()
