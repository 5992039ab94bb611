"""logship: ship Python logs from inside the process to a log aggregator.

>>> import logging, logship
>>> handler = logship.ShipHandler(url="http://127.0.0.1:9880/app")  # doctest: +SKIP
>>> handler.addFilter(logship.RedactFilter())  # doctest: +SKIP
>>> logging.getLogger().addHandler(handler)  # doctest: +SKIP
>>> with logship.context(request_id="r-1"):  # doctest: +SKIP
...     logging.getLogger("app").info("every event in here has request_id")
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
