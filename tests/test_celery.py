"""Celery's prefork pool: examples/celery_app run by a real worker (docs/frameworks/celery.md).

The worker is a subprocess in a session of its own (``celery -A tasks worker
--pool prefork``); this process queues its tasks through the same broker, the
filesystem transport in a folder of ``tmp_path``. kombu's in-memory transport
would not do: its queues live in the memory of the process that made them, so
tasks sent from here would never reach the worker.

Pool processes are recycled after a few tasks (``--max-tasks-per-child``),
so that many of them exit while the worker runs: each task's event must
still arrive, exactly once, with the task's id, from the pool process that
ran it.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logship.cli.receive import Receiver

from conftest import wait_until
from procs import REPO, Proc, child_env

celery = pytest.importorskip(
    "celery", reason="Celery is not installed (pip install 'pylogship[test]')"
)
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the prefork pool needs fork")

EXAMPLE = os.path.join(REPO, "examples", "celery_app")
TASKS = 24
PER_CHILD = 3  # each pool process exits after this many tasks


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def producer(broker: Path) -> Any:
    """A Celery app that sends to the example's queue (the worker's transport options)."""
    app = celery.Celery("producer", broker="filesystem://")
    queue, control = broker / "queue", broker / "control"
    for folder in (queue, control):
        folder.mkdir(parents=True, exist_ok=True)
    app.conf.broker_transport_options = {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "control_folder": str(control),
    }
    return app


def test_each_task_event_arrives_exactly_once(receiver: Receiver, tmp_path: Path) -> None:
    broker = tmp_path / "broker"
    env = child_env(
        LOGSHIP_URL=receiver.endpoint("/celery"),
        LOGSHIP_SPILL_DIR=str(tmp_path / "spill"),
        CELERY_BROKER_FOLDER=str(broker),
    )
    args = [sys.executable, "-m", "celery", "--workdir", EXAMPLE, "-A", "tasks", "worker"]
    args += ["--pool", "prefork", "--concurrency", "2", "--max-tasks-per-child", str(PER_CHILD)]
    args += ["--loglevel", "INFO", "--hostname", "example@localhost"]
    # Every task is queued before the worker starts: the filesystem transport's
    # reader takes no lock, and a worker that picks up a message file still
    # being written stops on it ("Unrecoverable error: JSONDecodeError").
    app = producer(broker)
    sent = {}
    with app.connection_for_write() as conn:
        for i in range(TASKS):
            order = f"o-{i}"
            result = app.send_task(
                "tasks.charge", args=[order, 1000 + i], connection=conn, ignore_result=True
            )
            sent[order] = result.id
    with Proc(args, env=env, new_session=True) as worker:
        worker.wait_for(r"example@localhost ready\.", 60)

        def charged() -> list[dict[str, Any]]:
            return [e for e in receiver.events() if e["logger"] == "shop.payments"]

        # Pool processes exit along the way: their last events arrive all the same.
        assert wait_until(lambda: len(charged()) >= TASKS, 60), (len(charged()), worker.describe())
        worker.send_signal(signal.SIGTERM)  # warm shutdown: running tasks finish, then exit
        assert worker.wait(60) == 0, worker.describe()

    assert receiver.counts()["duplicates"] == 0
    events = receiver.events()
    assert max(Counter(e["uuid"] for e in events).values()) == 1
    tasks = [e for e in events if e["logger"] == "shop.payments"]
    assert Counter(e["order_id"] for e in tasks) == Counter(sent.keys())  # each exactly once
    for e in tasks:
        assert e["message"] == f"charged order {e['order_id']}"
        assert (e["task_id"], e["task_name"]) == (sent[e["order_id"]], "tasks.charge")
        assert e["cents"] == 1000 + int(e["order_id"][2:]) and e["service"] == "celery-example"
    # Sent by the pool process that ran the task: never the main process, and
    # at most PER_CHILD from any one of them (every one of those exited).
    pids = Counter(e["pid"] for e in tasks)
    assert worker.pid not in pids
    assert max(pids.values()) <= PER_CHILD and len(pids) >= TASKS // PER_CHILD, pids
    # Celery's own lines: "Task ... received" from the main process, "succeeded" from the pool.
    received = [e for e in events if e["logger"] == "celery.worker.strategy"]
    assert len(received) == TASKS and {e["pid"] for e in received} == {worker.pid}
    succeeded = [e for e in events if e["logger"] == "celery.app.trace"]
    assert len(succeeded) == TASKS and {e["pid"] for e in succeeded} == set(pids)
    # Fields bound for a task are gone once it ends.
    assert all("task_id" not in e for e in received)
