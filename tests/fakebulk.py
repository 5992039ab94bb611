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
time, a 400 ``mapper_parsing_exception``), ``then`` queues whole answers
(any status and body) for the next requests, ``max_body`` answers 413 to
bodies larger than it, and ``lose_answers`` indexes a request and hangs up
without answering.
"""

from __future__ import annotations

import gzip
import http.server
import json
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: ``fate(document, attempt)``: None to index it, or the item's ``(status, error)``.
Fate = Callable[[dict[str, Any], int], "tuple[int, dict[str, Any]] | None"]

VERSION = {
    "name": "node-1",
    "cluster_name": "logs",
    "version": {"number": "8.15.0", "build_flavor": "default", "lucene_version": "9.11.1"},
    "tagline": "You Know, for Search",
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


REJECTED_EXECUTION = {
    "type": "es_rejected_execution_exception",
    "reason": "rejected execution of coordinating operation [coordinating_and_primary_bytes=0]",
}


@dataclass
class BulkRequest:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    ids: list[str]
    status: int | None  # what it answered; None: it hung up
    items: list[dict[str, Any]]


class FakeBulk:
    """A scriptable ``_bulk`` endpoint. Use as a context manager or call start/stop."""

    def __init__(self, fate: Fate | None = None) -> None:
        self.fate = fate
        self.indexed: dict[str, dict[str, Any]] = {}  # by _id, in the order they were created
        self.attempts: Counter[str] = Counter()
        self.requests: list[BulkRequest] = []
        self.script: deque[tuple[int, bytes]] = deque()
        self.max_body: int | None = None
        self.lose_answers = 0  # requests to index, then hang up on
        self.version: tuple[int, bytes] = (200, json.dumps(VERSION).encode())
        self.cond = threading.Condition()
        self.port = 0
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeBulk:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._answer(self, *fake.version)

            def do_POST(self) -> None:
                fake._bulk(self)

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> FakeBulk:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def then(self, status: int, body: bytes = b"") -> FakeBulk:
        """Answer the next request with ``status`` and ``body``, whatever it holds."""
        with self.cond:
            self.script.append((status, body))
        return self

    def wait_for(self, predicate: Callable[[FakeBulk], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(min(remaining, 0.05))
            return True

    def snapshot(self) -> list[BulkRequest]:
        with self.cond:
            return list(self.requests)

    # -- serving -------------------------------------------------------------

    def _bulk(self, h: http.server.BaseHTTPRequestHandler) -> None:
        wire = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        headers = dict(h.headers.items())
        with self.cond:
            scripted = self.script.popleft() if self.script else None
        if scripted is None and self.max_body is not None and len(wire) > self.max_body:
            scripted = (413, b"")
        if scripted is not None:
            self._record(BulkRequest(h.path, headers, [], scripted[0], []))
            self._answer(h, *scripted)
            return
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
        errors = any("error" in next(iter(i.values())) for i in items)
        self._record(BulkRequest(h.path, headers, ids, None if lose else 200, items))
        if lose:
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
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

    def _record(self, request: BulkRequest) -> None:
        with self.cond:
            self.requests.append(request)
            self.cond.notify_all()

    @staticmethod
    def _answer(h: http.server.BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
