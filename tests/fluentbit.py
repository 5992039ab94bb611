"""A real Fluent Bit on 127.0.0.1, for the tests of the protocols it takes.

The binary is found through ``FLUENT_BIT`` (the Makefile points it at
``../shared/aggregators/fluent-bit`` when that exists); tests that need it
are skipped, saying why, when it is not there. Each instance gets its own
folder, free loopback ports and a ``file`` output with ``format plain``: one
JSON record per line, which :meth:`FluentBit.records` reads back.

With ``storage=True`` an instance buffers on disk, as a node that must not
lose what it acknowledged is set up: a SIGKILL (:meth:`FluentBit.kill`)
leaves its chunks in its folder, and :meth:`FluentBit.start` again, on the
same ports and folder, writes them out.

Nothing here needs pytest but a test's own calls (``wait_for``): the
benchmarks use it too (``benchmarks/fleet_bench.py``). The ``fluent_bit``
fixture is in conftest.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

ENV = "FLUENT_BIT"

#: A UUID as logship makes them (version 7), in the bytes of a storage chunk.
_UUID7 = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


class Missing(RuntimeError):
    """A program this machine lacks (raised outside a pytest run; a test is skipped instead)."""


def unavailable(reason: str) -> NoReturn:
    """Skip the test, saying why; outside a pytest run (the benchmarks), raise :class:`Missing`."""
    pytest = sys.modules.get("pytest")
    if pytest is not None:
        pytest.skip(reason)
    raise Missing(reason)


def binary() -> str:
    """The Fluent Bit binary, or skip the test saying why there is none."""
    path = os.environ.get(ENV)
    if not path:
        unavailable(f"{ENV} is not set: no Fluent Bit to test against (see tests/fluentbit.py)")
    if not os.access(path, os.X_OK):
        unavailable(f"{ENV}={path} is not an executable Fluent Bit")
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
    ``storage``: every input buffers in chunk files under ``storage/``
    (``storage.type filesystem``) instead of memory only.
    """

    def __init__(
        self,
        folder: Path,
        inputs: list[dict[str, str]],
        extra: str = "",
        storage: bool = False,
    ) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.out = self.folder / "out.log"
        self.storage = self.folder / "storage" if storage else None
        self.ports: list[int] = []
        self._waits: list[int | str] = []  # the TCP ports and Unix sockets to wait for
        service = "[SERVICE]\n    flush 0.1\n    grace 1\n    log_level warn\n"
        if self.storage is not None:
            # Chunks are written through a shared memory map: what the node has
            # taken survives the process being killed, and a start finds it.
            service += f"    storage.path {self.storage}\n    storage.sync normal\n"
        sections = [service]
        for settings in inputs:
            port = free_port()
            self.ports.append(port)
            if any("{port}" in str(v) for v in settings.values()):
                self._waits.append(port)
            if "unix_path" in settings:
                self._waits.append(str(settings["unix_path"]))
            if self.storage is not None:
                settings = {**settings, "storage.type": "filesystem"}
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
        self._records: list[dict[str, Any]] = []  # read from the output so far
        self._read = 0  # up to this offset

    @property
    def port(self) -> int:
        """The port of the first input."""
        return self.ports[0]

    def start(self, timeout: float = 15.0) -> FluentBit:
        """Start it (again, after :meth:`kill`); wait until every TCP input and Unix socket accepts.

        A restart listens on the same ports, reads the same storage folder
        and appends to the same output file and log.
        """
        with open(self.log, "ab") as log:
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
        """Every record written so far (a line a flush is still writing is left out).

        A line that a kill cut short is continued, after a restart, by the
        next record written: that record is read from the end of the line.
        """
        # Read on from where the last call stopped: tests poll this while
        # thousands of records arrive.
        try:
            with open(self.out, "rb") as f:
                f.seek(self._read)
                data = f.read()
        except FileNotFoundError:
            return []
        *lines, _being_written = data.split(b"\n")
        for line in lines:
            self._read += len(line) + 1
            record = _last_object(line.decode(errors="replace"))  # a kill may cut a character
            if record is not None:
                self._records.append(record)
        return list(self._records)

    def held(self) -> set[str]:
        """The event uuids in its storage chunks: taken, and not yet written out and done with.

        Read after :meth:`kill`, these are what the node had in flight when it
        died, and the only events a restart can write a second time.
        """
        if self.storage is None:
            return set()
        found: set[str] = set()
        for path in self.storage.rglob("*"):
            if path.is_file():
                found.update(m.decode() for m in _UUID7.findall(path.read_bytes()))
        return found

    def wait_for(self, n: int, timeout: float = 20.0, key: str = "uuid") -> list[dict[str, Any]]:
        """Wait until ``n`` distinct ``key`` values were written; the records, or fail."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            if len({r.get(key) for r in records if key in r}) >= n:
                return records
            if time.monotonic() > deadline:
                import pytest  # a test's own call

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
        terminate(self.proc)

    def __enter__(self) -> FluentBit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def terminate(proc: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """SIGTERM ``proc`` if it runs, SIGKILL it after ``grace`` seconds; reaped either way."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _last_object(line: str) -> dict[str, Any] | None:
    """The JSON object that ``line`` is, or that ends it after a torn record; else None."""
    try:
        record = json.loads(line)
    except ValueError:
        decoder = json.JSONDecoder()
        for start in (i for i, c in enumerate(line) if c == "{" and i > 0):
            try:
                record, end = decoder.raw_decode(line, start)
            except ValueError:
                continue
            if end == len(line):
                break
        else:
            return None
    return record if isinstance(record, dict) else None


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
