"""``logship check --protocol elasticsearch``: who answers, and a test record through ``_bulk``.

First ``GET /``, whose version document says which server and version
answered (Elasticsearch, OpenSearch, or something speaking their bulk API,
such as Fluent Bit's ``elasticsearch`` input). It takes the cluster
privilege ``monitor``, which shipping does not need: a 403 there is said,
not failed. Then one event goes to ``_bulk`` exactly as a handler sends it
(:class:`~logship.pure.protocols.elasticsearch.BulkEncoder`, the handler's
transport, token and headers), and the answer's item is read as the
handler reads it (:class:`~logship.pure.protocols.elasticsearch.BulkReader`).
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from logship.cli.checkhttp import credentials, http_finding, refused_fix, send_sample
from logship.cli.tlsinfo import Finding
from logship.pure.options import Options, read_token_file
from logship.pure.protocols import Verdict
from logship.pure.protocols.elasticsearch import (
    DEFAULT_INDEX,
    ELASTICSEARCH,
    BulkEncoder,
    BulkReader,
)
from logship.worker.diagnostics import Warner
from logship.worker.transport import Transport

#: How much of the version document is read.
_MAX_VERSION_BYTES = 64 * 1024


def check_bulk(opts: Options, token_from: str | None) -> tuple[Finding, str | None, float]:
    """Ask ``GET /`` who answers, then send one event through ``_bulk``.

    Returns the finding, the server's ``Date`` header and when the test
    request was made (for the clock step).
    """
    server = describe_server(opts)
    index = opts.index or DEFAULT_INDEX
    sent = send_sample(opts, BulkEncoder(index, True), ELASTICSEARCH)
    auth = credentials(token_from, opts.headers)
    what = f"1 event into {index!r}, gzip, {sent.size} bytes, {auth}"
    answer = sent.answer
    if answer.status is None or not 200 <= answer.status < 300:
        finding, date, midpoint = http_finding(sent, what, opts, token_from)
        return _said_first(server, finding), date, midpoint
    outcome = BulkReader().read(answer, 1)
    if outcome.verdict is Verdict.DELIVERED:
        detail = f"{sent.status}: the test event was indexed ({what}; _id {sent.event['uuid']})"
        finding = Finding("PASS", detail)
    else:
        finding = item_finding(outcome.status(), outcome.verdict, outcome.reason, index, token_from)
        finding = finding._replace(detail=f"{finding.detail} ({what})")
    return _said_first(server, finding), sent.date, sent.midpoint


def item_finding(
    status: int, verdict: Verdict, reason: str, index: str, token_from: str | None
) -> Finding:
    """What a bulk answer of 2xx that refused the test event's item means, and the fix."""
    said = f"the test event's item was refused: {reason[:300]}"
    if status == 403:
        fix = (
            f"the API key may not write to {index!r}: give it the index privilege create_doc "
            "there (and auto_configure, for the first write to create the data stream)"
        )
        return Finding("FAIL", said, fix)
    if status == 404:
        fix = (
            f"{index!r} does not exist and is not created on write: create it, or an index "
            "template that makes it a data stream (logs-*-* has one built in)"
        )
        return Finding("FAIL", said, fix)
    if status == 401:
        return Finding("FAIL", said, refused_fix(401, token_from, False))
    if status == 429:
        fix = "the cluster is rejecting writes under load; logship retries with back-off"
        return Finding("WARN", said, fix)
    if verdict is Verdict.REJECT:
        fix = (
            "the server refused the document itself: a mapping of the index that conflicts "
            "with an event field, or an ingest pipeline failing; the handler would reject "
            "such events to a dead-letter file"
        )
        return Finding("FAIL", said, fix)
    if status >= 500:
        return Finding("FAIL", said, "the cluster is failing: check its health and logs")
    return Finding("FAIL", reason[:300], "check that the URL is Elasticsearch's or OpenSearch's")


def _said_first(server: str, finding: Finding) -> Finding:
    return finding._replace(detail=f"{server}; {finding.detail}")


def root_url(bulk_url: str) -> str:
    """The version document's URL: the ``_bulk`` URL without ``_bulk`` (a proxy's prefix kept)."""
    parts = urllib.parse.urlsplit(bulk_url)
    path = parts.path
    path = path[: -len("_bulk")] if path.endswith("/_bulk") else "/"
    return urllib.parse.urlunsplit(parts._replace(path=path, query="", fragment=""))


def describe_server(opts: Options) -> str:
    """Who answers ``GET /``, in words (``Elasticsearch 8.15.0``), or why it is not known."""
    token = opts.token or (read_token_file(opts.token_file) if opts.token_file else None)
    transport = Transport(opts, Warner(3600.0), ELASTICSEARCH)
    headers = dict(transport.headers)
    if token:
        headers["Authorization"] = f"{ELASTICSEARCH.auth} {token}"
    try:
        resp = transport.session.get(
            root_url(transport.url),
            headers=headers,
            timeout=opts.timeout,
            allow_redirects=False,
            stream=True,
        )
        raw = resp.raw.read(_MAX_VERSION_BYTES, decode_content=True) or b""
        resp.close()
    except Exception as e:  # the bulk request says what is wrong with the connection
        return f"GET / got no answer ({transport.scrub(type(e).__name__)})"
    finally:
        transport.close()
    if resp.status_code == 403:
        return (
            "GET / answered 403: this key may not read the version (that takes the cluster "
            "privilege monitor, which shipping does not need)"
        )
    if resp.status_code != 200:
        return f"GET / answered {resp.status_code}"
    return "GET / says: " + server_words(raw, resp.headers.get("X-elastic-product"))


def server_words(raw: bytes, product: str | None = None) -> str:
    """A version document (``{"version": {"number": …}, "tagline": …}``) in a few words."""
    try:
        doc: Any = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested past what the parser follows
        doc = None
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, dict) or not version.get("number"):
        return "no version document: is this Elasticsearch or OpenSearch?"
    number, tagline = str(version["number"]), str(doc.get("tagline") or "")
    flavor = str(version.get("build_flavor") or "")
    if version.get("distribution") == "opensearch":
        return f"OpenSearch {number}"
    if product == "Elasticsearch" or tagline == "You Know, for Search":
        return f"Elasticsearch {number}" + (f" ({flavor})" if flavor not in ("", "default") else "")
    named = f" ({flavor})" if flavor else ""
    return f"version {number}{named}" + (f", {tagline!r}" if tagline else "")
