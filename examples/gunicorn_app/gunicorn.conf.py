"""gunicorn settings: logship ships gunicorn's own logs and the app's, from every worker.

gunicorn applies ``logconfig_dict`` in the master before it forks: each worker
inherits the handler and, through logship's fork hook, starts with an empty
queue and threads of its own. gunicorn stops workers with SIGTERM and lets
them exit normally, so ``logging.shutdown`` delivers what each one holds:
no ``install_signal_handlers()`` here.
"""

import os

bind = "127.0.0.1:8000"
workers = 2
# Either way works with logship; with preload the app module (and anything it
# logs at import) is loaded once, in the master.
preload_app = True
# Must leave a worker time for its requests plus logship's shutdown_timeout (5 s).
graceful_timeout = 30

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "terminal": {"format": "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "terminal"},
        "ship": {
            "class": "logship.ShipHandler",
            "url": os.environ.get("LOGSHIP_URL", "http://127.0.0.1:9880/gunicorn"),
            "fields": {"service": "gunicorn-example", "env": "dev"},
            # All workers share one spill folder (by default a per-endpoint
            # folder under ~/.cache/logship; or "spill_dir" / LOGSHIP_SPILL_DIR).
        },
    },
    "root": {"level": "INFO", "handlers": ["ship", "console"]},
    "loggers": {
        # gunicorn's own loggers ("Booting worker", errors, the access log) go to the root.
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
    },
}
