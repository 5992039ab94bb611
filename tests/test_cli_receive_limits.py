"""``logship receive`` against senders that are broken or hostile, over real sockets.

Each test sends what the trouble really looks like on the wire and waits on
the answer with a deadline.
"""

from __future__ import annotations

import gzip
import os
import re
import sys

import pytest
from procs import Proc, child_env
from receiving import post

from logship.cli.receive import Receiver

MiB = 1024 * 1024
RECEIVE = [sys.executable, "-m", "logship", "receive", "--port", "0"]
LISTENING = r"logship receive: listening on (http://127\.0\.0\.1:\d+)"
linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads /proc")


# -- decompression -------------------------------------------------------------------------


def gzip_bomb(mib: int) -> bytes:
    """One event padded with ``mib`` MiB of spaces: about a kilobyte of gzip per MiB."""
    spaces = gzip.compress(b" " * MiB)
    return gzip.compress(b'[{"uuid": "bomb"}') + spaces * mib + gzip.compress(b"]")


def test_a_gzip_bomb_is_refused_at_the_default_cap() -> None:
    body = gzip_bomb(100)  # 100 MiB from about 100 KB
    with Receiver() as r:
        answered = post(r.url, body, encoding="gzip")
        counts = r.counts()
    assert answered == (413, b"decompressed body larger than the 64 MiB limit\n")
    assert counts["bad_requests"] == 1 and counts["events"] == 0


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        match = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M)
    assert match
    return int(match[1]) / 1024


@linux_only
def test_a_gzip_bomb_costs_the_command_no_more_than_its_cap() -> None:
    with Proc([*RECEIVE, "--quiet"], env=child_env()) as p:
        url = p.wait_for(LISTENING)[1]
        before = peak_rss_mib(p.pid)
        answered = post(url + "/app", gzip_bomb(500), encoding="gzip")
        grew = peak_rss_mib(p.pid) - before
    # The 64 MiB of output the cap allows, and little more; not the 500 MiB the
    # bomb holds (decompressing it whole took more than 1 GiB).
    assert grew < 128, f"the receiver's peak memory grew by {grew:.0f} MiB"
    assert answered[0] == 413
