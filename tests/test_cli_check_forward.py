"""``logship check --protocol forward``: each step against a real Fluent Bit forward input,
over TCP (with and without the shared_key handshake), TLS and a Unix socket."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trustme

from logship.cli import main

STEPS = ["dns", "tcp", "tls", "post", "clock", "spill"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LOGSHIP_TOKEN", "LOGSHIP_TOKEN_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOGSHIP_SPILL_DIR", str(tmp_path / "spill"))


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, str]]:
    """Run ``logship check --protocol forward``; return the status and each step's line."""
    code = main(["check", "--protocol", "forward", *argv])
    out = capsys.readouterr().out
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s+(DNS|TCP|TLS|POST|CLOCK|SPILL)\s+(PASS|WARN|FAIL|SKIP)\s", line)
        if m:
            found[m.group(1).lower()] = line
    assert list(found) == STEPS, out
    return code, found


def verdicts(found: dict[str, str]) -> list[str]:
    return [found[step].split()[1] for step in STEPS]


def forward_input(**settings: str) -> list[dict[str, str]]:
    return [{"name": "forward", "listen": "127.0.0.1", "port": "{port}", **settings}]


def test_a_test_record_acknowledged_over_tcp(fluent_bit, capsys):
    fb = fluent_bit(forward_input())
    code, found = check(capsys, f"tcp://127.0.0.1:{fb.port}")
    assert code == 0
    assert verdicts(found) == ["PASS", "PASS", "SKIP", "PASS", "SKIP", "PASS"]
    assert "ack of chunk" in found["post"] and "tag logship" in found["post"]
    record = fb.wait_for(1)[0]
    assert record["logship_check"] is True and record["uuid"] in found["post"]


def test_the_handshake_with_the_token_and_a_wrong_or_missing_one(fluent_bit, capsys):
    fb = fluent_bit(forward_input(shared_key="s3cret"))
    url = f"tcp://127.0.0.1:{fb.port}"
    code, found = check(capsys, url, "--token", "s3cret")
    assert code == 0, found
    assert "after the shared_key handshake with the token from --token" in found["post"]
    code, found = check(capsys, url, "--token", "wrong")
    assert code == 1 and "FAIL" in found["post"]
    assert "refused the shared key" in found["post"]
    assert "against the server's shared_key" in found["post"]
    assert "wrong" not in found["post"]  # the token is never printed
    code, found = check(capsys, url)
    assert code == 1 and "pass it with --token or --token-file" in found["post"]


def test_a_unix_socket_and_one_that_is_not_there(fluent_bit, capsys, tmp_path):
    path = tmp_path / "fb.sock"
    fluent_bit([{"name": "forward", "unix_path": str(path)}])
    code, found = check(capsys, f"unix://{path}")
    assert code == 0
    assert verdicts(found) == ["SKIP", "PASS", "SKIP", "PASS", "SKIP", "PASS"]
    code, found = check(capsys, f"unix://{tmp_path}/none.sock")
    assert code == 1 and "does not exist" in found["tcp"] and "unix_path" in found["tcp"]
    assert verdicts(found)[3] == "SKIP"


def test_tls_is_checked_then_the_record_sent_over_it(fluent_bit, capsys, tmp_path):
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, key, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    tls: dict[str, Any] = {"tls": "on", "tls.verify": "off"}
    fb = fluent_bit(forward_input(**tls, **{"tls.crt_file": str(cert), "tls.key_file": str(key)}))
    code, found = check(capsys, f"tls://localhost:{fb.port}", "--ca-file", str(ca_file))
    assert code == 0, found
    assert verdicts(found) == ["PASS", "PASS", "PASS", "PASS", "SKIP", "PASS"]
    code, found = check(capsys, f"tcp://127.0.0.1:{fb.port}", "--timeout", "2")
    assert code == 1 and "use tls://" in found["post"]
