"""Configuration (SPEC sections 1 and 2): loud errors at construction, environment
variables, repr without secrets, dictConfig and fileConfig, lazy start."""

from __future__ import annotations

import logging
import logging.config
import threading
from typing import Any

import pytest

import logship

from conftest import FAST, attach, check_identity, flushed

URL = "http://127.0.0.1:9/app"  # never contacted by these tests unless a server is used


@pytest.fixture(autouse=True)
def _no_logship_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOGSHIP_URL", "LOGSHIP_TOKEN", "LOGSHIP_TOKEN_FILE", "LOGSHIP_SPILL_DIR"):
        monkeypatch.delenv(name, raising=False)


def logship_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("logship-")}


def build(**options: Any) -> logship.ShipHandler:
    """Construct a handler that is never started (closing it costs nothing); url defaults to URL."""
    h = logship.ShipHandler(**{"url": URL, "spill": False, **options})
    h.close()
    return h


def build_from_env(**options: Any) -> logship.ShipHandler:
    """Like :func:`build`, with no url argument: LOGSHIP_URL supplies it."""
    h = logship.ShipHandler(**{"spill": False, **options})
    h.close()
    return h


# -- bad options raise at construction, naming the option -------------------------


def test_unknown_option_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="capcity"):
        logship.ShipHandler(url=URL, capcity=10)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("capacity", "10"),
        ("capacity", 10.0),
        ("capacity_bytes", "1MiB"),
        ("batch_max_records", None),
        ("batch_max_bytes", [1]),
        ("spill_max_bytes", "big"),
        ("compress", "yes"),
        ("compress", 1),
        ("spill", "no"),
        ("verify", "false"),
        ("timeout", "1"),
        ("flush_interval", "0.5"),
        ("retry_max_backoff", None),
        ("shutdown_timeout", "5"),
        ("fields", ["service", "billing"]),
        ("fields", {1: "one"}),
        ("headers", "X-A: b"),
        ("headers", {"X-Count": 1}),
        ("token", 12345),
        ("spill_dir", 7),
        ("url", 8080),
    ],
)
def test_wrong_type_is_a_type_error_naming_the_option(name, value):
    with pytest.raises(TypeError, match=name):
        logship.ShipHandler(**{"url": URL, name: value})


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"X API Key": "k3y-value"}, "'X…' is not a valid header name (an RFC 9110 token"),
        ({"X-Key=k3y": "x"}, "'X-Key…' is not a valid header name"),  # a value in the name
        ({"": "k3y-value"}, "'' is not a valid header name"),
        ({"X-Key": "k3y-value\r\nX-Admin: yes"}, "the value of 'X-Key' has a control character"),
        ({"X-Key": "k3y\x00value"}, "the value of 'X-Key' has a control character"),
        ({"X-Key": "k3y\x1b[0mvalue"}, "the value of 'X-Key' has a control character"),
        ({"X-Key": "k3y\x7fvalue"}, "the value of 'X-Key' has a control character"),
        ({"X-Key": " k3y-value"}, "the value of 'X-Key' starts with white space"),
        ({"X-Key": "k3y-€-value"}, "the value of 'X-Key' has characters an HTTP header cannot"),
        ({"X-Key": "k3y-value", "x-key": "k3y-value"}, "names 'x-key' twice (names ignore case)"),
    ],
)
def test_a_header_the_http_client_would_refuse_fails_at_construction(headers, words):
    # Caught later, it would hold back every event, request after request.
    with pytest.raises(ValueError, match="option 'headers'") as refused:
        logship.ShipHandler(url=URL, headers=headers)
    assert words in str(refused.value)
    assert "k3y" not in str(refused.value)  # a header value may be a secret


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("k3y\nX-Admin: yes", "option 'token' has a control character"),
        ("k3y\x01value", "option 'token' has a control character"),
        ("k3y\tvalue", "option 'token' has a control character"),  # a header's value may
        ("k3y\x7fvalue", "option 'token' has a control character"),
        ("k3y-€", "option 'token' has characters an HTTP header cannot carry"),
        ("  \n", "option 'token' is only white space"),
    ],
)
def test_a_token_no_http_client_would_send_fails_at_construction(token, words):
    with pytest.raises(ValueError, match=words) as refused:
        logship.ShipHandler(url=URL, token=token)
    assert "k3y" not in str(refused.value)


def test_a_token_file_no_http_client_would_send_fails_at_construction(tmp_path):
    path = tmp_path / "token"
    path.write_text("k3y\nX-Admin: yes\n")
    with pytest.raises(ValueError, match="option 'token_file': the token in") as refused:
        logship.ShipHandler(url=URL, token_file=str(path))
    assert "has a control character" in str(refused.value) and "k3y" not in str(refused.value)


def test_a_token_from_the_environment_is_stripped_like_a_token_file(
    server, make_handler, monkeypatch
):
    monkeypatch.setenv("LOGSHIP_TOKEN", "env-token\n")  # as a mounted secret often ends
    h = make_handler(server.url())
    attach(h).info("with a token")
    flushed(h, server)
    assert [r.headers.get("Authorization") for r in server.requests] == ["Bearer env-token"]


def test_a_latin_1_header_value_is_taken(server, make_handler):
    h = make_handler(server.url(), headers={"X-Name": "Zoë"})
    attach(h).info("with a Latin-1 header")
    flushed(h, server)
    assert [r.headers["X-Name"] for r in server.requests] == ["Zoë"]


@pytest.mark.parametrize(
    "name",
    [
        "capacity",
        "capacity_bytes",
        "batch_max_records",
        "batch_max_bytes",
        "spill_max_bytes",
    ],
)
@pytest.mark.parametrize("value", [True, False])
def test_bool_where_an_int_is_expected_is_refused(name, value):
    with pytest.raises(TypeError, match=name):
        logship.ShipHandler(url=URL, **{name: value})


@pytest.mark.parametrize("name", ["timeout", "flush_interval", "shutdown_timeout"])
def test_bool_where_seconds_are_expected_is_refused(name):
    with pytest.raises(TypeError, match=name):
        logship.ShipHandler(url=URL, **{name: True})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("capacity", 0),
        ("capacity", -1),
        ("capacity_bytes", 0),
        ("capacity_bytes", -100),
        ("batch_max_records", 0),
        ("batch_max_bytes", -1),
        ("spill_max_bytes", 0),
        ("timeout", 0),
        ("timeout", -1.0),
        ("flush_interval", 0.0),
        ("retry_max_backoff", -5),
        ("shutdown_timeout", 0),
        ("timeout", float("nan")),
        ("shutdown_timeout", float("inf")),
    ],
)
def test_zero_negative_or_absurd_sizes_are_value_errors_naming_the_option(name, value):
    with pytest.raises(ValueError, match=name):
        logship.ShipHandler(url=URL, **{name: value})


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:9880/app",  # no scheme
        "logs.internal/app",  # no scheme
        "ftp://logs.internal/app",
        "file:///var/log/app",
        "http:///app",  # no host
        "https://:9880/app",  # no host
        "http://logs.internal:99999/app",  # port out of range
        "http://logs.internal:port/app",  # port not a number
        "",
        "http://127.0.0.1 :9880/app",  # white space in the host
        "http://logs\tinternal/app",
        "http://logs.internal/a\x00pp",
        "http://logs.internal/a pp",
        "http://[::1/app",  # a bracket missing
        "http://[::1]]/app",
        "http://logs%internal/app",  # not an escape: the HTTP client refuses the host
        "tcp://logs.internal/app",  # forward needs a port
    ],
)
def test_malformed_url_is_a_value_error_naming_url(url):
    with pytest.raises(ValueError, match="option 'url'"):
        logship.ShipHandler(url=url, protocol="forward" if url.startswith("tcp") else "http")


@pytest.mark.parametrize("url", ["http://logs.internal :9880/app", "http://[::1/app"])
def test_a_malformed_urls_password_stays_out_of_the_error(url):
    with pytest.raises(ValueError, match="option 'url'") as refused:
        logship.ShipHandler(url=url.replace("//", "//ops:s3cr3t-pw@"))
    assert "s3cr3t" not in str(refused.value) and "ops:***@" in str(refused.value)


def test_white_space_around_a_url_is_dropped():
    assert build(url=" \thttp://127.0.0.1:9/app\n").options.url == (URL,)
    assert build(url=[" http://127.0.0.1:9/a", "http://127.0.0.1:9/b "]).options.url == (
        "http://127.0.0.1:9/a",
        "http://127.0.0.1:9/b",
    )


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("logs.internal:9880", "must start with http://, https://, tcp://, tls:// or unix://"),
        ("http://logs internal/app", "has white space or a control character"),
        ("", "is required"),
    ],
)
def test_a_wrong_url_from_the_environment_names_the_variable(monkeypatch, value, words):
    monkeypatch.setenv("LOGSHIP_URL", value)
    with pytest.raises(ValueError, match="option 'url'") as refused:
        logship.ShipHandler()
    said = "LOGSHIP_URL is set, but empty" if not value else "from LOGSHIP_URL"
    assert words in str(refused.value) and str(refused.value).endswith(f"({said})")


def test_an_unknown_level_is_a_value_error_naming_the_option():
    with pytest.raises(ValueError, match="option 'level' is 'info', not a level") as refused:
        logship.ShipHandler(url=URL, level="info")
    assert "'INFO'" in str(refused.value)
    assert build(level="INFO").level == logging.INFO and build(level=30).level == 30


def test_an_option_of_another_protocol_says_which_protocol_it_is_for():
    with pytest.raises(ValueError) as refused:
        logship.ShipHandler(url=URL, tag="app")
    assert str(refused.value) == (
        "logship: protocol 'http' takes no option 'tag' (it is for protocol 'forward')"
    )


@pytest.mark.parametrize(
    ("protocol", "url", "body"),
    [
        ("forward", "tcp://127.0.0.1:24224", "msgpack"),
        ("splunk", "http://127.0.0.1:8088", "HEC JSON events"),
        ("elasticsearch", "http://127.0.0.1:9200", "_bulk NDJSON"),
        ("otlp", "http://127.0.0.1:4318", "OTLP/HTTP JSON"),
        ("loki", "http://127.0.0.1:3100", "Loki's JSON push"),
    ],
)
@pytest.mark.parametrize("encoding", ["ndjson", "msgpack"])
def test_an_encoding_a_protocol_would_ignore_is_refused(protocol, url, body, encoding):
    with pytest.raises(ValueError) as refused:
        logship.ShipHandler(url=url, protocol=protocol, encoding=encoding)
    assert str(refused.value) == (
        f"logship: protocol {protocol!r} takes no option 'encoding' (it sends {body})"
    )
    assert build(url=url, protocol=protocol, encoding="json").options.encoding == "json"


def test_endpoints_are_in_stats_before_the_first_event():
    h = build(url=["http://ops:s3cr3t@127.0.0.1:9/a", "http://127.0.0.1:9/b"])
    assert [(e["url"], e["state"], e["delivered"]) for e in h.stats()["endpoints"]] == [
        ("http://ops:***@127.0.0.1:9/a", "unknown", 0),
        ("http://127.0.0.1:9/b", "unknown", 0),
    ]


def test_missing_url_without_logship_url_is_a_value_error():
    with pytest.raises(ValueError, match="url"):
        logship.ShipHandler()
    with pytest.raises(ValueError, match="url"):
        logship.ShipHandler(capacity=10)


@pytest.mark.parametrize("core", ["uuid", "timestamp", "message", "hostname", "level", "pid"])
def test_fields_naming_a_core_field_are_refused(core):
    with pytest.raises(ValueError, match="fields") as info:
        logship.ShipHandler(url=URL, fields={"service": "billing", core: "x"})
    assert core in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("encoding", "xml"),
        ("encoding", "JSON"),
        ("encoding", None),
        ("overflow", "drop"),
        ("overflow", "wait"),
        ("overflow", ""),
    ],
)
def test_encoding_and_overflow_outside_the_allowed_set_are_refused(name, value):
    with pytest.raises(ValueError, match=name):
        logship.ShipHandler(url=URL, **{name: value})


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        # 1.2 printed beside ('1.2', '1.3') looks like one of them: say it is not a string.
        ("tls_min_version", 1.2, "must be one of ('1.2', '1.3') (a string), not float: 1.2"),
        ("protocol", 1, "(a string), not int: 1"),
        ("durability", True, "(a string), not bool: True"),
    ],
)
def test_a_choice_given_as_another_type_says_the_choices_are_strings(name, value, said):
    with pytest.raises(ValueError) as refused:
        logship.ShipHandler(url=URL, **{name: value})
    assert str(refused.value).startswith(f"logship: option {name!r} must be one of ")
    assert said in str(refused.value)


@pytest.mark.parametrize("name", ["ca_file", "client_cert", "token_file"])
def test_a_file_option_naming_a_missing_file_is_refused(name, tmp_path):
    with pytest.raises(ValueError, match=name):
        logship.ShipHandler(url=URL, **{name: str(tmp_path / "absent.pem")})


def test_token_and_token_file_together_are_refused(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    with pytest.raises(ValueError, match="token_file") as info:
        logship.ShipHandler(url=URL, token="other", token_file=str(secret))
    assert "'token'" in str(info.value)


def test_an_empty_token_file_is_refused(tmp_path):
    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="token_file"):
        logship.ShipHandler(url=URL, token_file=str(empty))


def test_a_bad_option_starts_nothing():
    before = logship_threads()
    with pytest.raises(TypeError):
        logship.ShipHandler(url=URL, capacity="10")
    assert logship_threads() == before


# -- environment variables -----------------------------------------------------------


def test_environment_fills_unset_options(monkeypatch, tmp_path):
    monkeypatch.setenv("LOGSHIP_URL", "https://env.example:9880/env")
    monkeypatch.setenv("LOGSHIP_TOKEN", "env-token")
    monkeypatch.setenv("LOGSHIP_SPILL_DIR", str(tmp_path / "spill"))
    o = build_from_env().options
    assert o.url == ("https://env.example:9880/env",)
    assert o.token == "env-token"
    assert o.spill_dir == str(tmp_path / "spill")


def test_logship_token_file_fills_token_file(monkeypatch, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    monkeypatch.setenv("LOGSHIP_URL", "https://env.example/env")
    monkeypatch.setenv("LOGSHIP_TOKEN_FILE", str(secret))
    o = build_from_env().options
    assert o.token_file == str(secret) and o.token is None


def test_logship_token_file_naming_a_missing_file_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("LOGSHIP_TOKEN_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="token_file"):
        logship.ShipHandler(url=URL)


def test_an_explicit_argument_wins_over_the_environment(monkeypatch, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("from-file")
    monkeypatch.setenv("LOGSHIP_URL", "https://env.example/env")
    monkeypatch.setenv("LOGSHIP_TOKEN", "env-token")
    monkeypatch.setenv("LOGSHIP_TOKEN_FILE", str(secret))
    monkeypatch.setenv("LOGSHIP_SPILL_DIR", str(tmp_path / "env-spill"))

    o = build(url="https://arg.example/arg", token="arg-token", spill_dir=str(tmp_path)).options
    assert o.url == ("https://arg.example/arg",)
    assert o.token == "arg-token" and o.token_file is None
    assert o.spill_dir == str(tmp_path)

    # An explicit token_file wins over LOGSHIP_TOKEN: the two are one setting.
    o = build_from_env(token_file=str(secret)).options
    assert o.token_file == str(secret) and o.token is None
    assert o.url == ("https://env.example/env",)


def test_a_malformed_logship_url_is_refused_naming_url(monkeypatch):
    monkeypatch.setenv("LOGSHIP_URL", "ftp://env.example/env")
    with pytest.raises(ValueError, match="url"):
        logship.ShipHandler()


def test_the_token_from_the_environment_is_sent(server, monkeypatch):
    monkeypatch.setenv("LOGSHIP_URL", server.url())
    monkeypatch.setenv("LOGSHIP_TOKEN", "env-token")
    h = logship.ShipHandler(**FAST, spill=False)
    try:
        log = logging.getLogger("envtoken")
        log.addHandler(h)
        log.propagate = False
        log.warning("with a token")
        assert h.flush(5)
    finally:
        h.close()
    assert [r.headers.get("Authorization") for r in server.requests] == ["Bearer env-token"]


# -- repr never shows the token --------------------------------------------------------


def test_repr_shows_the_url_and_never_the_token(tmp_path):
    h = build(token="tok-do-not-show")
    for text in (repr(h), str(h)):
        assert URL in text
        assert "tok-do-not-show" not in text
    assert "tok-do-not-show" not in repr(h.options)
    assert "tok-do-not-show" not in str(h.options)

    secret = tmp_path / "token"
    secret.write_text("file-secret-do-not-show")
    h = build(token_file=str(secret))
    assert URL in repr(h)
    for text in (repr(h), repr(h.options)):
        assert "file-secret-do-not-show" not in text


def test_repr_shows_header_names_never_their_values():
    secret, basic = "hdr-secret-do-not-show", "Basic dXNlcjpkby1ub3Qtc2hvdw=="
    h = build(headers={"X-API-Key": secret, "Authorization": basic})
    for text in (repr(h.options), str(h.options), repr(h.options.headers), f"{h.options.headers}"):
        assert "'X-API-Key': '***'" in text and "'Authorization': '***'" in text, text
        assert secret not in text and basic not in text, text
    # Only showing them masks: they are sent as given.
    assert h.options.headers == {"X-API-Key": secret, "Authorization": basic}


def test_repr_hides_a_token_that_came_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOGSHIP_TOKEN", "env-secret-do-not-show")
    h = build()
    assert "env-secret-do-not-show" not in repr(h)
    assert "env-secret-do-not-show" not in repr(h.options)


# -- dictConfig and fileConfig ---------------------------------------------------------------


def test_dictconfig_builds_a_working_handler_without_starting_it(server):
    before = logship_threads()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "ship": {
                    "class": "logship.ShipHandler",
                    "url": server.url("/dict"),
                    "fields": {"service": "billing", "env": "test"},
                    "level": "INFO",
                    "encoding": "ndjson",
                    "compress": False,
                    "capacity": 500,
                    "spill": False,
                    "flush_interval": 0.05,
                    "shutdown_timeout": 3.0,
                },
            },
            "loggers": {"dictcfg": {"handlers": ["ship"], "level": "DEBUG", "propagate": False}},
        }
    )
    log = logging.getLogger("dictcfg")
    (h,) = log.handlers
    try:
        assert isinstance(h, logship.ShipHandler)
        assert h.level == logging.INFO
        assert h.options.capacity == 500 and h.options.encoding == "ndjson"
        assert logship_threads() == before  # dictConfig started nothing
        log.debug("below the handler's level")
        assert logship_threads() == before
        for i in range(5):
            log.info("configured %d", i)
        assert logship_threads() - before  # the first record started the worker
        assert h.flush(5)
        check_identity(h.stats())
    finally:
        h.close()
    events = server.events()
    assert sorted(e["message"] for e in events) == [f"configured {i}" for i in range(5)]
    assert {(e["service"], e["env"]) for e in events} == {("billing", "test")}
    assert {r.path for r in server.requests} == {"/dict"}
    assert {r.headers["Content-Type"] for r in server.requests} == {"application/x-ndjson"}


def test_fileconfig_builds_a_working_handler(server, tmp_path):
    kwargs = {
        "url": server.url("/file"),
        "fields": {"service": "ini"},
        "spill": False,
        "flush_interval": 0.05,
        "shutdown_timeout": 3.0,
    }
    ini = tmp_path / "logging.ini"
    ini.write_text(
        "\n".join(
            [
                "[loggers]",
                "keys=root,filecfg",
                "[handlers]",
                "keys=ship",
                "[formatters]",
                "keys=",
                "[logger_root]",
                "level=WARNING",
                "handlers=",
                "[logger_filecfg]",
                "level=DEBUG",
                "handlers=ship",
                "qualname=filecfg",
                "propagate=0",
                "[handler_ship]",
                "class=logship.ShipHandler",
                "level=INFO",
                f"kwargs={kwargs!r}",
                "",
            ]
        )
    )
    before = logship_threads()
    logging.config.fileConfig(str(ini), disable_existing_loggers=False)
    log = logging.getLogger("filecfg")
    (h,) = log.handlers
    try:
        assert isinstance(h, logship.ShipHandler)
        assert logship_threads() == before
        log.debug("below the handler's level")
        log.info("from an ini file")
        assert h.flush(5)
    finally:
        h.close()
    events = server.events()
    assert [(e["message"], e["service"]) for e in events] == [("from an ini file", "ini")]
    assert {r.path for r in server.requests} == {"/file"}


def test_dictconfig_with_a_bad_option_fails_loudly_naming_it():
    with pytest.raises(ValueError, match="ship") as info:
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {"ship": {"class": "logship.ShipHandler", "url": URL, "capacity": 0}},
                "loggers": {"badcfg": {"handlers": ["ship"]}},
            }
        )
    # dictConfig names the handler and chains logship's error, which names the option.
    cause = info.value.__cause__
    assert isinstance(cause, ValueError) and "capacity" in str(cause)


def test_a_worker_that_cannot_start_drops_and_counts_and_never_raises(
    server, make_handler, monkeypatch, caplog
):
    """What the checks at construction could not foresee (here, a bug) costs events, counted
    and said once, never a log call, flush or close: logging.shutdown still reaches the
    handlers after it."""
    from logship.worker import Worker

    def broken(self: Worker) -> None:
        raise RuntimeError("a bug at http://ops:s3cr3t@127.0.0.1:9/app")

    monkeypatch.setattr(Worker, "_build", broken)
    h = make_handler("http://ops:s3cr3t@127.0.0.1:9/app")
    log = attach(h)
    with caplog.at_level(logging.WARNING, logger="logship"):
        for i in range(5):
            log.info("event %d", i)
    stats = h.stats()
    assert stats["emitted"] == 5 and stats["dropped"] == 5 and stats["pending"] == 0
    check_identity(stats)
    (said,) = [r.getMessage() for r in caplog.records if "cannot start" in r.getMessage()]
    assert "RuntimeError: a bug" in said and "every event is dropped" in said
    assert "s3cr3t" not in said
    assert h.flush(0.1)
    h.close()
    assert not logship_threads()
