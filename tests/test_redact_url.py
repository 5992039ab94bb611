"""Secrets in the endpoint URL and the token never show: not in ``repr``, warnings,
``stats()``, spill or dead-letter files, nor ``logship spill status`` (docs/security.md)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from test_cli_spill import cli
from test_spill import Warnings, spill_opts

from logship.pure.redact_url import (
    header_secrets,
    login_secrets,
    redact_url,
    scrub,
    token_secrets,
    url_secrets,
)
from logship.worker.spill import folder as sf

from conftest import attach, check_identity, require_within
from faultserver import status

PASSWORD = "pw-5bc0e7f1d2"
KEY = "key-a81f30c6e9"
TOKEN = "tok-9d2e4b7a11"
SECRETS = (PASSWORD, KEY, TOKEN)


@pytest.mark.parametrize(
    "url, shown",
    [
        ("http://host:8080/app", "http://host:8080/app"),
        ("http://user:s3cr3t@host/app", "http://user:***@host/app"),
        ("https://t0k3n@host/app", "https://***@host/app"),
        ("http://u:p%40ss@h/", "http://u:***@h/"),
        ("http://h/x?api_key=K&stream=app", "http://h/x?api_key=***&stream=app"),
        (
            "https://h/x?token=a&Signature=b&sig=c&auth=d&secret=e&password=f&page=2",
            "https://h/x?token=***&Signature=***&sig=***&auth=***&secret=***&password=***&page=2",
        ),
        (
            "https://b.s3/o?X-Amz-Credential=c&X-Amz-Signature=s&X-Amz-Date=d",
            "https://b.s3/o?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Date=d",
        ),
        ("https://h/x?access_token=T#id_token=U", "https://h/x?access_token=***#id_token=***"),
        ("http://h/x?key", "http://h/x?key"),
        ("http://h/x?apiKey=&a=1;b=2", "http://h/x?apiKey=&a=1;b=2"),
        ("http://u:pw@[::1]:9/x?k=1", "http://u:***@[::1]:9/x?k=1"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # redacting twice changes nothing


@pytest.mark.parametrize(
    "url", ["http://u:pw@[broken/x?token=t", "::::", "", "http://u:pw@h:99999/"]
)
def test_redact_url_never_raises_nor_shows_a_password(url):
    shown = redact_url(url)
    assert "pw" not in shown and "=t" not in shown


def test_scrub_masks_every_form_of_a_secret():
    secrets_ = [*url_secrets("http://u:p%40ss@h/x?token=ab%2Bcd&x=1"), ("T0KEN", "[token]")]
    text = "p@ss p%40ss ab+cd ab%2Bcd 'T0KEN' T0KEN x=1"
    assert scrub(text, secrets_) == "*** *** *** *** '[token]' [token] x=1"
    # Shorter than 4 characters: masked in URLs, not searched for in texts.
    assert scrub("a 1 b", url_secrets("http://h/?sig=1")) == "a 1 b"


@pytest.mark.parametrize(
    ("secrets_", "expected"),
    [
        (header_secrets({}), []),
        (
            header_secrets({"X-API-Key": "k-1234", "Content-Type": "text/plain", "X-Empty": ""}),
            [("k-1234", "[header X-API-Key]"), ("text/plain", "[header Content-Type]")],
        ),
        (token_secrets(None, "Bearer"), []),
        (token_secrets("T0KEN"), [("T0KEN", "[token]")]),
        (
            token_secrets("t0k", "Splunk"),
            [("t0k", "[token]"), ("Splunk t0k", "Splunk [token]")],
        ),
        (login_secrets("", ""), []),
        (login_secrets("alice", "pw"), [("pw", "***"), ("YWxpY2U6cHc=", "[login]")]),
        # No password: the user name is the secret (https://TOKEN@host).
        (login_secrets("T0KEN", ""), [("T0KEN", "***"), ("VDBLRU46", "[login]")]),
        # Latin-1 cannot write it: never sent as Basic, so no encoded form.
        (login_secrets("alice", "p€ss"), [("p€ss", "***")]),
    ],
)
def test_the_forms_each_secret_is_sent_in(secrets_, expected):
    assert secrets_ == expected


@pytest.mark.parametrize(
    ("text", "secrets_", "scrubbed"),
    [
        (
            "you sent X-API-Key: hdr-SECRET, X-Tenant: abc",
            header_secrets({"X-API-Key": "hdr-SECRET", "X-Tenant": "abc"}),
            "you sent X-API-Key: [header X-API-Key], X-Tenant: abc",  # "abc": too short
        ),
        (
            "Authorization: Bearer t0k; token t0k",
            token_secrets("t0k", "Bearer"),
            "Authorization: Bearer [token]; token t0k",  # alone, too short to search for
        ),
        (
            "Authorization: Basic YWxpY2U6cHctU0VDUkVU (alice:pw-SECRET)",
            login_secrets("alice", "pw-SECRET"),
            "Authorization: Basic [login] (alice:***)",
        ),
        (
            "{'authorization': 'Bearer tok\\en-1'}",  # repr doubles the backslash
            token_secrets("tok\\en-1", "Bearer"),
            "{'authorization': 'Bearer [token]'}",
        ),
    ],
)
def test_scrub_masks_every_form_a_secret_is_sent_in(text, secrets_, scrubbed):
    assert scrub(text, secrets_) == scrubbed


@pytest.fixture
def warnings() -> Iterator[Warnings]:
    w = Warnings()
    yield w
    logging.getLogger("logship").removeHandler(w)


def secret_url(port: int) -> str:
    return f"http://user:{PASSWORD}@127.0.0.1:{port}/app?api_key={KEY}&stream=app"


def assert_hidden(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, text


def test_no_secret_shows_in_what_a_handler_says_or_stores(server, make_handler, tmp_path, warnings):
    folder = str(tmp_path / "spill")
    echo = f"bad request: Authorization: Bearer {TOKEN}, api_key={KEY}".encode()
    server.then(status(302, Location=f"http://127.0.0.1:1/x?api_key={KEY}"))
    server.default = status(400, echo)
    h = make_handler(secret_url(server.port), token=TOKEN, **spill_opts(folder))
    attach(h).info("rejected 0")
    require_within(lambda: h.stats()["rejected"] == 1, what="the rejection")
    assert server.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"  # it is sent
    assert any("redirects to" in m for m in warnings.messages)
    assert any("rejected a batch" in m for m in warnings.messages)
    assert "user:***@127.0.0.1" in repr(h)
    files = [(tmp_path / "spill" / n).read_bytes().decode("latin-1") for n in os.listdir(folder)]
    assert_hidden(repr(h), str(h.stats()), *warnings.messages, *files)
    r = cli("status", "--dir", folder)
    d = cli("status", "--dir", folder, "--dead-letters")
    assert "api_key=***" in r.stdout and "api_key=***" in d.stdout
    assert_hidden(r.stdout, r.stderr, d.stdout, d.stderr)


def test_no_secret_shows_when_the_endpoint_is_down(make_handler, refused_port, tmp_path, warnings):
    folder = str(tmp_path / "spill")
    h = make_handler(
        secret_url(refused_port), token=TOKEN, **spill_opts(folder, shutdown_timeout=0.5)
    )
    attach(h).info("spilled 0")
    require_within(lambda: h.stats()["last_error"], what="a failed attempt")
    h.close()
    assert h.stats()["spilled"] == 1
    check_identity(h.stats())
    (f,) = sf.list_files(folder)
    with open(f.path, "rb") as fh:
        on_disk = fh.read().decode("latin-1")
    assert "api_key=***" in on_disk
    assert_hidden(
        str(h.stats()), *warnings.messages, on_disk, cli("status", "--dir", folder).stdout
    )


def test_the_default_folder_is_one_per_endpoint_and_names_no_secret():
    same = [
        "http://logs.example:80/app",
        "HTTP://Logs.Example/app",
        "http://logs.example/app",
    ]
    assert len({sf.endpoint_slug(u) for u in same}) == 1
    assert sf.endpoint_slug("https://logs.example/app") != sf.endpoint_slug(same[0])
    assert sf.endpoint_slug("https://logs.example:443/app") == sf.endpoint_slug(
        "https://LOGS.example/app"
    )
    slug = sf.endpoint_slug(f"http://user:{PASSWORD}@logs.example/app?api_key={KEY}")
    assert_hidden(slug)
