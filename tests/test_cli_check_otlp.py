"""``logship check --protocol otlp URL``: the test record, against a real Fluent Bit and a fake.

The report's helpers are ``test_cli_check``'s (with its fixture that keeps a
token in the environment out); the answers scripted on the
fake are those of the OTLP specification (``partialSuccess``, the retryable
statuses, a ``google.rpc.Status`` body).
"""

from __future__ import annotations

import gzip
import json

import pytest
from test_cli_check import TOKEN, _clean_env, check, fix_of, lines, verdicts  # noqa: F401

from faultserver import status


def test_the_test_record_is_one_otlp_log_record_sent_as_the_handler_would(server, capsys):
    code, out = check(capsys, server.url(""), "--protocol", "otlp", "--token", TOKEN)
    assert code == 0, out
    assert verdicts(out)["post"] == "PASS"
    assert TOKEN not in out
    (req,) = server.requests
    assert req.path == "/v1/logs"
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Content-Encoding"] == "gzip"
    (rl,) = json.loads(gzip.decompress(req.wire))["resourceLogs"]
    (sl,) = rl["scopeLogs"]
    (record,) = sl["logRecords"]
    assert sl["scope"] == {"name": "logship.check"}
    assert (record["severityNumber"], record["severityText"]) == (9, "INFO")
    attributes = {a["key"]: a["value"] for a in record["attributes"]}
    assert attributes["logship_check"] == {"boolValue": True}
    uid = attributes["log.record.uid"]["stringValue"]
    post = lines(out)["post"]
    assert uid in post and "1 log record, OTLP JSON, gzip" in post


def test_a_real_fluent_bit_takes_the_test_record(fluent_bit, capsys):
    fb = fluent_bit([{"name": "opentelemetry", "listen": "127.0.0.1", "port": "{port}"}])
    code, out = check(capsys, f"http://127.0.0.1:{fb.port}", "--protocol", "otlp")
    assert code == 0, out
    assert "201 Created: the test record was taken" in lines(out)["post"]
    (record,) = fb.wait_for(1, key="log")
    assert record["log"].startswith("logship check: a test event from ")


def partial(rejected: str, message: str) -> object:
    body = {"partialSuccess": {"rejectedLogRecords": rejected, "errorMessage": message}}
    return status(200, json.dumps(body).encode(), Content_Type="application/json")


@pytest.mark.parametrize(
    ("answer", "verdict", "said", "fix"),
    [
        (partial("1", "timestamp too old"), "FAIL", "1 of 1 log records rejected", "dead-letter"),
        (partial("0", "attributes truncated"), "WARN", "attributes truncated", "with a warning"),
        (status(429, Retry_After="3"), "WARN", "asked to retry later", "overloaded"),
        (status(503), "WARN", "asked to retry later", "overloaded"),
        (
            status(500, b'{"code":13,"message":"pipeline failed"}'),
            "FAIL",
            "pipeline failed",
            "never retried",
        ),
        (
            status(400, b'{"message":"bad timeUnixNano"}'),
            "FAIL",
            "bad timeUnixNano",
            "never retried",
        ),
        (status(415), "FAIL", "no reason given", "application/json"),
        (status(404), "FAIL", "404", "/v1/logs"),
        (status(401), "FAIL", "authentication was refused", "the token"),
    ],
)
def test_what_each_answer_means(server, capsys, answer, verdict, said, fix):
    server.default = answer
    code, out = check(capsys, server.url(""), "--protocol", "otlp", "--token", TOKEN)
    post = lines(out)["post"]
    assert verdicts(out)["post"] == verdict, post
    assert said in post and fix in fix_of(post), post
    assert code == (1 if verdict == "FAIL" else 0)
