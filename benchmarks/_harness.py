"""The processes a benchmark talks to: a case in a fresh subprocess, and a receiver.

Each case runs as ``sys.executable benchmarks/<case>.py ...`` with a hard
timeout and prints one JSON object on its own stdout line, the last such line
(a peer may print after it). The receiver is ``peer_receivers.py``, or
``python -m logship receive`` for the tools, in a process of its own. Only the
standard library is imported here: the cases, ``peers.py`` and ``run.py`` all
use it.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: Where every child runs: ``-m`` and ``-c`` put the working directory first on
#: sys.path, and from the checkout's root they would import its logship/
#: instead of the installed wheel that is measured.
CHILD_CWD = HERE
#: ``logship receive``: logship's wire only (the tools use it).
RECEIVER = (sys.executable, "-m", "logship", "receive", "--port", "0", "--quiet")
#: The benchmark's receiver: every handler's wire format, and outages.
PEER_RECEIVER = (sys.executable, os.path.join(HERE, "peer_receivers.py"), "--port", "0")
_LISTENING = "logship receive: listening on "


def run_case(script: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``benchmarks/<script>`` in a fresh interpreter and return its JSON result.

    A case that fails, times out or prints no result yields ``{"error": ...}``
    (with the tail of its stderr) instead of raising, so one broken case does
    not cost the others; one that timed out after printing its result keeps it
    as ``partial``. ``exited_at`` is when the process was seen to end, or was
    killed (``time.monotonic()``, which every process on the machine shares).
    """
    cmd = [sys.executable, os.path.join(HERE, script), *args]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=CHILD_CWD)
    except subprocess.TimeoutExpired as e:
        return {
            "error": f"timed out after {timeout:.0f} s",
            "exited_at": time.monotonic(),  # killed just now
            "stderr": _tail(e.stderr),
            "partial": _last_json(e.stdout),
        }
    exited_at, wall = time.monotonic(), time.perf_counter() - t0
    result = _last_json(proc.stdout)
    if proc.returncode != 0 or result is None:
        error = f"exit status {proc.returncode}" if proc.returncode else "no JSON result"
        return {"error": error, "stderr": _tail(proc.stderr)}
    return {**result, "wall_s": wall, "exited_at": exited_at}


def _last_json(text: str | bytes | None) -> dict[str, Any] | None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for line in reversed((text or "").splitlines()):
        try:
            value = json.loads(line) if line.startswith("{") else None
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _tail(text: str | bytes | None, lines: int = 15) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join((text or "").splitlines()[-lines:])


def missing(modules: Sequence[str]) -> str | None:
    """Why ``modules`` do not import in a fresh interpreter (its error's last line), or None."""
    code = "".join(f"import {m}\n" for m in modules)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=CHILD_CWD
        )
    except subprocess.TimeoutExpired:
        return "importing it timed out"
    if proc.returncode == 0:
        return None
    return (_tail(proc.stderr, 1) or f"exit status {proc.returncode}").strip()


def receiver_stats(url: str, timeout: float = 2.0) -> dict[str, int]:
    """The counters of the receiver serving ``url`` (``GET /_logship/stats``)."""
    parts = urllib.parse.urlsplit(url)
    with urllib.request.urlopen(
        f"{parts.scheme}://{parts.netloc}/_logship/stats", timeout=timeout
    ) as r:
        data: dict[str, int] = json.load(r)
    return data


@contextmanager
def receiver(command: Sequence[str] = PEER_RECEIVER) -> Iterator[str]:
    """Start a fresh receiver process; yield the URL to ship to; stop it after.

    Raises ``RuntimeError``, with the tail of its stderr, when it does not start.
    """
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=CHILD_CWD,
        )
        try:
            # Nothing more is printed after the first line: the pipe need not be drained.
            ready = select.select([proc.stdout], [], [], 15.0)[0]
            first = proc.stdout.readline() if ready and proc.stdout else ""
            if not first.startswith(_LISTENING):
                errors.seek(0)
                raise RuntimeError(
                    f"the receiver did not start (first line {first!r}):\n{_tail(errors.read())}"
                )
            yield first[len(_LISTENING) :].strip().rstrip("/") + "/bench"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
