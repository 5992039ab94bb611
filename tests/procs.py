"""Real subprocesses for the framework, example and signal tests.

A :class:`Proc` reads its stdout and stderr on threads, so a chatty child
never blocks on a full pipe; every wait has a deadline, and leaving the
``with`` block kills and reaps a child that is still running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def plain_env(**extra: str) -> dict[str, str]:
    """This environment less LOGSHIP_*, with ``extra``.

    Nothing goes on ``PYTHONPATH``: a child of ``sys.executable`` imports the
    logship installed in the test environment, as the tests do, never this
    checkout (``tests/test_packaging.py`` checks that it does).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSHIP_")}
    env.update(extra)
    return env


def dead_letters(folder: str) -> list[dict[str, Any]]:
    """``logship spill status --dead-letters``, run as users run it: one JSON line per event."""
    r = subprocess.run(
        [sys.executable, "-m", "logship", "spill", "status", "--dir", folder, "--dead-letters"],
        env=plain_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def child_env(**extra: str) -> dict[str, str]:
    """:func:`plain_env`, unbuffered, writing no bytecode."""
    return plain_env(**{"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **extra})


class Proc:
    """A child process; ``with Proc(...) as p:`` guarantees it is gone afterwards."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: dict[str, str],
        cwd: str | None = None,
        new_session: bool = False,
    ) -> None:
        self.args = list(args)
        # A child that forks its own workers (gunicorn) gets a session of its own,
        # so that kill() can end the whole group and leave no orphan behind.
        self.new_session = new_session
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=new_session,
        )
        self.pid = self.proc.pid
        self._cond = threading.Condition()
        self._text = {"stdout": "", "stderr": ""}
        self._open = 2
        self._readers = [
            threading.Thread(target=self._read, args=(name,), daemon=True)
            for name in ("stdout", "stderr")
        ]
        for t in self._readers:
            t.start()

    def _read(self, name: str) -> None:
        stream = getattr(self.proc, name)
        for raw in iter(stream.readline, b""):
            with self._cond:
                self._text[name] += raw.decode(errors="replace")
                self._cond.notify_all()
        with self._cond:
            self._open -= 1
            self._cond.notify_all()

    @property
    def stdout(self) -> str:
        with self._cond:
            return self._text["stdout"]

    @property
    def stderr(self) -> str:
        with self._cond:
            return self._text["stderr"]

    def describe(self) -> str:
        with self._cond:
            return (
                f"{' '.join(self.args)} (exit {self.proc.returncode})\n"
                f"--- stdout\n{self._text['stdout']}\n--- stderr\n{self._text['stderr']}"
            )

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first match of ``pattern`` in stdout or stderr, waiting for it."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for name in ("stdout", "stderr"):
                    m = regex.search(self._text[name])
                    if m:
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._open == 0:
                    break
                self._cond.wait(min(remaining, 0.1))
        self.kill()
        pytest.fail(f"no {pattern!r} within {timeout} s from {self.describe()}")

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self, timeout: float) -> int:
        """The exit status; fails the test (after killing the child) at the deadline."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"did not exit within {timeout} s: {self.describe()}")
        for t in self._readers:
            t.join(5)
        return code

    def kill(self) -> None:
        """Kill and reap the child if it still runs, and its process group if it has one."""
        if self.new_session and self.proc.poll() is None:  # the group id is surely ours
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass  # the whole group is gone already
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for t in self._readers:
            t.join(5)

    def __enter__(self) -> Proc:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
