"""A real Fluent Bit on 127.0.0.1, for the tests of the protocols it takes.

The binary is found through ``FLUENT_BIT`` (the Makefile points it at
``../shared/aggregators/fluent-bit`` when that exists); tests that need it
are skipped, saying why, when it is not there. Each instance gets its own
folder, free loopback ports and a ``file`` output with ``format plain``: one
JSON record per line, which :meth:`FluentBit.records` reads back.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ENV = "FLUENT_BIT"


def binary() -> str:
    """The Fluent Bit binary, or skip the test saying why there is none."""
    path = os.environ.get(ENV)
    if not path:
        pytest.skip(f"{ENV} is not set: no Fluent Bit to test against (see tests/fluentbit.py)")
    if not os.access(path, os.X_OK):
        pytest.skip(f"{ENV}={path} is not an executable Fluent Bit")
    return path


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FluentBit:
    """One Fluent Bit process with the given ``[INPUT]`` sections and a file output.

    ``inputs`` are the bodies of ``[INPUT]`` sections (without the header),
    each a mapping of its settings; ``{port}`` in a value is replaced by a
    free port, the same one for the whole section (see :attr:`ports`).
    """

    def __init__(self, folder: Path, inputs: list[dict[str, str]], extra: str = "") -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.out = self.folder / "out.log"
        self.ports: list[int] = []
        self._waits: list[int | str] = []  # the TCP ports and Unix sockets to wait for
        sections = ["[SERVICE]\n    flush 0.1\n    grace 1\n    log_level warn\n"]
        for settings in inputs:
            port = free_port()
            self.ports.append(port)
            if any("{port}" in str(v) for v in settings.values()):
                self._waits.append(port)
            if "unix_path" in settings:
                self._waits.append(str(settings["unix_path"]))
            lines = "".join(
                f"    {k} {str(v).replace('{port}', str(port))}\n" for k, v in settings.items()
            )
            sections.append(f"[INPUT]\n{lines}")
        sections.append(
            "[OUTPUT]\n    name file\n    match *\n"
            f"    path {self.folder}\n    file {self.out.name}\n    format plain\n"
        )
        self.config = self.folder / "fluent-bit.conf"
        self.config.write_text("\n".join(sections) + extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.folder / "fluent-bit.log"

    @property
    def port(self) -> int:
        """The port of the first input."""
        return self.ports[0]

    def start(self, timeout: float = 15.0) -> FluentBit:
        """Start it and wait until every TCP input and Unix socket accepts connections."""
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [binary(), "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        for port in self._waits:
            while not _listening(port):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"Fluent Bit did not start: {self.log.read_text()}")
                threading.Event().wait(0.02)
        return self

    def records(self) -> list[dict[str, Any]]:
        """Every record written so far (a line cut short by a flush under way is left out)."""
        try:
            text = self.out.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def wait_for(self, n: int, timeout: float = 20.0, key: str = "uuid") -> list[dict[str, Any]]:
        """Wait until ``n`` distinct ``key`` values were written; the records, or fail."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            if len({r.get(key) for r in records if key in r}) >= n:
                return records
            if time.monotonic() > deadline:
                pytest.fail(f"Fluent Bit wrote {len(records)} records, not {n}: {self.log_text()}")
            threading.Event().wait(0.05)

    def log_text(self) -> str:
        """What Fluent Bit said (its log), for failure messages."""
        try:
            return self.log.read_text()[-2000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not gone within its grace period."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> FluentBit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listening(where: int | str) -> bool:
    try:
        if isinstance(where, str):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(0.2)
                s.connect(where)
                return True
        with socket.create_connection(("127.0.0.1", where), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def fluent_bit(tmp_path: Path) -> Iterator[Any]:
    """Makes Fluent Bit instances (``fluent_bit(inputs)``); stops them after the test."""
    made: list[FluentBit] = []

    def make(inputs: list[dict[str, str]], extra: str = "") -> FluentBit:
        fb = FluentBit(tmp_path / f"fluent-bit-{len(made)}", inputs, extra).start()
        made.append(fb)
        return fb

    yield make
    for fb in made:
        fb.stop()
