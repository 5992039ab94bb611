"""A plain script: one ShipHandler on the root logger, a few events, exit.

    logship receive                 # in another terminal: a local receiver on port 9880
    python examples/plain.py        # or: LOGSHIP_URL=https://logs.internal:9880/app python ...

Nothing has to be closed by hand: at exit ``logging.shutdown()`` delivers what
is still queued, within ``shutdown_timeout``, and spills what it cannot.
"""

from __future__ import annotations

import logging
import os

import logship

URL = os.environ.get("LOGSHIP_URL", "http://127.0.0.1:9880/plain")


def main() -> None:
    handler = logship.ShipHandler(url=URL, fields={"service": "plain-example", "env": "dev"})
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().addHandler(handler)  # next to basicConfig's terminal handler

    log = logging.getLogger("example.plain")
    log.info("starting", extra={"version": logship.__version__})
    for item in range(3):
        log.info("processed item %d", item, extra={"item": item})
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("item failed", extra={"item": 3})

    # Optional: wait for delivery now rather than at exit, and look at the counters.
    delivered = handler.flush(timeout=5.0)
    stats = handler.stats()
    log.info(
        "done: delivered=%s shipped=%d pending=%d", delivered, stats["shipped"], stats["pending"]
    )


if __name__ == "__main__":
    main()
