"""``python -m logship``: the same as the ``logship`` command."""

from logship.cli import main

raise SystemExit(main())
