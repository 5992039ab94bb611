"""A minimal Django project whose logging is configured only by ``settings.LOGGING``."""
