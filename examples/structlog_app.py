"""structlog through logship: key-value pairs arrive as event fields.

structlog renders nothing here: its last processor,
``ProcessorFormatter.wrap_for_formatter``, hands the event dict to the
standard library's logging, and ``ShipHandler`` turns the dict's keys into
top-level fields of the event (its ``event`` key becomes ``message``).
``logship.context`` adds a request id to every event logged inside the block,
and a ``RedactFilter`` masks the password before it leaves the thread.

    logship receive &                       # a local receiver on port 9880
    python examples/structlog_app.py        # or: ... structlog_app.py URL
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

import logship


def configure(url: str) -> logship.ShipHandler:
    """Send structlog's events, and the standard library's, to ``url``."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.processors.StackInfoRenderer(),
            # Render tracebacks here, on the application's thread: `exc_info=True`
            # can only be resolved inside the `except` block.
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logship.ShipHandler(url=url, fields={"service": "structlog-example"})
    handler.addFilter(logship.RedactFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def main(argv: list[str]) -> int:
    """Log a few events of each kind; return 0 once all of them are delivered."""
    url = argv[1] if len(argv) > 1 else os.environ.get("LOGSHIP_URL", "http://127.0.0.1:9880/app")
    handler = configure(url)
    log = structlog.get_logger("shop.checkout")

    log.info("service started", version="1.4.2")
    with logship.context(request_id="r-42"):
        log.info("cart priced", items=3, total_cents=4599, currency="EUR")
        log.warning("login retried", user="ada", password="hunter2")
        try:
            raise TimeoutError("payment gateway did not answer")
        except TimeoutError:
            log.exception("payment failed", gateway="acme")
    logging.getLogger("shop.legacy").info("a standard-library record, %s", "formatted")

    delivered = handler.flush(10.0)
    print("delivered" if delivered else "not delivered", handler.stats())
    return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
