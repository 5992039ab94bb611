"""Configure logging with ``logging.config.dictConfig``: the same dictionary works as
Django's ``LOGGING`` setting, in Flask before the app is created, or loaded from
a JSON/YAML file.

    logship receive                     # in another terminal
    python examples/dictconfig.py       # LOGSHIP_URL=... to send elsewhere
"""

from __future__ import annotations

import logging
import logging.config
import os

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"terminal": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "terminal"},
        "ship": {
            "class": "logship.ShipHandler",
            "url": os.environ.get("LOGSHIP_URL", "http://127.0.0.1:9880/dictconfig"),
            # "token_file": "/run/secrets/ingest-token",
            "fields": {"service": "billing", "env": "dev"},
            "level": "INFO",
        },
    },
    "loggers": {
        # More detail from one part of the application, on the terminal only.
        "billing.db": {"level": "DEBUG", "handlers": ["console"], "propagate": False},
    },
    "root": {"level": "INFO", "handlers": ["ship", "console"]},
}


def main() -> None:
    logging.config.dictConfig(LOGGING)
    log = logging.getLogger("billing.invoices")
    log.info("invoice %s sent", "INV-7", extra={"customer": "ada", "amount_cents": 1250})
    log.warning("invoice %s overdue", "INV-3", extra={"customer": "bob", "days": 12})
    logging.getLogger("billing.db").debug("query took 3 ms")  # not shipped: terminal only
    prices: dict[str, int] = {}
    try:
        prices["INV-9"]
    except KeyError:
        log.exception("could not price invoice %s", "INV-9")


if __name__ == "__main__":
    main()
