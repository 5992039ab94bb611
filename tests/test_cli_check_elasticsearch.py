"""``logship check --protocol elasticsearch``: ``GET /`` says who answers, then a test record.

Against a real Fluent Bit's ``elasticsearch`` input, and against the small
bulk endpoint of tests/fakebulk.py for what Fluent Bit never answers: an
Elasticsearch or OpenSearch version document, a key refused on ``GET /``,
an item refused with 403 or 400, a 401 for the whole request.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from logship.cli import main
from logship.cli.checkelastic import server_words

from fakebulk import FakeBulk, mapper_parsing
from faultserver import status

TOKEN = "a2V5LWlkOmtleS1zZWNyZXQ="


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOGSHIP_TOKEN", "LOGSHIP_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)


def post_line(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the check; its exit status, its POST line, and all it printed."""
    code = main(["check", "--protocol", "elasticsearch", *argv])
    out, err = capsys.readouterr()
    (line,) = [ln for ln in out.splitlines() if re.match(r"\s+POST\s", ln)]
    return code, line, out + err


@pytest.fixture
def bulk():
    with FakeBulk() as fake:
        yield fake


def test_fluent_bits_elasticsearch_input_passes(fluent_bit, capsys):
    fb = fluent_bit([{"name": "elasticsearch", "listen": "127.0.0.1", "port": "{port}"}])
    code, line, out = post_line(capsys, f"http://127.0.0.1:{fb.port}", "--token", TOKEN)
    assert code == 0, out
    assert " PASS " in line
    assert "GET / says: version 8.0.0 (Fluent Bit OSS), \"Fluent Bit's Bulk API" in line
    assert "200 OK: the test event was indexed (1 event into 'logs-logship-default'" in line
    assert TOKEN not in out
    (record,) = fb.wait_for(1)
    assert record["logship_check"] is True
    assert record["@meta"]["create"]["_id"] == record["uuid"]
    assert f"_id {record['uuid']}" in line  # to find it in the index


def test_elasticsearch_is_named_with_its_version_and_the_key_is_sent(bulk, capsys):
    code, line, _out = post_line(capsys, bulk.url(), "--token", TOKEN, "--index", "logs-a-b")
    assert code == 0
    assert "GET / says: Elasticsearch 8.15.0; 200 OK: the test event was indexed" in line
    (req,) = bulk.snapshot()
    assert req.path == "/_bulk" and req.headers["Authorization"] == f"ApiKey {TOKEN}"
    assert req.items[0]["create"]["_index"] == "logs-a-b"


def test_opensearch_is_named(bulk, capsys):
    version = {"distribution": "opensearch", "number": "2.11.0"}
    bulk.version = (
        200,
        json.dumps({"version": version, "tagline": "The OpenSearch Project"}).encode(),
    )
    code, line, _out = post_line(capsys, bulk.url())
    assert code == 0 and "GET / says: OpenSearch 2.11.0;" in line


def test_a_key_that_may_not_read_the_version_still_passes(bulk, capsys):
    """GET / takes the monitor privilege: a key made only to write logs has no need of it."""
    bulk.version = (403, b'{"error":{"type":"security_exception"},"status":403}')
    code, line, _out = post_line(capsys, bulk.url(), "--token", TOKEN)
    assert code == 0
    assert "GET / answered 403: this key may not read the version" in line
    assert " PASS " in line


def test_a_proxy_prefix_is_kept_for_the_version_document(bulk, capsys):
    code, line, _out = post_line(capsys, bulk.url("/es/_bulk"))
    assert code == 0 and "Elasticsearch 8.15.0" in line
    assert bulk.snapshot()[0].path == "/es/_bulk"


@pytest.mark.parametrize(
    ("status", "error", "verdict", "words", "fix"),
    [
        (403, {"type": "security_exception", "reason": "unauthorized"}, "FAIL",
         "403 security_exception: unauthorized", "give it the index privilege create_doc"),
        (404, {"type": "index_not_found_exception", "reason": "no such index"}, "FAIL",
         "404 index_not_found_exception", "an index template that makes it a data stream"),
        (429, {"type": "es_rejected_execution_exception", "reason": "busy"}, "WARN",
         "429 es_rejected_execution_exception: busy", "logship retries with back-off"),
    ],
)  # fmt: skip
def test_a_refused_item_says_why_and_what_to_do(bulk, capsys, status, error, verdict, words, fix):
    bulk.fate = lambda doc, attempt: (status, error)
    code, line, _out = post_line(capsys, bulk.url(), "--token", TOKEN)
    assert code == (1 if verdict == "FAIL" else 0)
    assert f" {verdict} " in line
    assert f"the test event's item was refused: {words}" in line
    assert fix in line.split(" -> fix: ")[1]


def test_a_document_the_mapping_refuses_fails_with_the_servers_reason(bulk, capsys):
    bulk.fate = lambda doc, attempt: (400, mapper_parsing(doc, "logship_check"))
    code, line, _out = post_line(capsys, bulk.url())
    assert code == 1
    assert "400 mapper_parsing_exception: failed to parse field [logship_check]" in line
    assert "dead-letter" in line.split(" -> fix: ")[1]


def test_a_refused_key_fails_as_the_handler_would_be_held(bulk, capsys):
    error = {
        "type": "security_exception",
        "reason": "unable to authenticate with provided credentials",
    }
    bulk.version = (401, json.dumps({"error": error, "status": 401}).encode())
    bulk.then(status(401, json.dumps({"error": error, "status": 401}).encode()))
    code, line, out = post_line(capsys, bulk.url(), "--token", TOKEN)
    assert code == 1
    assert "GET / answered 401" in line and "authentication was refused" in line
    assert "check the token" in line.split(" -> fix: ")[1]
    assert TOKEN not in out


def test_an_index_elasticsearch_refuses_is_a_usage_error(capsys: Any):
    code = main(
        ["check", "--protocol", "elasticsearch", "http://127.0.0.1:9200", "--index", "Logs"]
    )
    assert code == 2
    assert (
        "option 'index' is 'Logs', not an index name: it must be lowercase"
        in capsys.readouterr().err
    )


def test_the_index_option_is_refused_for_http(capsys: Any):
    assert main(["check", "http://127.0.0.1:9880/app", "--index", "logs"]) == 2
    assert "takes no option 'index'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "raw", [b"not json", b"[" * 200_000, b'{"version": 7}', b'{"version": {"number": ""}}']
)
def test_a_version_document_that_cannot_be_read_is_said_never_raised(raw: bytes):
    assert server_words(raw) == "no version document: is this Elasticsearch or OpenSearch?"
