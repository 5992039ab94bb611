"""loguru through logship: ``bind()``, ``contextualize()`` and keyword arguments as event fields.

loguru accepts a standard ``logging.Handler`` as a sink, but then hands it
a record whose message is loguru's formatted line and whose fields are one
attribute, ``extra``: they would arrive as a single nested ``extra`` object,
with the traceback inside the message. ``ShipSink`` below builds the record
itself: loguru's message as the message, each key of ``record["extra"]`` as
a field of its own, the exception as the record's ``exc_info``.

    logship receive &                   # a local receiver on port 9880
    python examples/loguru_app.py       # or: ... loguru_app.py URL
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

from loguru import logger

import logship

if TYPE_CHECKING:
    from loguru import Message

# What LogRecord.__init__ and formatters set on a record: a field of loguru's
# named like one of them would replace it, so it is renamed instead.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class ShipSink:
    """A loguru sink that hands each message to a ``logging.Handler`` as a ``LogRecord``.

    The record carries loguru's logger name (the module's ``__name__``), level
    name and number (``SUCCESS`` and ``TRACE`` too), time, file, line,
    function, thread and process. Each key of ``record["extra"]``, where
    ``bind()``, ``contextualize()`` and the keyword arguments of the call put
    their values, becomes an attribute, as ``extra=`` makes one, and so a
    field of the event; one named like a ``LogRecord`` attribute (``name``,
    ``module``, ``args``, ...) becomes ``extra_<name>``, as a field named
    like one of logship's core fields does.
    """

    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler

    def __call__(self, message: Message) -> None:
        r = message.record
        exc = r["exception"]
        record = logging.LogRecord(
            r["name"] or "loguru",  # None when logged from code that has no module
            r["level"].no,
            r["file"].path,
            r["line"],
            r["message"],  # loguru has formatted its arguments into it already
            None,
            (exc.type, exc.value, exc.traceback) if exc else None,
            r["function"],
        )
        record.levelname = r["level"].name
        record.created = r["time"].timestamp()
        record.thread, record.threadName = r["thread"].id, r["thread"].name
        record.process, record.processName = r["process"].id, r["process"].name
        for key, value in r["extra"].items():
            setattr(record, f"extra_{key}" if key in _RECORD_ATTRIBUTES else key, value)
        # handle(), not emit(): the handler's filters (a RedactFilter) see the record.
        self.handler.handle(record)


def configure(url: str) -> logship.ShipHandler:
    """Send loguru's messages of level INFO and above to ``url``."""
    handler = logship.ShipHandler(url=url, fields={"service": "loguru-example"})
    handler.addFilter(logship.RedactFilter())
    # enqueue=False (the default): the sink runs on the thread that logs, where
    # logship.context's fields are; the handler never blocks it anyway.
    logger.add(ShipSink(handler), level="INFO")
    return handler


def main(argv: list[str]) -> int:
    """Log a few events of each kind; return 0 once all of them are delivered."""
    url = argv[1] if len(argv) > 1 else os.environ.get("LOGSHIP_URL", "http://127.0.0.1:9880/app")
    handler = configure(url)

    logger.info("service started", version="1.4.2")
    log = logger.bind(user="ada")
    with logger.contextualize(request_id="r-42"), logship.context(tenant="acme"):
        log.info("cart priced at {total_cents} cents", items=3, total_cents=4599)
        log.warning("login retried", password="hunter2")
        try:
            raise TimeoutError("payment gateway did not answer")
        except TimeoutError:
            log.exception("payment failed")
    logger.success("order shipped")

    delivered = handler.flush(10.0)
    print("delivered" if delivered else "not delivered", handler.stats())
    return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
