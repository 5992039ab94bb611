"""The public names (SPEC: "Names written here are the names users and tests rely on")."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import types

import logship

from procs import plain_env


def exported() -> set[str]:
    """Names bound at the package root that are not private, submodules or __future__ flags."""
    return {
        name
        for name, value in vars(logship).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and type(value).__module__ != "__future__"  # `from __future__ import annotations`
    }


def test_all_equals_the_public_names_at_the_root():
    assert len(logship.__all__) == len(set(logship.__all__)), "duplicates in __all__"
    public_in_all = {name for name in logship.__all__ if not name.startswith("_")}
    assert public_in_all == exported()
    assert "ShipHandler" in logship.__all__
    for name in logship.__all__:
        assert hasattr(logship, name), name


def test_star_import_gives_exactly_all():
    namespace: dict[str, object] = {}
    exec("from logship import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(logship.__all__)


def test_every_public_name_has_a_docstring():
    for name in logship.__all__:
        value = getattr(logship, name)
        if isinstance(value, str):  # __version__
            continue
        assert inspect.getdoc(value), f"{name} has no docstring"
        assert inspect.getmodule(value).__doc__, f"the module of {name} has no docstring"


def test_shiphandler_public_methods_have_docstrings():
    for name in ("flush", "close", "stats", "emit", "handle"):
        assert inspect.getdoc(getattr(logship.ShipHandler, name)), name
    assert logship.__doc__


def test_version_is_a_version_string():
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", logship.__version__)
    assert "__version__" in logship.__all__


def test_shiphandler_is_a_logging_handler():
    import logging

    assert issubclass(logship.ShipHandler, logging.Handler)


def test_import_starts_nothing_and_touches_no_disk():
    code = (
        "import sys, threading\n"
        "import logship\n"
        "h = logship.ShipHandler(url='http://127.0.0.1:9/app', spill=False)\n"
        "print(threading.active_count(), 'platformdirs' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=plain_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "False"]


def test_python_m_logship_help_exits_zero():
    result = subprocess.run(
        [sys.executable, "-m", "logship", "--help"],
        env=plain_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()
    for command in ("receive", "demo"):
        assert command in result.stdout
