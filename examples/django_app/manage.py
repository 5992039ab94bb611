#!/usr/bin/env python
"""Django's command-line utility, as ``django-admin startproject`` writes it.

logship receive                                     # in another terminal
python examples/django_app/manage.py runserver      # then: curl localhost:8000/hello/
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
