"""SPEC section 6: on Python 3.12+ threads cannot start during interpreter
shutdown; a record logged then is spilled, not lost, and the next process
delivers it."""

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


def python_312_or_later() -> str | None:
    """A working interpreter of Python 3.12 or later on this machine, if there is one."""
    if sys.version_info >= (3, 12):
        return sys.executable
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python")))
    candidates += [shutil.which(f"python3.{minor}") or "" for minor in range(12, 16)]
    for path in filter(None, candidates):
        try:
            ok = subprocess.run(
                [path, "-c", "import sys; sys.exit(sys.version_info < (3, 12))"],
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if ok.returncode == 0:  # a pyenv shim for a version not selected fails here
            return path
    return None


def test_a_record_logged_during_shutdown_is_spilled_then_delivered(server, make_handler, tmp_path):
    python = python_312_or_later()
    if python is None:
        pytest.skip("no Python 3.12+ interpreter here to run the shutdown case")
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
    assert "worker-started=False" in out.stdout, out.stdout  # 3.12+: no thread at exit
    h = make_handler(server.url(), spill=True, spill_dir=folder)
    attach(h)
    assert server.wait_for_uuids(1, timeout=10), (out.stdout, out.stderr)
    assert server.events()[0]["message"] == "logged during interpreter shutdown"
    assert h.stats()["adopted"] == 1
