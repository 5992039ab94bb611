"""``logship demo``: a receiver subprocess, events logged to it, every one accounted for."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from typing import Any

import pytest

from logship.cli import demo
from logship.cli.receive import Receiver


def test_demo_command_delivers_every_event() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "logship", "demo", "--events", "500"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # 500 asked, 500 reported: the one with a traceback is one of them.
    assert "logging 500 events (one of them an error with its traceback)" in out
    assert "all 500 events arrived" in out
    assert re.search(r"received\s+500 unique, 0 duplicates", out), out
    assert re.search(r"^emitted\s+\d+/500\s+shipped\s+\d+\s+\d+ events/s$", out, re.M), out
    assert "receiver   received 500 events (500 unique, 0 duplicates" in out  # its own line
    assert elapsed < 60


def test_run_demo_in_process() -> None:
    out = io.StringIO()
    assert demo.run_demo(50, 0.0, out) == 0
    text = out.getvalue()
    assert "all 50 events arrived" in text
    assert "\r" not in text  # not a terminal: plain lines
    assert re.search(r"handler\s+emitted=50 .*shipped=50 .*pending=0", text), text


@pytest.mark.parametrize("total", [1, 2, 9])
def test_the_events_asked_for_include_the_one_with_a_traceback(
    make_handler: Any, total: int
) -> None:
    with Receiver() as receiver:
        handler = make_handler(receiver.endpoint("/demo"))
        emitted, _ = demo._log_paced(handler, total, 0.0, io.StringIO())
        assert handler.flush(10)
        assert receiver.wait_for(total, 10)
        events = receiver.events()
    assert emitted == total and len(events) == total
    assert [e["message"] for e in events if "exception" in e] == ["payment failed"]


@pytest.mark.skipif(os.name != "posix", reason="uses a shell script as the interpreter")
@pytest.mark.parametrize(
    "script", ["#!/bin/sh\nexit 3\n", "#!/bin/sh\necho something else\nexec sleep 30\n"]
)
def test_demo_gives_up_when_the_receiver_does_not_start(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], script: str
) -> None:
    fake = tmp_path / "python"
    fake.write_text(script)
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    started = time.monotonic()
    assert demo.run_demo(10, 0.0, io.StringIO()) == 1
    assert time.monotonic() - started < 15
    assert "did not start" in capsys.readouterr().err


def test_start_receiver_times_out(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.name != "posix":
        pytest.skip("uses a shell script as the interpreter")
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    started = time.monotonic()
    with pytest.raises(demo.DemoError, match="within 1 s"):
        demo.start_receiver(timeout=1.0)
    assert time.monotonic() - started < 10
