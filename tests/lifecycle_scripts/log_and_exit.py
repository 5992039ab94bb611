"""Log COUNT events through a spilling handler, say so, and exit (logging.shutdown closes it).

argv: URL SPILL_DIR COUNT [SHUTDOWN_TIMEOUT]
"""

from __future__ import annotations

import logging
import sys

import logship

url, spill_dir, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
handler = logship.ShipHandler(
    url=url,
    spill_dir=spill_dir,
    batch_max_records=20,
    retry_max_backoff=0.2,
    shutdown_timeout=timeout,
)
log = logging.getLogger("app")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False
for i in range(count):
    log.info("event %d", i)
print("LOGGED", flush=True)
