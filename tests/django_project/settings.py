"""Settings for tests/test_django.py.

Logging is configured here and nowhere else. The handler takes its endpoint
and spill folder from ``LOGSHIP_URL`` and ``LOGSHIP_SPILL_DIR``, which the
test sets before Django reads this ``LOGGING``.
"""

SECRET_KEY = "logship-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "django_project.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django_project.middleware.access_log"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "ship": {
            "class": "logship.ShipHandler",
            "fields": {"service": "django-test", "env": "test"},
            "level": "INFO",
        },
    },
    "root": {"handlers": ["ship"], "level": "INFO"},
}
