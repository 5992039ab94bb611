"""Flask: configure logging with ``dictConfig`` *before* creating the app.

    logship receive                     # in another terminal
    python examples/flask_app.py        # the development server on 127.0.0.1:5000 (PORT=...)
    curl localhost:5000/orders/7; curl localhost:5000/boom

Flask then adds no handler of its own: ``app.logger``, werkzeug's request
log and unhandled exceptions (with their traceback) all reach the root
logger and so logship. A filter adds the request's method, path and id to
every record logged while a request is handled.
"""

from __future__ import annotations

import logging
import logging.config
import os

from flask import Flask, has_request_context, request

import logship


class RequestFields(logging.Filter):
    """Add the current request's facts to each record as event fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.method = request.method
            record.path = request.path
            record.request_id = request.headers.get("X-Request-ID", "-")
        return True


logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": RequestFields}},
        "handlers": {
            "console": {"class": "logging.StreamHandler"},
            "ship": {
                "class": "logship.ShipHandler",
                "url": os.environ.get("LOGSHIP_URL", "http://127.0.0.1:9880/flask"),
                "fields": {"service": "shop", "env": "dev"},
                "filters": ["request"],
                "level": "INFO",
            },
        },
        "root": {"level": "INFO", "handlers": ["ship", "console"]},
    }
)

app = Flask("shop")


@app.get("/orders/<int:order_id>")
def order(order_id: int) -> dict[str, object]:
    app.logger.info("order %d looked up", order_id, extra={"order_id": order_id})
    return {"order": order_id, "status": "shipped"}


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("the payment service is down")  # logged by Flask with its traceback


if __name__ == "__main__":
    # The development server, e.g. as a container's command: turn the SIGTERM of
    # `docker stop` into a normal exit, so that queued events are delivered.
    logship.install_signal_handlers()
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
