"""dictConfig replaces the handler while its first batch is on its way (Django's autoreloader).

argv: URL SPILL_DIR DELAY. The first handler logs one event; DELAY seconds
later another thread runs the same dictConfig again while the main thread is
busy in pure Python. Prints one JSON line: the first handler's stats().
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
import threading
import time

url, spill_dir, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
config = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"ship": {"class": "logship.ShipHandler", "url": url, "spill_dir": spill_dir}},
    "root": {"level": "INFO", "handlers": ["ship"]},
}
logging.config.dictConfig(config)
first = logging.getLogger().handlers[0]
logging.getLogger("app").info("first")


def reconfigure() -> None:
    threading.Event().wait(delay)
    logging.config.dictConfig(config)


t = threading.Thread(target=reconfigure)
t.start()
busy_until = time.monotonic() + 1.0
while time.monotonic() < busy_until:  # the main thread is busy, holding the GIL in turns
    pass
t.join(30)
second = logging.getLogger().handlers[0]
assert second is not first
second.flush(10)
print(json.dumps(first.stats()), flush=True)
