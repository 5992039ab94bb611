"""What a server says back is shown without the secrets the handler sent it, and on one
printable line (docs/security.md).

A server's answer reaches warnings on the ``logship`` logger, ``stats()``, dead-letter
files and the ``logship`` command. Servers here echo the request's credentials (as some
error pages do), and answer with line breaks and terminal escape sequences (a forged line
in the application's own log output).
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli_check import _clean_env, check  # noqa: F401
from test_cli_spill import cli
from test_delivery_elasticsearch import fates, indexed_is, log_fated, unparsable
from test_forward_delivery import FakeForward
from test_spill import Warnings, spill_opts

from logship.cli import spillinspect as si

from conftest import attach, check_identity, require, require_within
from fakebulk import FakeBulk
from faultserver import Action, status

HEADER_SECRET = "hdr-SECRET-9f8e7d6c"
PASSWORD = "pw-SECRET-41c7"
NETRC_PASSWORD = "netrc-SECRET-b2d9"
SHORT_TOKEN = "t0k"  # shorter than any secret searched for alone
FORGED = "bad\n2026-01-01 00:00:00 CRITICAL payments: refund of 10000 EUR approved\x1b[2K\x1b[31m"
FORGED_SHOWN = "bad\\n2026-01-01 00:00:00 CRITICAL payments: refund of 10000 EUR approved"

# Headers every request carries that say nothing secret: left out of the echo, so
# that the credentials come first in what the server says.
_PLAIN = {
    "host",
    "content-length",
    "accept-encoding",
    "accept",
    "connection",
    "user-agent",
    "content-type",
    "content-encoding",
    "idempotency-key",
}


def echo(path: str, headers: dict[str, str], wire: bytes) -> Action:
    """A ``FaultServer.respond`` that refuses with 400, quoting the request's headers."""
    quoted = " | ".join(f"{k}: {v}" for k, v in headers.items() if k.lower() not in _PLAIN)
    return status(400, f"bad request; you sent: {quoted}".encode())


@pytest.fixture
def forward() -> Iterator[FakeForward]:
    """A forward server that asks for the shared key ``s3cret-key``."""
    srv = FakeForward(shared_key=b"s3cret-key")
    yield srv
    srv.stop()


@pytest.fixture
def warnings() -> Warnings:
    """What the ``logship`` logger says (conftest takes the handler off again)."""
    return Warnings()


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def dead_letter_bytes(folder: str) -> str:
    """Every dead-letter file of ``folder``, as text (Latin-1: every byte shows)."""
    names = [n for n in os.listdir(folder) if n.startswith("dead-letter")]
    require(names, f"no dead-letter file in {folder}")
    return "".join(Path(folder, n).read_bytes().decode("latin-1") for n in names)


def _netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login bob password {NETRC_PASSWORD}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))


#: ``(options for a port, what to set up, the header sent and its value, what must never show)``
Case = tuple[
    Callable[[int], dict[str, Any]],
    Callable[[Path, pytest.MonkeyPatch], None] | None,
    tuple[str, str],
    list[str],
]
CASES: dict[str, Case] = {
    "headers": (
        lambda port: {
            "url": f"http://127.0.0.1:{port}/app",
            "headers": {"X-API-Key": HEADER_SECRET, "X-Tenant": "tenant-4711"},
        },
        None,
        ("X-API-Key", HEADER_SECRET),
        [HEADER_SECRET, "tenant-4711"],
    ),
    "url-login": (
        lambda port: {"url": f"http://alice:{PASSWORD}@127.0.0.1:{port}/app"},
        None,
        ("Authorization", f"Basic {basic('alice', PASSWORD)}"),
        [PASSWORD, basic("alice", PASSWORD)],
    ),
    "netrc-login": (
        lambda port: {"url": f"http://127.0.0.1:{port}/app"},
        _netrc,
        ("Authorization", f"Basic {basic('bob', NETRC_PASSWORD)}"),
        [NETRC_PASSWORD, basic("bob", NETRC_PASSWORD)],
    ),
    "short-bearer-token": (
        lambda port: {"url": f"http://127.0.0.1:{port}/app", "token": SHORT_TOKEN},
        None,
        ("Authorization", f"Bearer {SHORT_TOKEN}"),
        [f"Bearer {SHORT_TOKEN}"],
    ),
    "short-splunk-token": (
        lambda port: {
            "url": f"http://127.0.0.1:{port}/services/collector/event",
            "token": SHORT_TOKEN,
            "protocol": "splunk",
        },
        None,
        ("Authorization", f"Splunk {SHORT_TOKEN}"),
        [f"Splunk {SHORT_TOKEN}"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_no_secret_the_handler_sent_shows_when_the_server_echoes_it(
    case, server, make_handler, tmp_path, monkeypatch, warnings
):
    monkeypatch.delenv("NETRC", raising=False)  # (test_cli_check's _clean_env: no token)
    options, setup, (header, value), hidden = CASES[case]
    if setup is not None:
        setup(tmp_path, monkeypatch)
    server.respond = echo
    folder = str(tmp_path / "spill")
    h = make_handler(**options(server.port), **spill_opts(folder))
    attach(h).info("rejected 0")
    require_within(lambda: warnings.about("rejected a batch"), what="the rejection's warning")
    require(server.requests[0].headers.get(header) == value, f"{header} was not sent")
    # The echo did reach what is shown: only the secrets are masked.
    assert any("you sent: " in m for m in warnings.messages), warnings.messages
    check_identity(h.stats())
    shown = [
        *warnings.messages,
        str(h.stats()),
        repr(h.options),
        dead_letter_bytes(folder),
        cli("status", "--dir", folder).stdout,
        cli("status", "--dir", folder, "--dead-letters").stdout,
    ]
    for text in shown:
        for secret in hidden:
            assert secret not in text, (secret, text)


def test_a_token_replaced_while_its_request_was_out_is_still_masked(
    server, make_handler, tmp_path, warnings
):
    # The answer to a request sent with the old token arrives after the file says the new one.
    old, new = "old-SECRET-5a6b7c8d", "new-SECRET-1e2f3a4b"
    path = tmp_path / "token"
    path.write_text(old)
    path.chmod(0o600)
    arrived, rotated = threading.Event(), threading.Event()

    def respond(path_: str, headers: dict[str, str], wire: bytes) -> Action:
        arrived.set()
        rotated.wait(10)
        return echo(path_, headers, wire)

    server.respond = respond
    folder = str(tmp_path / "spill")
    h = make_handler(server.url(), token_file=str(path), **spill_opts(folder))
    attach(h).info("rejected 0")
    require(arrived.wait(10), "the request never arrived")
    path.write_text(new)
    os.utime(path, (1, 1))  # a different mtime, even within the same clock tick
    rotated.set()
    require_within(lambda: warnings.about("rejected a batch"), what="the rejection's warning")
    require(server.requests[0].headers.get("Authorization") == f"Bearer {old}", "old not sent")
    assert any("you sent: " in m for m in warnings.messages), warnings.messages
    for text in (*warnings.messages, str(h.stats()), dead_letter_bytes(folder)):
        assert old not in text and new not in text, text


def test_a_servers_words_are_one_printable_line_in_warnings_and_stats(
    server, make_handler, tmp_path, warnings
):
    folder = str(tmp_path / "spill")
    server.default = status(400, FORGED.encode())
    h = make_handler(server.url(), **spill_opts(folder))
    attach(h).info("rejected 0")
    require_within(lambda: warnings.about("rejected a batch"), what="the rejection's warning")
    (said,) = warnings.about("rejected a batch")
    assert said.isprintable(), said  # no forged line, no escape sequence
    assert FORGED_SHOWN + "\\x1b[2K\\x1b[31m" in said
    error = h.stats()["last_error"]
    assert error.isprintable() and FORGED_SHOWN in error, error
    # The dead letter keeps the words as said, for machines; the command escapes them.
    (letter,) = si.read_dead_letters(folder).batches
    assert letter.reason == FORGED
    out = cli("status", "--dir", folder).stdout
    assert "\x1b" not in out and FORGED_SHOWN in out
    assert not any(line.startswith("2026-01-01") for line in out.splitlines()), out


def test_a_redirects_location_is_one_printable_line(server, make_handler, warnings):
    server.default = status(302, Location="http://127.0.0.1:1/x\x1b]0;owned\x07\x1b[2J")
    h = make_handler(server.url())
    attach(h).info("held 0")
    require_within(lambda: warnings.about("redirects to"), what="the redirect's warning")
    (said,) = warnings.about("redirects to")
    assert said.isprintable(), said
    assert "http://127.0.0.1:1/x\\x1b]0;owned\\x07\\x1b[2J" in said


def test_words_a_json_answer_decodes_to_are_scrubbed_and_escaped(
    server, make_handler, tmp_path, warnings
):
    """JSON may write a secret another way (``\\/``): it is searched for once decoded too."""
    secret = "k/ey-SECRET-3e8a"
    message = f"record refused for key {secret}\nCRITICAL forged\x1b[31m"
    body = json.dumps({"partialSuccess": {"rejectedLogRecords": "1", "errorMessage": message}})
    require(secret not in body.replace("/", "\\/"), "the body writes the secret another way")
    server.default = status(200, body.replace("/", "\\/").encode(), Content_Type="application/json")
    folder = str(tmp_path / "spill")
    h = make_handler(
        server.url(""), protocol="otlp", headers={"X-API-Key": secret}, **spill_opts(folder)
    )
    attach(h).info("rejected 0")
    require_within(lambda: warnings.about("rejected a batch"), what="the rejection's warning")
    (said,) = warnings.about("rejected a batch")
    error = h.stats()["last_error"]
    (letter,) = si.read_dead_letters(folder).batches
    for text in (said, error):
        assert text.isprintable() and "key [header X-API-Key]\\nCRITICAL forged" in text, text
    assert "key [header X-API-Key]\nCRITICAL forged\x1b[31m" in letter.reason
    for text in (said, error, letter.reason, dead_letter_bytes(folder)):
        assert secret not in text, text


def test_a_forward_servers_refusal_is_one_printable_line(forward, make_handler, warnings):
    forward.refusal = "no\n2026-01-01 CRITICAL forged\x1b[31m"
    h = make_handler(forward.url, protocol="forward", token="wrong-key")
    attach(h).info("held 0")
    require_within(lambda: warnings.about("refused the batch"), what="the refusal's warning")
    (said,) = warnings.about("refused the batch")
    error = h.stats()["last_error"]
    for text in (said, error):
        assert text.isprintable() and "no\\n2026-01-01 CRITICAL forged\\x1b[31m" in text, text


def test_logship_check_shows_a_servers_words_on_one_line_without_secrets(server, capsys):
    login = basic("alice", PASSWORD)
    said = f"{FORGED} (you sent Authorization: Basic {login})"
    body = {"partialSuccess": {"rejectedLogRecords": "1", "errorMessage": said}}
    server.default = status(200, json.dumps(body).encode(), Content_Type="application/json")
    url = f"http://alice:{PASSWORD}@127.0.0.1:{server.port}"
    code, out = check(capsys, url, "--protocol", "otlp")
    require(server.requests[0].headers.get("Authorization") == f"Basic {login}", "no login sent")
    assert code == 1
    assert "\x1b" not in out and FORGED_SHOWN in out, out
    assert not any(line.startswith("2026-01-01") for line in out.splitlines()), out
    assert "Basic [login]" in out and login not in out and PASSWORD not in out, out


def test_header_values_a_success_answer_holds_too_leave_its_verdicts_alone(make_handler, tmp_path):
    """A 2xx answer is read whole: scrubbing ``true`` or ``create`` out of it first would
    unmake the JSON that says which event was taken."""
    with FakeBulk(fates(bad=unparsable)) as bulk:
        h = make_handler(
            bulk.url(),
            protocol="elasticsearch",
            headers={"X-Sync": "true", "X-Op": "create"},
            **spill_opts(str(tmp_path / "spill")),
        )
        log_fated(attach(h), ["ok", "bad", "ok"])
        assert h.flush(10), h.stats()
        assert indexed_is(bulk) == [0, 2]
        stats = h.stats()
        assert (stats["shipped"], stats["rejected"], stats["retries"]) == (2, 1, 0), stats
        check_identity(stats)
