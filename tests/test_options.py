"""The one definition of the options (``logship.pure.options.Options``) and what it feeds:
the constructor's signature and checks, and the configuration reference."""

from __future__ import annotations

import inspect
import logging.config
import types
import typing
from collections.abc import Sequence
from pathlib import Path

import pytest

import logship
from logship.pure.options import FIELDS, OPTION_NAMES, Options, build_options, options_table

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_configuration_reference_is_the_generated_table():
    text = REFERENCE.read_text(encoding="utf-8")
    start = text.index("<!-- options: generated")
    start = text.index("\n", start) + 1
    end = text.index("<!-- options: end -->")
    assert text[start:end] == options_table(), (
        "docs/configuration.md is out of step with logship/pure/options.py; the table should be:\n"
        + options_table()
    )


def test_every_option_is_a_keyword_only_parameter_with_its_default():
    params = inspect.signature(logship.ShipHandler).parameters
    assert next(iter(params)) == "url"
    assert [p for p in params if p != "level"] == list(OPTION_NAMES)
    for f in FIELDS:
        p = params[f.name]
        assert p.default == f.default, f.name
        if f.name != "url":
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, f.name
        assert p.annotation is not inspect.Parameter.empty, f.name


def test_each_parameter_type_takes_what_the_option_holds():
    init = typing.get_type_hints(logship.ShipHandler.__init__)
    held = typing.get_type_hints(Options)
    for name in OPTION_NAMES:
        param, kept = init[name], held[name]
        if name == "url":  # one URL or several: kept as a tuple
            assert _members(param) == {str, Sequence[str], type(None)} and kept == tuple[str, ...]
            continue
        if typing.get_origin(kept) is typing.Literal:
            assert param == kept, name
            continue
        assert _members(kept) <= _members(param), (name, kept, param)


def _members(kind: object) -> set[object]:
    """The types a union admits; a single type for anything else."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return set(typing.get_args(kind))
    return {kind}


def test_help_shows_the_options():
    text = inspect.getdoc(logship.ShipHandler.__init__) or ""
    assert "configuration reference" in text
    shown = str(inspect.signature(logship.ShipHandler))
    assert "flush_interval: 'float' = 1.0" in shown
    assert "**" not in shown


def test_an_unknown_option_suggests_the_nearest(tmp_path):
    with pytest.raises(TypeError) as e:
        logship.ShipHandler(url="http://127.0.0.1:9/x", flush_intervall=0.5)
    assert str(e.value) == (
        "logship: unknown option(s): 'flush_intervall' (did you mean 'flush_interval'?)"
    )
    with pytest.raises(TypeError, match=r"unknown option\(s\): 'colour'$"):
        build_options({"url": "http://127.0.0.1:9/x", "colour": "red"})


def test_dictconfig_reports_the_suggestion():
    config = {
        "version": 1,
        "handlers": {"ship": {"class": "logship.ShipHandler", "url": "http://h/x", "spil": False}},
    }
    with pytest.raises(ValueError) as e:
        logging.config.dictConfig(config)
    assert "did you mean 'spill'?" in str(e.value.__cause__ or e.value)


def test_a_spill_dir_under_a_regular_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for path in (blocker, blocker / "spill"):
        with pytest.raises(ValueError) as e:
            build_options({"url": "http://h/x", "spill_dir": str(path)})
        assert str(e.value).startswith(f"logship: option 'spill_dir' names {str(path)!r}")


def test_a_spill_dir_that_cannot_be_created_is_refused():
    path = "/proc/logship-spill"  # not even root can make a folder here
    with pytest.raises(ValueError, match="option 'spill_dir' names '/proc/logship-spill', which"):
        logship.ShipHandler(url="http://h/x", spill_dir=path)


def test_a_missing_spill_dir_is_made_private_by_the_handler_only(tmp_path):
    path = tmp_path / "a" / "b"
    opts = build_options({"url": "http://h/x", "spill_dir": str(path)})
    assert opts.spill_dir == str(path) and not path.exists()  # checking changes nothing
    logship.ShipHandler(url="http://h/x", spill_dir=str(path)).close()
    assert path.is_dir() and (path.stat().st_mode & 0o777) == 0o700


def test_the_environment_fills_only_unset_options(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    env = {"LOGSHIP_URL": "http://env/x", "LOGSHIP_TOKEN": "from-env"}
    opts = build_options({"token_file": str(token_file)}, env)
    assert opts.url == ("http://env/x",)
    assert opts.token is None and opts.token_file == str(token_file)
    env["LOGSHIP_TOKEN_FILE"] = str(token_file)
    opts = build_options({"url": "http://arg/x"}, env)
    assert opts.url == ("http://arg/x",) and opts.token == "from-env" and opts.token_file is None


def test_secrets_stay_out_of_the_options_repr():
    opts = build_options(
        {"url": "http://h/x", "token": "s3cr3t-token", "spill_key": "00" * 32}
        if _have_crypto()
        else {"url": "http://h/x", "token": "s3cr3t-token"}
    )
    assert "s3cr3t" not in repr(opts) and "00" * 32 not in repr(opts)


def _have_crypto() -> bool:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return False
    return True


def test_options_are_read_only():
    opts = build_options({"url": "http://h/x"})
    with pytest.raises(AttributeError):
        opts.url = ("http://other/x",)  # type: ignore[misc]
