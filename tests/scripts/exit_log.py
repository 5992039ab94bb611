"""Log COUNT events to URL, print "logged", then just exit without closing anything.

argv: URL COUNT SHUTDOWN_TIMEOUT. ``logging.shutdown`` (run at exit) must flush
and close the handler: deliver everything, or give up within SHUTDOWN_TIMEOUT.
"""

from __future__ import annotations

import logging
import sys

import logship


def main() -> None:
    url, count, shutdown_timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    handler = logship.ShipHandler(url=url, spill=False, shutdown_timeout=shutdown_timeout)
    log = logging.getLogger("exit")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    for i in range(count):
        log.info("exit %d", i)
    print("logged", flush=True)


main()
