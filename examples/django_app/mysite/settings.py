"""A minimal Django project that ships its logs with logship: see ``LOGGING``."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

LOGGING = {
    "version": 1,
    # Keep Django's own loggers (django, django.request, django.server, ...) working.
    "disable_existing_loggers": False,
    "formatters": {"terminal": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "terminal"},
        "ship": {
            "class": "logship.ShipHandler",
            "url": os.environ.get("LOGSHIP_URL", "http://127.0.0.1:9880/django"),
            # "token_file": "/run/secrets/ingest-token",
            "fields": {"service": "mysite", "env": "dev"},
            "level": "INFO",
        },
    },
    # ship first: a line seen on the terminal has then already been handed to logship.
    "root": {"handlers": ["ship", "console"], "level": "INFO"},
    "loggers": {
        # django.request (4xx warnings, 5xx errors with tracebacks) reaches the
        # root through "django". runserver's request log does not propagate,
        # so it is routed here explicitly.
        "django.server": {"handlers": ["ship", "console"], "level": "INFO", "propagate": False},
    },
}
