"""Replay a spill folder's backlog, close the handler while a replayed batch is in flight,
then live on for a second (the process does not end with the handler).

argv: URL SPILL_DIR. Prints ``CLOSED {stats}`` after close().
"""

from __future__ import annotations

import json
import sys
import threading
import time

import logship

url, spill_dir = sys.argv[1], sys.argv[2]
handler = logship.ShipHandler(url=url, spill_dir=spill_dir, retry_max_backoff=0.2)
deadline = time.monotonic() + 20
while handler.stats()["replayed"] < 1 and time.monotonic() < deadline:
    threading.Event().wait(0.005)
handler.close()
print("CLOSED", json.dumps(handler.stats()), flush=True)
threading.Event().wait(1.0)
