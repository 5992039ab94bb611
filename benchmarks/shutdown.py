"""Exit: log 10,000 events, then let the interpreter exit normally (table 5).

The handler is never closed: what it does at a normal exit is the subject.
``last_call_at`` is ``time.monotonic()``, which the parent shares; ``run.py``
notes when the process ended and reads the receiver's count after.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import _common as c


def measure(args: Any, _handler: logging.Handler, logger: logging.Logger) -> c.Result:
    c.log_events(logger, 0, args.events)
    return {"events": args.events, "last_call_at": time.monotonic()}


if __name__ == "__main__":
    c.case(measure, __doc__, close=False, events=10_000)
