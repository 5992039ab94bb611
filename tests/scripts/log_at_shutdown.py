"""Logs its first record from an atexit hook, during interpreter shutdown.

On Python 3.12+ no thread can start then, so the handler's worker never
runs: ``close()`` must spill the record from its own thread.
"""

import atexit
import logging
import sys

import logship

url, folder = sys.argv[1], sys.argv[2]
handler = logship.ShipHandler(url=url, spill_dir=folder, shutdown_timeout=2.0)
log = logging.getLogger("late")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False


def late() -> None:
    log.info("logged during interpreter shutdown")
    started = handler._worker is not None and bool(handler._worker.threads)
    print(f"worker-started={started}", flush=True)


atexit.register(late)  # registered after logging's own hook, so it runs first
