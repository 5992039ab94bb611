"""logship: ship Python logs from inside the process to a log aggregator.

>>> import logging, logship
>>> handler = logship.ShipHandler(url="http://127.0.0.1:9880/app")  # doctest: +SKIP
>>> logging.getLogger().addHandler(handler)  # doctest: +SKIP
"""

from __future__ import annotations

from logship.handler import ShipHandler

__version__ = "0.1.0"
__all__ = ["ShipHandler", "__version__"]
