"""Rebuild logging with dictConfig while the old handler's worker is stuck on a stalled server.

argv: URL. Prints "logged", waits for a line on stdin (the test sends it once
the server holds the request), runs dictConfig again with a new ShipHandler,
prints "elapsed <seconds>", logs with the new handler and exits (delivering
at exit).
"""

from __future__ import annotations

import logging
import logging.config
import sys
import time
from typing import Any


def config(url: str, logger: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "ship": {
                "class": "logship.ShipHandler",
                "url": url,
                "spill": False,
                "flush_interval": 0.05,
                "shutdown_timeout": 1.0,
                "fields": {"config": logger},
            }
        },
        "root": {"handlers": ["ship"], "level": "INFO"},
    }


def main() -> None:
    url = sys.argv[1]
    logging.config.dictConfig(config(url, "first"))
    for i in range(50):
        logging.getLogger("app").info("stuck %d", i)
    print("logged", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    logging.config.dictConfig(config(url, "second"))
    print(f"elapsed {time.monotonic() - start:.3f}", flush=True)
    for i in range(20):
        logging.getLogger("app").info("after %d", i)


main()
