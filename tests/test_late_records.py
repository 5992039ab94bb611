"""SPEC section 6: on Python 3.12 threads cannot start during interpreter
shutdown; a record logged then is spilled, not lost, and the next process
delivers it.

(Python 3.13 starts threads from atexit hooks again, so the case needs an
interpreter that refuses: this one, or another on the machine.)
"""

from __future__ import annotations

import glob
import os
import shutil
import site
import subprocess
import sys

import pytest

from conftest import attach
from procs import REPO, plain_env

SCRIPT = os.path.join(REPO, "tests", "scripts", "log_at_shutdown.py")


# Exits 0 when a thread cannot start from an atexit hook.
REFUSES = """
import atexit, os, threading
def late():
    try:
        threading.Thread(target=lambda: None).start()
    except RuntimeError:
        os._exit(0)
    os._exit(1)
atexit.register(late)
"""


def python_refusing_threads_at_exit() -> str | None:
    """An interpreter on this machine that cannot start a thread during shutdown, if any."""
    candidates = [sys.executable]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python")))
    candidates += [shutil.which(f"python3.{minor}") or "" for minor in range(12, 16)]
    for path in filter(None, candidates):
        try:
            # A pyenv shim for a version not selected fails here too.
            refuses = subprocess.run([path, "-c", REFUSES], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if refuses.returncode == 0:
            return path
    return None


def test_a_record_logged_during_shutdown_is_spilled_then_delivered(server, make_handler, tmp_path):
    python = python_refusing_threads_at_exit()
    if python is None:
        pytest.skip("no interpreter here refuses to start a thread at exit (Python 3.12 does)")
    # That interpreter runs the logship installed here, with this environment's
    # dependencies; msgpack's C extension is built for this interpreter, so its
    # pure-Python fallback is used.
    env = plain_env(PYTHONPATH=os.pathsep.join(site.getsitepackages()), MSGPACK_PUREPYTHON="1")
    folder = str(tmp_path / "spill")
    out = subprocess.run(
        [python, SCRIPT, "http://127.0.0.1:1/app", folder],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "worker-started=False" in out.stdout, out.stdout  # no thread at exit
    h = make_handler(server.url(), spill=True, spill_dir=folder)
    attach(h)
    assert server.wait_for_uuids(1, timeout=10), (out.stdout, out.stderr)
    assert server.events()[0]["message"] == "logged during interpreter shutdown"
    assert h.stats()["adopted"] == 1
