"""``logship.RedactFilter``: secrets are masked before a record leaves the calling thread."""

from __future__ import annotations

import io
import logging
import logging.config
import pathlib
import re
import sys
from typing import Any

import pytest

import logship
from logship.redact import DEFAULT_KEYS, RedactFilter, extra_keys, luhn

from conftest import FAST, attach

R = "[REDACTED]"

VISA = "4111111111111111"  # test card numbers, valid by Luhn
MASTERCARD = "5500000000000004"
AMEX = "378282246310005"


def record(msg: Any, *args: Any, exc_info: Any = None, **extra: Any) -> logging.LogRecord:
    r = logging.LogRecord("app", logging.INFO, __file__, 10, msg, args or None, exc_info)
    for k, v in extra.items():
        setattr(r, k, v)
    return r


@pytest.fixture
def redactor() -> RedactFilter:
    return RedactFilter()


# -- text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user ada signed in", "user ada signed in"),
        ("login password=hunter2 ok", f"login password={R} ok"),
        ("PASSWORD = hunter2", f"PASSWORD = {R}"),
        ("db_password:hunter2", f"db_password:{R}"),
        ('{"password": "hun\\"ter2", "user": "ada"}', f'{{"password": "{R}", "user": "ada"}}'),
        ("{'api_key': 'k-123', 'n': 1}", f"{{'api_key': '{R}', 'n': 1}}"),
        ("GET /cb?access_token=abc&state=1", f"GET /cb?access_token={R}&state=1"),
        ("secret=s1; token=t1, apiKey=k1", f"secret={R}; token={R}, apiKey={R}"),
        ("X-Api-Key: k1 client_secret=c1", f"X-Api-Key: {R} client_secret={R}"),
        ("private-key=pk access_key=ak passwd=p", f"private-key={R} access_key={R} passwd={R}"),
        ("Cookie: sessionid=abc", f"Cookie: {R}"),
        # Names that only look alike are left alone.
        (
            "max_tokens=5 token_count=3 tokens: 4 password_hash=x",
            "max_tokens=5 token_count=3 tokens: 4 password_hash=x",
        ),
        ('password="" empty', 'password="" empty'),
    ],
)
def test_key_value_pairs(redactor: RedactFilter, text: str, expected: str) -> None:
    assert redactor.redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJhbGci.abc-_~+/=", f"Authorization: Bearer {R}"),
        ("authorization=Basic dXNlcjpwYXNz", f"authorization=Basic {R}"),
        ("{'Authorization': 'Basic dXNlcjpwYXNz'}", f"{{'Authorization': 'Basic {R}'}}"),
        ('"authorization": "s3cr3t"', f'"authorization": "{R}"'),
        ("Proxy-Authorization: Digest abc", f"Proxy-Authorization: Digest {R}"),
        ("sent bearer abc.def to the API", f"sent bearer {R} to the API"),
        ("BEARER abc", f"BEARER {R}"),
        ("the forbearer abc", "the forbearer abc"),
        ("authorization failed for ada", "authorization failed for ada"),
    ],
)
def test_authorization_and_bearer_tokens(redactor: RedactFilter, text: str, expected: str) -> None:
    assert redactor.redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dsn postgres://app:hunter2@db:5432/main", f"dsn postgres://app:{R}@db:5432/main"),
        ("https://user:p%40ss@host/x", f"https://user:{R}@host/x"),
        ("http://host:8080/a@b", "http://host:8080/a@b"),  # a port, not a password
    ],
)
def test_passwords_in_urls(redactor: RedactFilter, text: str, expected: str) -> None:
    assert redactor.redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"paid with {VISA}.", f"paid with {R}."),
        ("paid with 4111 1111 1111 1111 ok", f"paid with {R} ok"),
        ("paid with 4111-1111-1111-1111 ok", f"paid with {R} ok"),
        (f"mc {MASTERCARD}, amex {AMEX}", f"mc {R}, amex {R}"),
        ("3782 822463 10005", R),  # Amex grouping
        ("4111 1111 1111 1112", "4111 1111 1111 1112"),  # fails the Luhn check
        ("at 1732441200123 ms", "at 1732441200123 ms"),  # a Unix time in ms: starts with 1
        (f"id 9{VISA}9", f"id 9{VISA}9"),  # part of a longer number
        ("4111  1111 1111 1111", "4111  1111 1111 1111"),  # two blanks: not one number
        (
            "order 12345 at 10.0.0.1:8080 on 2026-11-24",
            "order 12345 at 10.0.0.1:8080 on 2026-11-24",
        ),
    ],
)
def test_card_numbers(redactor: RedactFilter, text: str, expected: str) -> None:
    assert redactor.redact(text) == expected


def test_luhn() -> None:
    assert luhn(VISA) and luhn(MASTERCARD) and luhn(AMEX) and luhn("0")
    assert not luhn("4111111111111112") and not luhn("1234567812345678")


def test_cards_can_be_left_alone() -> None:
    assert RedactFilter(cards=False).redact(f"card {VISA}") == f"card {VISA}"


def test_user_patterns_and_replacement() -> None:
    f = RedactFilter(
        patterns=[r"\b\d{3}-\d{2}-\d{4}\b", r"acct-[0-9]+", re.compile("SeSsIoN-\\w+", re.I)],
        replacement="***",
    )
    text = f"ssn 123-45-6789 acct-991 session-abc password=x {VISA}"
    assert f.redact(text) == "ssn *** *** *** password=*** ***"


def test_user_patterns_with_backreferences_keep_their_meaning() -> None:
    f = RedactFilter(patterns=[r"(['\"])pin\1", r"(\w)\1{3}"])  # not combined into one
    assert f.redact("'pin' \"pin\" 'pin\" aaaa") == f"{R} {R} 'pin\" {R}"


def test_more_keys() -> None:
    f = RedactFilter(keys=["ssn", "x-session"])
    assert f.redact("ssn=123 X-Session: abc password=p") == f"ssn={R} X-Session: {R} password={R}"
    assert f.redact_value({"user_ssn": 1, "ok": 2}) == {"user_ssn": R, "ok": 2}


def test_non_ascii_text(redactor: RedactFilter) -> None:
    assert redactor.redact("mot de passe: pässwörd=x password=ü") == (
        f"mot de passe: pässwörd=x password={R}"
    )
    assert redactor.redact("lone \udc80 surrogate " + VISA) == f"lone \udc80 surrogate {R}"
    assert RedactFilter(keys=["contraseña"]).redact("CONTRASEÑA=x") == f"CONTRASEÑA={R}"


def test_redaction_is_idempotent(redactor: RedactFilter) -> None:
    text = f"password=p Authorization: Bearer t card {VISA} postgres://a:b@h"
    once = redactor.redact(text)
    assert redactor.redact(once) == once
    stars = RedactFilter(replacement="***")
    assert stars.redact(stars.redact(text)) == stars.redact(text)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"patterns": "secret"}, TypeError),
        ({"patterns": [1]}, TypeError),
        ({"patterns": ["("]}, ValueError),
        ({"patterns": [""]}, ValueError),
        ({"patterns": 5}, TypeError),
        ({"replacement": None}, TypeError),
        ({"cards": "yes"}, TypeError),
        ({"keys": "ssn"}, TypeError),
        ({"keys": [""]}, TypeError),
        ({"unknown": 1}, TypeError),
    ],
)
def test_wrong_options_fail_at_construction(kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        RedactFilter(**kwargs)


def test_default_keys_are_documented() -> None:
    doc = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "redaction.md").read_text()
    for key in DEFAULT_KEYS:
        assert f"`{key}`" in doc, key


# -- the record ------------------------------------------------------------------------------


def test_message_is_rendered_then_masked(redactor: RedactFilter) -> None:
    r = record("login %s with password=%s", "ada", "hunter2")
    assert redactor.filter(r) is True
    assert r.msg == f"login ada with password={R}" and r.args == ()
    assert r.getMessage() == r.msg
    plain = record("100%% done, %s", "ok")
    redactor.filter(plain)
    assert plain.getMessage() == "100% done, ok"  # no args left to format it again


def test_a_message_that_cannot_be_formatted_is_not_raised(redactor: RedactFilter) -> None:
    r = record("token=%s and %d", "abc")
    assert redactor.filter(r) is True
    # The arguments, which no key names, are masked whole.
    assert r.msg.startswith(f"token={R} and %d % {R} (") and "formatting failed" in r.msg
    assert "abc" not in r.msg


def test_exception_text_is_formatted_and_masked(redactor: RedactFilter) -> None:
    try:
        raise PermissionError(f"bad password=hunter2 for card {VISA}")
    except PermissionError:
        r = record("failed", exc_info=sys.exc_info())
    redactor.filter(r)
    assert r.exc_text is not None and r.exc_text.startswith("Traceback")
    assert f"PermissionError: bad password={R} for card {R}" in r.exc_text
    assert "hunter2" not in r.exc_text
    # A Formatter (another handler's) uses the masked text as it is.
    assert "hunter2" not in logging.Formatter().format(r)


def test_exception_text_cached_by_a_formatter_is_masked_too(redactor: RedactFilter) -> None:
    r = record("failed")
    r.exc_text = "Traceback ...\nValueError: token=abc"
    redactor.filter(r)
    assert r.exc_text == f"Traceback ...\nValueError: token={R}"


def test_stack_info_is_masked(redactor: RedactFilter) -> None:
    r = record("x")
    r.stack_info = "Stack (most recent call last):\n  connect(password='x')"
    redactor.filter(r)
    assert r.stack_info.endswith(f"connect(password='{R}')")


def test_extra_values_are_masked_in_copies(redactor: RedactFilter) -> None:
    headers = {"Authorization": "Bearer abc", "Accept": "*/*"}
    lines = [f"card {VISA}", {"token": 1, "ok": "password=x"}, ("t", "bearer xyz")]
    r = record(
        "request",
        headers=headers,
        lines=lines,
        note="token: abc",
        password=12345,
        amount=12.5,
        card_int=int(VISA),
        small=7,
        user=None,
    )
    redactor.filter(r)
    assert r.headers == {"Authorization": R, "Accept": "*/*"}
    assert r.lines == [f"card {R}", {"token": R, "ok": f"password={R}"}, ("t", f"bearer {R}")]
    assert r.note == f"token: {R}" and r.password == R and r.card_int == R
    assert r.amount == 12.5 and r.small == 7 and r.user is None
    # The application's own objects are untouched.
    assert headers == {"Authorization": "Bearer abc", "Accept": "*/*"}
    assert lines[0] == f"card {VISA}" and lines[1] == {"token": 1, "ok": "password=x"}


def test_objects_are_left_as_they_are(redactor: RedactFilter) -> None:
    class User:
        pass

    user = User()
    r = record("x", user=user)
    redactor.filter(r)
    assert r.user is user


def test_extra_keys_finds_fields_added_any_way() -> None:
    r = record("x", a=1)
    assert list(extra_keys(r.__dict__)) == ["a"]
    logging.Formatter("%(asctime)s %(message)s").format(r)  # adds `message` and `asctime`
    r.b = 2
    assert sorted(extra_keys(r.__dict__)) == ["a", "b"]
    # An attribute deleted and set again moves to the end: the slow way finds `a` anyway.
    del r.lineno
    r.lineno = 10
    assert sorted(extra_keys(r.__dict__)) == ["a", "b"]
    plain = record("x")
    assert list(extra_keys(plain.__dict__)) == []


def test_a_container_that_fails_is_masked_whole(redactor: RedactFilter) -> None:
    class Hostile(dict):  # type: ignore[type-arg]
        def items(self) -> Any:
            raise RuntimeError("changed size during iteration")

    r = record("x", data=Hostile(a=1), fine="ok")
    assert redactor.filter(r) is True
    assert r.data == R and r.fine == "ok"


def test_an_unexpected_failure_fails_closed(
    redactor: RedactFilter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(text: str) -> str:
        raise MemoryError("no")

    monkeypatch.setattr(redactor, "redact", broken)
    r = record("password=%s", "hunter2", note="secret")
    assert redactor.filter(r) is True  # the record is never dropped, nothing raised
    assert r.msg.startswith(R) and "redaction failed" in r.msg and r.args == ()
    assert not hasattr(r, "note")


def test_structlog_event_dict_exceptions_are_rendered_on_the_caller(
    redactor: RedactFilter,
) -> None:
    try:
        raise ValueError("token=abc")
    except ValueError as e:
        inside = record({"event": "in except", "exc_info": True})
        redactor.filter(inside)
        error = e
    later = record({"event": "later", "exc_info": error, "password": "p"})
    redactor.filter(later)
    for r in (inside, later):
        assert isinstance(r.msg, dict) and "exc_info" not in r.msg
        assert r.msg["exception"].endswith(f"ValueError: token={R}")
    assert later.msg["password"] == R


def test_an_exc_info_that_is_not_an_exception_is_dropped_not_the_record(
    redactor: RedactFilter,
) -> None:
    r = record({"event": "odd", "exc_info": ("a", "b", "c"), "token": "t"})
    assert redactor.filter(r) is True
    assert r.msg == {"event": "odd", "token": R}  # masked, no traceback, nothing wiped


# -- through handlers --------------------------------------------------------------------------


def test_events_shipped_are_masked(server: Any, make_handler: Any) -> None:
    h = make_handler(server.url())
    h.addFilter(RedactFilter())
    log = attach(h)
    try:
        raise ConnectionError("postgres://app:hunter2@db refused")
    except ConnectionError:
        log.exception(
            "pay %s with card %s",
            "ada",
            VISA,
            extra={"auth": {"Authorization": "Bearer b34r3r-t0k3n"}},
        )
    log.info("plain %s", "message", extra={"n": 1})
    assert h.flush(10)
    assert server.wait_for_uuids(2)
    events = {e["message"]: e for e in server.events()}
    paid = events[f"pay ada with card {R}"]
    assert f"postgres://app:{R}@db refused" in paid["exception"]
    assert paid["auth"] == {"Authorization": R}
    # (A token no uuid or timestamp can contain by chance, as "abc" once did.)
    shipped_text = str(events)
    assert "hunter2" not in shipped_text and VISA not in shipped_text
    assert "b34r3r" not in shipped_text
    assert events["plain message"]["n"] == 1


def test_dict_config_builds_it_with_options(server: Any) -> None:
    stream = io.StringIO()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {
                "redact": {
                    "()": "logship.RedactFilter",
                    "patterns": [r"acct-\d+"],
                    "replacement": "<hidden>",
                    "keys": ["pin"],
                }
            },
            "handlers": {
                "ship": {
                    "class": "logship.ShipHandler",
                    "url": server.url(),
                    "spill": False,
                    "filters": ["redact"],
                    **FAST,
                },
                "console": {
                    "class": "logging.StreamHandler",
                    "stream": stream,
                    "filters": ["redact"],
                },
            },
            "loggers": {"dc": {"handlers": ["ship", "console"], "level": "INFO"}},
        }
    )
    logger = logging.getLogger("dc")
    ship = logger.handlers[0]
    try:
        assert isinstance(ship, logship.ShipHandler)
        assert isinstance(ship.filters[0], logship.RedactFilter)
        logger.info("acct-77 pin=1234 password=%s", "pw")
        assert ship.flush(10)
        assert server.wait_for_uuids(1)
        (event,) = server.events()
        masked = "<hidden> pin=<hidden> password=<hidden>"
        assert event["message"] == masked
        assert stream.getvalue().strip() == masked
    finally:
        ship.close()
