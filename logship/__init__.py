"""logship: ship Python logs from inside the process to a log aggregator.

The public names are in ``__all__``; the modules behind them are internal.

>>> import logging, logship
>>> handler = logship.ShipHandler(url="http://127.0.0.1:9880/app", fields={"service": "billing"})
>>> handler.addFilter(logship.RedactFilter())  # mask passwords, tokens, card numbers
>>> log = logging.getLogger("billing")
>>> log.addHandler(handler)

Logging ships events, so the next two lines need a receiver listening at the
URL (``logship receive`` runs one):

>>> with logship.context(request_id="r-1"):  # doctest: +SKIP
...     log.info("invoice %s sent", "INV-7", extra={"customer": "ada"})
>>> handler.flush(timeout=5.0)  # doctest: +SKIP
True

At interpreter exit ``logging.shutdown`` flushes and closes the handler;
closing it sooner delivers what it can within ``shutdown_timeout``:

>>> log.removeHandler(handler)
>>> handler.close()
"""

from __future__ import annotations

from logship.context import bind, context, unbind
from logship.handler import ShipHandler
from logship.redact import RedactFilter
from logship.signals import install_signal_handlers

__version__ = "0.1.0"
__all__ = [
    "RedactFilter",
    "ShipHandler",
    "__version__",
    "bind",
    "context",
    "install_signal_handlers",
    "unbind",
]
