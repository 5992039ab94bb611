"""A small Elasticsearch ``_bulk`` endpoint on 127.0.0.1, written from the bulk API's documentation.

What it does as Elasticsearch does: it reads NDJSON (gzip or not) that must
end with a newline, takes ``create`` actions with their ``_id``, answers a
``create`` of an ``_id`` it already holds with 409
(``version_conflict_engine_exception``), and answers HTTP 200 with
``{"took", "errors", "items"}``, one item per action in the request's order,
keyed by the action, with ``status`` and, for a failure, ``error`` with
``type`` and ``reason``. ``GET /`` answers a version document.

What a healthy server does not show on demand is scripted: ``fate(doc,
attempt)`` may answer an item with any status and error (a 429 the first
time, a 400 ``mapper_parsing_exception``), and ``lose_answers`` indexes a
request, then hangs up without answering. The rest comes from
:class:`~faultserver.FaultServer`: ``then(status(…))`` answers the next
requests whatever they hold, ``max_body`` answers 413 to larger bodies.
"""

from __future__ import annotations

import gzip
import http.server
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faultserver import FaultServer

#: ``fate(document, attempt)``: None to index it, or the item's ``(status, error)``.
Fate = Callable[[dict[str, Any], int], "tuple[int, dict[str, Any]] | None"]

VERSION = {
    "name": "node-1",
    "cluster_name": "logs",
    "version": {"number": "8.15.0", "build_flavor": "default", "lucene_version": "9.11.1"},
    "tagline": "You Know, for Search",
}

REJECTED_EXECUTION = {
    "type": "es_rejected_execution_exception",
    "reason": "rejected execution of coordinating operation [coordinating_and_primary_bytes=0]",
}


def mapper_parsing(doc: dict[str, Any], field: str) -> dict[str, Any]:
    """The error for a document whose ``field`` does not fit a ``long`` mapping."""
    value = doc[field]
    return {
        "type": "mapper_parsing_exception",
        "reason": f"failed to parse field [{field}] of type [long] in document with id "
        f"'{doc['uuid']}'. Preview of field's value: '{value}'",
        "caused_by": {
            "type": "illegal_argument_exception",
            "reason": f'For input string: "{value}"',
        },
    }


@dataclass
class BulkRequest:
    """One bulk request as the server saw it."""

    path: str
    headers: dict[str, str]
    ids: list[str]
    status: int | None  # what it answered; None: it hung up
    items: list[dict[str, Any]]


class FakeBulk(FaultServer):
    """A scriptable ``_bulk`` endpoint. Use as a context manager or call start/stop."""

    def __init__(self, fate: Fate | None = None) -> None:
        super().__init__()
        self.fate = fate
        self.indexed: dict[str, dict[str, Any]] = {}  # by _id, in the order they were created
        self.attempts: Counter[str] = Counter()
        self.bulk: list[BulkRequest] = []  # the requests answered as bulk requests
        self.lose_answers = 0  # requests to index, then hang up on
        self.version: tuple[int, bytes] = (200, json.dumps(VERSION).encode())

    def url(self, path: str = "") -> str:
        """The endpoint's URL; with no path, as a handler is given Elasticsearch's."""
        return super().url(path)

    def snapshot(self) -> list[BulkRequest]:
        with self.cond:
            return list(self.bulk)

    # -- serving -------------------------------------------------------------

    def _handle_get(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self._answer(h, *self.version)

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        with self.cond:
            scripted = bool(self.script)
        if scripted or (self.max_body is not None and length > self.max_body):
            super()._handle(h)  # a scripted answer, or 413
            return
        wire = h.rfile.read(length)
        headers = dict(h.headers.items())
        raw = gzip.decompress(wire) if headers.get("Content-Encoding") == "gzip" else wire
        if not raw.endswith(b"\n"):
            error = {
                "type": "illegal_argument_exception",
                "reason": "The bulk request must be terminated by a newline [\\n]",
            }
            self._answer(h, 400, json.dumps({"error": error, "status": 400}).encode())
            return
        lines = raw.splitlines()
        with self.cond:
            pairs = zip(lines[0::2], lines[1::2], strict=True)
            items = [self._create(json.loads(a), json.loads(d)) for a, d in pairs]
            ids = [next(iter(i.values()))["_id"] for i in items]
            lose = self.lose_answers > 0
            self.lose_answers -= lose
            self.bulk.append(BulkRequest(h.path, headers, ids, None if lose else 200, items))
            self.cond.notify_all()
        if lose:
            self.hang_up(h)
            return
        errors = any("error" in next(iter(i.values())) for i in items)
        self._answer(h, 200, json.dumps({"took": 2, "errors": errors, "items": items}).encode())

    def _create(self, action: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        """One ``create``: its item of the answer. Call with the lock held."""
        meta = action["create"]
        doc_id, index = meta["_id"], meta["_index"]
        self.attempts[doc_id] += 1
        item: dict[str, Any] = {"_index": index, "_id": doc_id}
        fated = self.fate(doc, self.attempts[doc_id]) if self.fate else None
        if fated is not None:
            status, error = fated
            item.update(status=status, error=error)
        elif doc_id in self.indexed:
            item.update(
                status=409,
                error={
                    "type": "version_conflict_engine_exception",
                    "reason": f"[{doc_id}]: version conflict, document already exists "
                    "(current version [1])",
                },
            )
        else:
            self.indexed[doc_id] = doc
            item.update(status=201, result="created", _version=1)
        return {"create": item}

    @staticmethod
    def _answer(h: http.server.BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
