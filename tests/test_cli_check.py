"""``logship check URL``: every step against real servers on 127.0.0.1, and the report.

HTTPS servers use certificates made here by ``trustme``; the certificate
reader is compared with ``cryptography`` (a test-only dependency).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from cryptography import x509

import logship
from logship.cli import main
from logship.cli.certinfo import CertInfo, host_matches, parse_certificate
from logship.cli.check import check_tcp
from logship.cli.checkhttp import MAX_SKEW, check_clock
from logship.worker.spill.folder import default_spill_dir

from faultserver import CLOSE, FaultServer, status

TOKEN = "tok-3f9a7c51e2d84b06"
API_KEY = "s3cret"
STEPS = ["dns", "tcp", "tls", "post", "clock", "spill"]
NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The sandbox points requests at the system bundle; the handler's own
    # defaults are under test here. A token in the environment would be used.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "LOGSHIP_TOKEN", "LOGSHIP_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Any) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@contextlib.contextmanager
def tls_server(
    leaf: trustme.LeafCert,
    client_ca: trustme.CA | None = None,
    max_version: ssl.TLSVersion | None = None,
) -> Iterator[FaultServer]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    if max_version is not None:
        ctx.maximum_version = max_version
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(ctx)
    with FaultServer(ssl_context=ctx) as srv:
        yield srv


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run ``logship check`` in this process; return the status and everything printed."""
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out + err


def lines(out: str) -> dict[str, str]:
    """The report's step lines, by step name."""
    found = {}
    for line in out.splitlines():
        m = re.match(
            r"\s+(DNS|TCP|TLS|POST|CLOCK|SPILL)\s+(PASS|WARN|FAIL|SKIP)\s+[\d.]+ ms\s", line
        )
        if m:
            found[m.group(1).lower()] = line
    assert list(found) == STEPS, out
    return found


def verdicts(out: str) -> dict[str, str]:
    return {name: line.split()[1] for name, line in lines(out).items()}


def fix_of(line: str) -> str:
    assert " -> fix: " in line, line
    return line.split(" -> fix: ", 1)[1]


# -- plain HTTP ------------------------------------------------------------------------


def test_plain_http_201_passes_and_sends_one_event_as_the_handler_would(server, capsys):
    code, out = check(capsys, server.url(), "--token", TOKEN)
    assert code == 0, out
    assert verdicts(out) == {
        "dns": "PASS",
        "tcp": "PASS",
        "tls": "SKIP",
        "post": "PASS",
        "clock": "PASS",
        "spill": "PASS",
    }
    assert out.rstrip().endswith("all checks passed")
    assert TOKEN not in out
    (req,) = server.requests
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.headers["Content-Encoding"] == "gzip"
    assert req.headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f]{32}", req.headers["Idempotency-Key"])
    (event,) = req.events
    assert event["logger"] == "logship.check" and event["level"] == "INFO"
    assert event["logship_check"] is True
    assert {"timestamp", "hostname", "uuid", "kernel_version", "pid", "thread"} <= set(event)
    assert event["uuid"] in lines(out)["post"]  # to find it in the aggregator


@pytest.mark.parametrize("encoding", ["ndjson", "msgpack"])
def test_other_encodings_are_sent_as_chosen(server, capsys, encoding):
    code, out = check(capsys, server.url(), "--encoding", encoding)
    assert code == 0, out
    (req,) = server.requests
    assert (
        req.headers["Content-Type"]
        == f"application/{'x-ndjson' if encoding == 'ndjson' else encoding}"
    )
    assert len(req.events) == 1 and "Authorization" not in req.headers


def test_token_file_is_sent_and_never_printed(server, capsys, tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    code, out = check(capsys, server.url(), "--token-file", str(path))
    assert code == 0, out
    assert server.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert "--token-file" in lines(out)["post"] and TOKEN not in out


def test_the_token_is_hidden_even_when_the_server_echoes_it(server, capsys):
    server.default = status(400, f"bad request from Bearer {TOKEN}".encode())
    for fmt in ([], ["--json"]):
        code, out = check(capsys, server.url(), "--token", TOKEN, *fmt)
        assert code == 1
        assert TOKEN not in out
        assert "Bearer [token]" in out


# -- what the POST's answer means --------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "verdict", "words"),
    [
        (status(401), "FAIL", "check the token"),
        (status(403), "FAIL", "check the token"),
        (status(404), "FAIL", "check the URL's path"),
        (status(413), "FAIL", "body limit"),
        (status(500), "FAIL", "the aggregator is failing"),
        (status(503), "FAIL", "the aggregator is failing"),
        (status(400, b"error: unable to process records"), "FAIL", "refused the event"),
        (status(302, Location="https://elsewhere.example/x"), "FAIL", "elsewhere.example"),
        (status(429, Retry_After="1"), "WARN", "retries"),
        (status(200), "PASS", None),
        (status(204), "PASS", None),
    ],
)
def test_each_answer_gets_its_verdict_and_fix(server, capsys, answer, verdict, words):
    server.default = answer
    code, out = check(capsys, server.url(), "--token", TOKEN)
    post = lines(out)["post"]
    assert post.split()[1] == verdict, out
    assert code == (1 if verdict == "FAIL" else 0)
    assert post.split()[4] == str(answer.status), post
    if words:
        assert words in fix_of(post)
    assert TOKEN not in out


def test_401_without_a_token_says_to_pass_one(server, capsys):
    server.default = status(401)
    code, out = check(capsys, server.url())
    assert code == 1
    assert "pass --token or --token-file" in fix_of(lines(out)["post"])


def test_400_shows_the_server_reason(server, capsys):
    server.default = status(400, b"error: invalid 'Content-Type'")
    code, out = check(capsys, server.url(), "--encoding", "ndjson")
    post = lines(out)["post"]
    assert code == 1
    assert "error: invalid 'Content-Type'" in post
    assert "use --encoding json" in fix_of(post)


def test_413_from_a_body_limit(server, capsys):
    server.max_body = 10  # smaller than any gzip body of one event
    code, out = check(capsys, server.url())
    post = lines(out)["post"]
    assert code == 1 and post.split()[1] == "FAIL"
    assert "413" in post and "a proxy's or the aggregator's body limit" in fix_of(post)


def test_a_hang_up_without_an_answer_fails_the_post(server, capsys):
    server.default = CLOSE
    code, out = check(capsys, server.url())
    v = verdicts(out)
    assert code == 1 and v["post"] == "FAIL" and v["clock"] == "SKIP"
    assert "hung up" in fix_of(lines(out)["post"])


# -- extra headers (--header) -----------------------------------------------------------------


class _KeyedHandler(http.server.BaseHTTPRequestHandler):
    """An aggregator that takes events only with ``X-API-Key: s3cret``, else answers 401."""

    seen: list[dict[str, str]]  # the headers of each request, one list per server

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(dict(self.headers.items()))
        self.send_response(201 if self.headers.get("X-API-Key") == API_KEY else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def keyed_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A :class:`_KeyedHandler` server: its URL and the headers of each request it got."""
    seen: list[dict[str, str]] = []
    with local_server(type("Handler", (_KeyedHandler,), {"seen": seen})) as url:
        yield url, seen


def test_a_header_the_endpoint_requires_fails_without_and_passes_with_it(capsys):
    with keyed_server() as (url, seen):
        code, out = check(capsys, url)
        assert code == 1
        post = lines(out)["post"]
        assert "401" in post and "without a token)" in post
        assert "X-API-Key" not in seen[-1]

        code, out = check(capsys, url, "--header", f"X-API-Key: {API_KEY}")
        assert code == 0, out
        assert verdicts(out)["post"] == "PASS"
        assert seen[-1]["X-API-Key"] == API_KEY
        assert "without a token, with headers X-API-Key" in lines(out)["post"]
        assert API_KEY not in out


def test_headers_are_sent_as_the_handler_sends_them(server, capsys):
    code, out = check(
        capsys,
        server.url(),
        "--token",
        TOKEN,
        "--header",
        f"  X-API-Key  :  {API_KEY}  ",  # white space around both is not part of them
        "--header",
        "X-Scope-OrgID:tenant-1",
        "--header",
        "X-Empty:",
    )
    assert code == 0, out
    (req,) = server.requests
    assert req.headers["X-API-Key"] == API_KEY
    assert req.headers["X-Scope-OrgID"] == "tenant-1"
    assert req.headers["X-Empty"] == ""
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.headers["Content-Type"] == "application/json"
    assert (
        "with the token from --token, with headers X-API-Key, X-Scope-OrgID, X-Empty"
        in (lines(out)["post"])
    )


def test_an_authorization_header_without_a_token_is_sent(server, capsys):
    code, out = check(capsys, server.url(), "--header", "Authorization: Basic dXNlcjpzM2NyZXQ=")
    assert code == 0, out
    assert server.requests[0].headers["Authorization"] == "Basic dXNlcjpzM2NyZXQ="
    assert "dXNlcjpzM2NyZXQ=" not in out and "with headers Authorization" in out


@pytest.mark.parametrize("fmt", [[], ["--json"]])
def test_header_values_are_never_printed_even_when_the_server_echoes_them(server, capsys, fmt):
    server.default = status(400, f"unknown X-API-Key {API_KEY} for tenant-77".encode())
    code, out = check(
        capsys,
        server.url(),
        "--header",
        f"X-API-Key: {API_KEY}",
        "--header",
        "X-Scope-OrgID: tenant-77",
        *fmt,
    )
    assert code == 1
    assert server.requests[0].headers["X-API-Key"] == API_KEY
    assert API_KEY not in out and "tenant-77" not in out
    assert "unknown X-API-Key [header X-API-Key] for [header X-Scope-OrgID]" in out
    if fmt:
        (post,) = [s for s in json.loads(out)["steps"] if s["name"] == "post"]
        assert "with headers X-API-Key, X-Scope-OrgID" in post["detail"]


HEADERS_HINT = "the headers (--header; handler option headers)"
TOKEN_HINT = "the token (--token/--token-file; handler options token, token_file)"


@pytest.mark.parametrize(
    ("code", "token", "expected"),
    [
        (
            401,
            [],
            f"check {HEADERS_HINT}, or pass --token or --token-file if the endpoint wants one",
        ),
        (401, ["--token", TOKEN], f"check {TOKEN_HINT} or {HEADERS_HINT}"),
        (
            403,
            [],
            f"access is forbidden: check {HEADERS_HINT} and their permissions for this endpoint",
        ),
        (
            403,
            ["--token", TOKEN],
            f"access is forbidden: check the token or {HEADERS_HINT} and their permissions "
            "for this endpoint",
        ),
    ],
)
def test_a_refusal_with_headers_says_to_check_them(server, capsys, code, token, expected):
    server.default = status(code)
    status_, out = check(capsys, server.url(), "--header", f"X-API-Key: {API_KEY}", *token)
    assert status_ == 1
    assert fix_of(lines(out)["post"]) == expected
    assert API_KEY not in out


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (f"X-API-Key {API_KEY}", "'X-API-Key…' has no colon: give it as 'Name: value'"),
        (f"X-API-Key={API_KEY}", "'X-API-Key…' has no colon"),
        (f": {API_KEY}", "': …' has no header name before the colon"),
        (f"   : {API_KEY}", "': …' has no header name before the colon"),
    ],
)
def test_a_malformed_header_is_a_usage_error_naming_it(capsys, header, words):
    with pytest.raises(SystemExit) as e:
        main(["check", "http://127.0.0.1:9/x", "--header", header])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: logship check" in err
    assert f"logship check: error: argument --header: {words}" in err
    assert "cret" not in err  # the value may be a secret


@pytest.mark.parametrize(
    ("header", "name", "value"),
    [
        (f"X API Key: {API_KEY}", "X API Key", API_KEY),
        (f"X-API-Key(1): {API_KEY}", "X-API-Key(1)", API_KEY),
        (f"X-API-Key: {API_KEY}\r\nX-Admin: yes", "X-API-Key", f"{API_KEY}\r\nX-Admin: yes"),
        ("X-API-Key: s3\ncret", "X-API-Key", "s3\ncret"),
        ("X-API-Key: s3€cret", "X-API-Key", "s3€cret"),
    ],
)
def test_a_header_the_handler_refuses_is_refused_as_the_handler_refuses_it(
    capsys, header, name, value
):
    code, out = check(capsys, "http://127.0.0.1:9/x", "--header", header)
    assert code == 2
    assert out == handler_refusal(headers={name: value})
    assert "cret" not in out  # the value may be a secret


def test_a_header_given_twice_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["check", "http://127.0.0.1:9/x", "--header", "X-A: 1", "--header", "x-a: 2"])
    assert e.value.code == 2
    assert "argument --header: 'x-a' is given twice" in capsys.readouterr().err


def handler_refusal(**options: Any) -> str:
    """The message a ShipHandler refuses ``options`` with, as ``logship check`` prints it."""
    with pytest.raises(ValueError) as refused:
        logship.ShipHandler(url="http://127.0.0.1:9/x", spill=False, **options)
    return f"logship check: error: {str(refused.value).removeprefix('logship: ')}\n"


@pytest.mark.parametrize(
    "name", ["Content-Type", "content-encoding", "Content-Length", "Idempotency-Key", "Host"]
)
def test_a_header_logship_sets_is_refused_as_the_handler_refuses_it(capsys, name):
    code, out = check(capsys, "http://127.0.0.1:9/x", "--header", f"{name}: {API_KEY}")
    assert code == 2
    assert out == handler_refusal(headers={name: API_KEY})
    assert f"may not set {name!r}; logship sets it" in out


def test_an_authorization_header_with_a_token_is_refused_as_the_handler_refuses_it(
    capsys, monkeypatch
):
    expected = handler_refusal(token=TOKEN, headers={"Authorization": "x"})
    assert "sets Authorization and a token is given" in expected
    code, out = check(
        capsys, "http://127.0.0.1:9/x", "--token", TOKEN, "--header", "Authorization: x"
    )
    assert code == 2 and out == expected
    monkeypatch.setenv("LOGSHIP_TOKEN", TOKEN)  # a token from the environment counts too
    code, out = check(capsys, "http://127.0.0.1:9/x", "--header", "authorization: x")
    assert code == 2 and out == expected


def test_the_help_shows_the_header_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["check", "--help"])
    assert e.value.code == 0
    assert "--header 'NAME: VALUE'" in capsys.readouterr().out


# -- DNS and TCP ----------------------------------------------------------------------------


def test_a_port_nothing_listens_on_fails_at_tcp(capsys, refused_port):
    code, out = check(capsys, f"http://127.0.0.1:{refused_port}/app")
    assert code == 1
    assert verdicts(out) == {
        "dns": "PASS",
        "tcp": "FAIL",
        "tls": "SKIP",
        "post": "SKIP",
        "clock": "SKIP",
        "spill": "PASS",
    }
    tcp = lines(out)["tcp"]
    assert "refused" in tcp
    assert f"nothing listens on 127.0.0.1:{refused_port}" in fix_of(tcp)


def test_a_name_that_does_not_resolve_fails_at_dns(capsys):
    code, out = check(capsys, "https://logs.nowhere.invalid:9880/app")
    assert code == 1
    v = verdicts(out)
    assert v["dns"] == "FAIL" and {v[s] for s in STEPS[1:5]} == {"SKIP"}
    dns = lines(out)["dns"]
    assert "logs.nowhere.invalid does not resolve" in dns
    assert fix_of(dns) == "the host name does not resolve: check the URL's host and your DNS"


def test_a_name_is_resolved_then_connected(server, capsys):
    code, out = check(capsys, f"http://localhost:{server.port}/app")
    assert "localhost -> " in lines(out)["dns"]
    assert f"127.0.0.1:{server.port} connected" in lines(out)["tcp"]  # ::1, if any, may refuse
    assert verdicts(out)["post"] == "PASS" and code == 0


def test_tcp_warns_when_only_some_addresses_answer(server, refused_port):
    addresses = [
        (socket.AF_INET, ("127.0.0.1", refused_port)),
        (socket.AF_INET, ("127.0.0.1", server.port)),
    ]
    reachable, finding = check_tcp(addresses, 5.0)
    assert reachable == [addresses[1]]
    assert finding.verdict == "WARN"
    assert "refused" in finding.detail and "connected in" in finding.detail
    assert finding.fix and "listen on every address" in finding.fix


# -- TLS ------------------------------------------------------------------------------------


def test_valid_certificate_with_ca_file_passes(ca, ca_file, capsys):
    with tls_server(ca.issue_cert("127.0.0.1")) as srv:
        code, out = check(capsys, srv.url(), "--ca-file", ca_file)
        assert len(srv.requests) == 1
    assert code == 0, out
    assert verdicts(out) == dict.fromkeys(STEPS, "PASS")
    tls = lines(out)["tls"]
    assert re.search(r"TLSv1\.[23] \S+;", tls)
    assert "SAN IP:127.0.0.1" in tls and "it covers 127.0.0.1" in tls
    assert f"chain verified against --ca-file {ca_file}" in tls
    assert re.search(r"valid until \d{4}-\d\d-\d\d \d\d:\d\d UTC, \d+ days left", tls)


def test_expired_certificate_fails(ca, ca_file, capsys):
    leaf = ca.issue_cert(
        "127.0.0.1", not_before=NOW - dt.timedelta(days=30), not_after=NOW - dt.timedelta(days=3)
    )
    with tls_server(leaf) as srv:
        code, out = check(capsys, srv.url(), "--ca-file", ca_file)
        assert srv.requests == []  # nothing sent over a connection that failed to verify
    assert code == 1
    v = verdicts(out)
    assert v["tls"] == "FAIL" and v["post"] == "SKIP"
    tls = lines(out)["tls"]
    assert "expired 3 days ago" in tls
    assert "chain verified against" in tls  # the chain itself is fine: only the dates are not
    assert "renew the server's certificate" in fix_of(tls)


def test_certificate_not_yet_valid_fails(ca, ca_file, capsys):
    leaf = ca.issue_cert(
        "127.0.0.1", not_before=NOW + dt.timedelta(days=2), not_after=NOW + dt.timedelta(days=90)
    )
    with tls_server(leaf) as srv:
        code, out = check(capsys, srv.url(), "--ca-file", ca_file)
    tls = lines(out)["tls"]
    assert code == 1 and tls.split()[1] == "FAIL" and "not valid until" in tls
    assert fix_of(tls) == "check this host's clock (NTP), or reissue the certificate"


def test_certificate_expiring_soon_warns(ca, ca_file, capsys):
    leaf = ca.issue_cert("127.0.0.1", not_after=NOW + dt.timedelta(days=5, hours=1))
    with tls_server(leaf) as srv:
        code, out = check(capsys, srv.url(), "--ca-file", ca_file)
    assert code == 0, out
    tls = lines(out)["tls"]
    assert tls.split()[1] == "WARN" and "expires in 5 days" in tls
    assert fix_of(tls) == "renew the server's certificate soon"
    assert out.rstrip().endswith("all checks passed, 1 warning(s)")


def test_certificate_for_another_host_fails_with_a_san_mismatch(ca, ca_file, capsys):
    with tls_server(ca.issue_cert("logs.example.test")) as srv:
        code, out = check(capsys, srv.url(), "--ca-file", ca_file)
    assert code == 1
    tls = lines(out)["tls"]
    assert tls.split()[1] == "FAIL"
    assert "does not cover 127.0.0.1 (SAN DNS:logs.example.test)" in tls
    assert "chain verified against" in tls
    assert "reissue it with 127.0.0.1 in its SAN" in fix_of(tls)


def test_untrusted_ca_fails_without_ca_file(ca, capsys):
    with tls_server(ca.issue_cert("127.0.0.1")) as srv:
        code, out = check(capsys, srv.url())
    assert code == 1
    tls = lines(out)["tls"]
    assert tls.split()[1] == "FAIL"
    assert "the chain does not verify against requests' default CA bundle (certifi)" in tls
    assert "it covers 127.0.0.1" in tls  # the rest of the certificate is fine
    assert "pass --ca-file with the CA that issued it" in fix_of(tls)


def test_a_ca_file_of_another_ca_fails(ca, capsys, tmp_path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with tls_server(ca.issue_cert("127.0.0.1")) as srv:
        code, out = check(capsys, srv.url(), "--ca-file", str(other))
    tls = lines(out)["tls"]
    assert code == 1 and f"does not verify against --ca-file {other}" in tls
    assert f"{other} does not hold the CA that issued it" in fix_of(tls)


def test_a_ca_only_the_system_store_trusts_is_named(ca, ca_file, capsys, monkeypatch):
    # OpenSSL's system store follows SSL_CERT_FILE; requests' default bundle does not.
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    with tls_server(ca.issue_cert("127.0.0.1")) as srv:
        code, out = check(capsys, srv.url())
    tls = lines(out)["tls"]
    assert code == 1 and "does not verify against requests' default CA bundle" in tls
    assert fix_of(tls) == (
        "this host's system store trusts it, but logship uses requests' default CA bundle "
        f"(certifi): pass --ca-file {ca_file} (handler option ca_file)"
    )


def test_the_ca_bundle_environment_is_what_the_handler_trusts(ca, ca_file, capsys, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    with tls_server(ca.issue_cert("127.0.0.1")) as srv:
        code, out = check(capsys, srv.url())
    assert code == 0, out
    assert f"chain verified against REQUESTS_CA_BUNDLE={ca_file}" in lines(out)["tls"]


def test_https_to_a_plain_http_port_says_so(server, ca_file, capsys):
    code, out = check(capsys, server.url().replace("http:", "https:"), "--ca-file", ca_file)
    tls = lines(out)["tls"]
    assert code == 1 and tls.split()[1] == "FAIL"
    assert "does not speak TLS" in fix_of(tls)


def test_mutual_tls(ca, ca_file, capsys, tmp_path):
    client = tmp_path / "client.pem"
    ca.issue_cert("client.logship.test").private_key_and_cert_chain_pem.write_to_path(str(client))
    with tls_server(ca.issue_cert("127.0.0.1"), client_ca=ca) as srv:
        code, out = check(capsys, srv.url(), "--ca-file", ca_file, "--client-cert", str(client))
        assert code == 0, out
        code, out = check(capsys, srv.url(), "--ca-file", ca_file)
    assert code == 1
    failed = [line for line in lines(out).values() if line.split()[1] == "FAIL"]
    assert len(failed) == 1
    assert "pass --client-cert and --client-key" in fix_of(failed[0])


def test_tls_min_version_is_checked_as_the_handler_would(ca, ca_file, capsys):
    with tls_server(ca.issue_cert("127.0.0.1"), max_version=ssl.TLSVersion.TLSv1_2) as srv:
        code, out = check(capsys, srv.url(), "--ca-file", ca_file)
        assert code == 0, out
        assert "TLSv1.2" in lines(out)["tls"]
        code, out = check(capsys, srv.url(), "--ca-file", ca_file, "--tls-min-version", "1.3")
    assert code == 1
    tls = lines(out)["tls"]
    assert tls.split()[1] == "FAIL"
    assert fix_of(tls) == (
        "the server offers no TLS version >= 1.3: upgrade its TLS settings "
        "(or lower the handler's tls_min_version)"
    )


def test_tls_min_version_takes_only_what_the_handler_takes(capsys):
    with pytest.raises(SystemExit) as e:
        main(["check", "https://127.0.0.1:9/x", "--tls-min-version", "1.1"])
    assert e.value.code == 2
    assert "argument --tls-min-version: invalid choice: '1.1'" in capsys.readouterr().err


# -- the certificate reader -----------------------------------------------------------------


def _der(leaf: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


def test_the_certificate_reader_agrees_with_cryptography(ca):
    leaf = ca.issue_cert(
        "logs.example.test",
        "*.logs.example.test",
        "10.1.2.3",
        "::1",
        common_name="logs.example.test",
        not_before=dt.datetime(2001, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc),
        not_after=dt.datetime(2051, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc),  # GeneralizedTime
    )
    for der in (_der(leaf), ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())):
        mine = parse_certificate(der)
        theirs = x509.load_der_x509_certificate(der)
        assert mine.not_before == theirs.not_valid_before_utc
        assert mine.not_after == theirs.not_valid_after_utc
        for name, text in ((theirs.subject, mine.subject), (theirs.issuer, mine.issuer)):
            assert text == ", ".join(f"{a.rfc4514_attribute_name}={a.value}" for a in name)
        try:
            san = theirs.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            assert mine.dns_names == () and mine.ip_addresses == ()
            continue
        assert list(mine.dns_names) == san.get_values_for_type(x509.DNSName)
        assert list(mine.ip_addresses) == [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    assert "CN=logs.example.test" in parse_certificate(_der(leaf)).subject


def test_the_certificate_reader_refuses_garbage():
    for junk in (b"", b"\x30\x03\x02\x01", b"\x30\x82\xff\xff" + b"\x00" * 10, b"not DER at all"):
        with pytest.raises(ValueError):
            parse_certificate(junk)


@pytest.mark.parametrize(
    ("names", "ips", "host", "expected"),
    [
        (("logs.example.test",), (), "logs.example.test", True),
        (("logs.example.test",), (), "LOGS.Example.test.", True),
        (("*.example.test",), (), "logs.example.test", True),
        (("*.example.test",), (), "example.test", False),
        (("*.example.test",), (), "a.logs.example.test", False),
        (("*.test",), (), "example.test", False),  # no wildcard over a whole TLD
        (("other.example.test",), (), "logs.example.test", False),
        ((), ("127.0.0.1",), "127.0.0.1", True),
        (("127.0.0.1",), (), "127.0.0.1", False),  # an address must be an IP SAN
        ((), ("::1",), "0:0::1", True),
        ((), (), "logs.example.test", False),  # no SAN: the common name does not count
    ],
)
def test_host_matching(names, ips, host, expected):
    epoch = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    cert = CertInfo("CN=logs.example.test", "CN=ca", epoch, epoch, names, ips)
    assert host_matches(cert, host) is expected


# -- clock skew -----------------------------------------------------------------------------


class _SkewedHandler(http.server.BaseHTTPRequestHandler):
    skew = 0.0

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(dt.datetime.now().timestamp() + self.skew, usegmt=True)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def skewed_server(skew: float) -> Iterator[str]:
    with local_server(type("Handler", (_SkewedHandler,), {"skew": skew})) as url:
        yield url


@contextlib.contextmanager
def local_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1; yield the URL to check."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/app"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.mark.parametrize("skew", [-120.0, 3600.0])
def test_clock_skew_past_five_seconds_warns(capsys, skew):
    with skewed_server(skew) as url:
        code, out = check(capsys, url)
    assert code == 0, out  # a warning, not a failure
    clock = lines(out)["clock"]
    assert clock.split()[1] == "WARN"
    assert ("behind" if skew > 0 else "ahead of") in clock
    assert fix_of(clock).startswith("skew breaks TLS and event correlation: check NTP")


def test_clock_judgement():
    now = 1_800_000_000.0
    date = email.utils.formatdate(now, usegmt=True)
    assert check_clock(date, now + 0.3).verdict == "PASS"
    assert check_clock(date, now + MAX_SKEW - 1).verdict == "PASS"
    assert check_clock(date, now + MAX_SKEW + 2).verdict == "WARN"
    assert check_clock(None, now).verdict == "SKIP"
    assert check_clock("yesterday-ish", now).verdict == "SKIP"


# -- the spill folder -----------------------------------------------------------------------


def test_a_spill_folder_of_another_user_fails_the_spill_step(server, capsys, tmp_path, monkeypatch):
    folder = tmp_path / "spill"
    folder.mkdir()
    os.chown(folder, 54321, 54321)
    monkeypatch.setenv("LOGSHIP_SPILL_DIR", str(folder))
    code, out = check(capsys, server.url())
    assert code == 1 and verdicts(out)["spill"] == "FAIL"
    spill = lines(out)["spill"]
    assert f"the spill folder {folder} is owned by uid 54321" in spill
    assert "a handler would run without a spill" in spill
    assert fix_of(spill).startswith("give spill_dir (or LOGSHIP_SPILL_DIR) a folder this user owns")


def test_the_spill_step_says_where_the_folder_is_and_changes_nothing(
    server, capsys, tmp_path, monkeypatch
):
    folder = tmp_path / "spill"
    monkeypatch.setenv("LOGSHIP_SPILL_DIR", str(folder))
    code, out = check(capsys, server.url())
    assert code == 0 and f"{folder}: not made yet" in lines(out)["spill"]
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    code, out = check(capsys, server.url())
    assert code == 0 and "mode 755: a handler makes it 0700" in lines(out)["spill"]
    assert folder.stat().st_mode & 0o777 == 0o755


def test_no_secret_of_the_url_is_printed(server, capsys):
    url = f"http://user:pw-0c1d2e3f@127.0.0.1:{server.port}/app?api_key=key-4a5b6c7d"
    code, out = check(capsys, url)
    assert code == 0, out
    assert "pw-0c1d2e3f" not in out and "key-4a5b6c7d" not in out
    assert "user:***@127.0.0.1" in out and "api_key=***" in out


# -- several endpoints ------------------------------------------------------------------------

STEP_LINE = re.compile(r"\s+(DNS|TCP|TLS|POST|CLOCK|SPILL)\s+(PASS|WARN|FAIL|SKIP)\s+[\d.]+ ms\s")


def by_endpoint(out: str) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Each endpoint's verdicts by step, in order, and the verdicts after the last endpoint."""
    sections: list[dict[str, str]] = []
    for line in out.splitlines():
        if re.match(r"endpoint \d+ of \d+: ", line):
            sections.append({})
        elif m := STEP_LINE.match(line):
            sections[-1][m[1].lower()] = m[2]
    after = {name: sections[-1].pop(name) for name in list(sections[-1]) if name == "spill"}
    return sections, after


def test_several_endpoints_are_each_checked_and_one_down_fails_the_check(
    capsys, refused_url, tmp_path, monkeypatch
):
    monkeypatch.delenv("LOGSHIP_SPILL_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # where the default folder is
    with FaultServer() as a, FaultServer() as c:
        urls = [a.url(), refused_url, c.url()]
        code, out = check(capsys, *urls)
    assert code == 1, out
    assert out.splitlines()[0] == f"logship check {' '.join(urls)}"
    sections, after = by_endpoint(out)
    ready = {"dns": "PASS", "tcp": "PASS", "tls": "SKIP", "post": "PASS", "clock": "PASS"}
    down = {"dns": "PASS", "tcp": "FAIL", "tls": "SKIP", "post": "SKIP", "clock": "SKIP"}
    assert sections == [ready, down, ready]
    assert len(a.requests) == len(c.requests) == 1  # one test event each
    # One spill folder for them all: the one a handler with this list would use.
    assert after == {"spill": "PASS"}
    assert default_spill_dir(urls) in out
    view = out.split("endpoints:\n", 1)[1].splitlines()
    width = max(map(len, urls))
    assert view[:3] == [
        f"  {urls[0]:<{width}}  ready   DNS PASS  TCP PASS  TLS SKIP  POST PASS",
        f"  {urls[1]:<{width}}  FAILED  DNS PASS  TCP FAIL  TLS SKIP  POST SKIP",
        f"  {urls[2]:<{width}}  ready   DNS PASS  TCP PASS  TLS SKIP  POST PASS",
    ]
    assert view[3] == "1 of 3 endpoints failed, 1 check(s) in all"


def test_several_endpoints_that_all_answer_pass(capsys):
    with FaultServer() as a, FaultServer() as b:
        code, out = check(capsys, a.url(), b.url(), "--token", TOKEN)
    assert code == 0, out
    assert out.rstrip().endswith("all checks passed")
    (first,) = a.requests
    (second,) = b.requests
    assert first.headers["Authorization"] == second.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in out


def test_several_endpoints_in_json(capsys, refused_url):
    with FaultServer() as a:
        code, out = check(capsys, a.url(), refused_url, "--json")
    report = json.loads(out)
    assert code == 1 and set(report) == {"ok", "endpoints", "steps"} and report["ok"] is False
    assert [e["url"] for e in report["endpoints"]] == [a.url(), refused_url]
    assert [e["ok"] for e in report["endpoints"]] == [True, False]
    for endpoint in report["endpoints"]:
        assert [s["name"] for s in endpoint["steps"]] == STEPS[:-1]
    assert [s["name"] for s in report["steps"]] == ["spill"]


def test_no_secret_of_any_url_is_printed(server, capsys):
    other = f"http://user:pw-0c1d2e3f@127.0.0.1:{server.port}/other?api_key=key-4a5b6c7d"
    code, out = check(capsys, server.url(), other)
    assert code == 0, out
    assert "pw-0c1d2e3f" not in out and "key-4a5b6c7d" not in out
    assert "endpoint 2 of 2: http://user:***@127.0.0.1" in out


def test_an_endpoint_named_twice_is_a_usage_error(capsys, server):
    code, out = check(capsys, server.url(), server.url())
    assert code == 2 and "names an endpoint twice" in out and not server.requests


# -- JSON and usage -------------------------------------------------------------------------


def test_json_output_matches_the_text_report(ca, ca_file, capsys):
    with tls_server(ca.issue_cert("logs.example.test")) as srv:
        text_code, text = check(capsys, srv.url(), "--ca-file", ca_file, "--token", TOKEN)
        json_code, out = check(capsys, srv.url(), "--ca-file", ca_file, "--token", TOKEN, "--json")
    report = json.loads(out)
    assert set(report) == {"url", "ok", "steps"}
    assert report["url"] == srv.url() and report["ok"] is False
    assert json_code == text_code == 1
    assert [s["name"] for s in report["steps"]] == STEPS
    for step in report["steps"]:
        assert set(step) == {"name", "verdict", "ms", "detail", "fix"}
        assert isinstance(step["ms"], float) and step["ms"] >= 0
        line = lines(text)[step["name"]]
        assert line.split()[1] == step["verdict"]
        assert (step["fix"] is not None) == (" -> fix: " in line)
        if step["fix"]:
            assert fix_of(line) == step["fix"]
    assert (
        report["steps"][2]["verdict"] == "FAIL" and "does not cover" in report["steps"][2]["detail"]
    )
    assert TOKEN not in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["http://127.0.0.1:9/x", "--token", "a", "--token-file", "b"],
        ["http://127.0.0.1:9/x", "--encoding", "xml"],
        ["http://127.0.0.1:9/x", "--timeout", "soon"],
    ],
)
def test_argparse_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(["check", *argv])
    assert e.value.code == 2
    assert "usage: logship check" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["ftp://127.0.0.1/x"], "must start with http://, https://"),
        (["http://127.0.0.1:9/x", "--ca-file", "/nonexistent/ca.pem"], "'ca_file'"),
        (["http://127.0.0.1:9/x", "--client-key", "/etc/hostname"], "'client_key' needs"),
        (["http://127.0.0.1:9/x", "--timeout", "0"], "'timeout' must be a positive number"),
    ],
)
def test_bad_option_values_exit_2(capsys, argv, words):
    code, out = check(capsys, *argv)
    assert code == 2
    assert out.startswith("logship check: error: ") and words in out


def test_the_command_line_exit_statuses(server):
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "logship", "check", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    assert run(server.url(), "--token", TOKEN).returncode == 0
    server.default = status(401)
    failed = run(server.url(), "--token", TOKEN, "--json")
    assert failed.returncode == 1 and json.loads(failed.stdout)["ok"] is False
    assert TOKEN not in failed.stdout + failed.stderr
    assert run("--bogus").returncode == 2


def test_a_client_certificate_without_its_key_is_a_usage_error(ca, ca_file, capsys):
    # As the handler refuses it at construction: the pair is loaded once, up front.
    with tls_server(ca.issue_cert("127.0.0.1")) as srv:
        code, out = check(capsys, srv.url(), "--ca-file", ca_file, "--client-cert", ca_file)
    assert code == 2 and srv.requests == []
    assert "'client_cert' and 'client_key' cannot be loaded" in out
