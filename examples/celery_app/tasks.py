"""A Celery worker with the prefork pool, shipping its logs and its tasks' through logship.

    logship receive                     # in another terminal
    cd examples/celery_app
    LOGSHIP_URL=http://127.0.0.1:9880/celery celery -A tasks worker --loglevel INFO
    python -c 'import tasks; tasks.charge.delay("o-1", 1250)'    # from the same folder

The worker configures logging once, in its main process, through the
``setup_logging`` signal; the prefork pool then forks its child processes,
and each starts with an empty queue and worker threads of its own. Every
event logged while a task runs carries the task's id and name.

The broker is kombu's filesystem transport (a folder, ``CELERY_BROKER_FOLDER``,
by default under the temporary folder), so that the example needs no Redis or
RabbitMQ: put your broker's URL in its place. It is only for trying things
out: its worker takes no lock to read a message, and one that reads a message
file before the sender has finished writing it stops with an error.
"""

from __future__ import annotations

import logging
import logging.config
import os
import tempfile
from typing import Any

from celery import Celery, Task, signals

import logship

BROKER_FOLDER = os.environ.get(
    "CELERY_BROKER_FOLDER", os.path.join(tempfile.gettempdir(), "logship-celery-example")
)
QUEUE = os.path.join(BROKER_FOLDER, "queue")
CONTROL = os.path.join(BROKER_FOLDER, "control")
for folder in (QUEUE, CONTROL):
    os.makedirs(folder, exist_ok=True)  # the filesystem transport makes none itself

app = Celery("shop", broker="filesystem://")
app.conf.broker_transport_options = {
    # One folder both ways: producers write the messages the worker reads.
    "data_folder_in": QUEUE,
    "data_folder_out": QUEUE,
    "control_folder": CONTROL,
    "polling_interval": 0.1,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,  # keep Celery's loggers, created before this runs
    "formatters": {
        "terminal": {"format": "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "terminal"},
        "ship": {
            "class": "logship.ShipHandler",
            "url": os.environ.get("LOGSHIP_URL", "http://127.0.0.1:9880/celery"),
            "fields": {"service": "celery-example", "env": "dev"},
        },
    },
    "root": {"level": "INFO", "handlers": ["ship", "console"]},
}


@signals.setup_logging.connect
def configure_logging(**kwargs: Any) -> None:
    """Configure logging in the worker's main process, before the pool forks.

    With a receiver on this signal Celery leaves logging to it altogether:
    it neither clears the root logger's handlers (``worker_hijack_root_logger``)
    nor adds its own, and its loggers propagate to the root.
    """
    logging.config.dictConfig(LOGGING)


@signals.task_prerun.connect
def bind_task(task_id: str, task: Task, **kwargs: Any) -> None:
    """Put the task's id and name on every event logged while it runs."""
    logship.bind(task_id=task_id, task_name=task.name)


@signals.task_postrun.connect
def unbind_task(**kwargs: Any) -> None:
    # A pool process runs task after task on one thread: unbind, or the next task inherits them.
    logship.unbind("task_id", "task_name")


@signals.worker_process_shutdown.connect
def deliver_before_exit(**kwargs: Any) -> None:
    """Deliver what a pool process holds as it exits.

    A pool process ends with ``os._exit()``, which runs no exit handlers, so
    ``logging.shutdown`` never closes the handler there: ``close()`` delivers
    what is queued within ``shutdown_timeout`` and spills the rest.
    """
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logship.ShipHandler):
            handler.close()


log = logging.getLogger("shop.payments")


@app.task
def charge(order_id: str, cents: int) -> str:
    """Charge an order; the event carries the task's id besides these fields."""
    log.info("charged order %s", order_id, extra={"order_id": order_id, "cents": cents})
    return order_id
