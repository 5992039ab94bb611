"""Bytes per event and the gzip ratio of logship's request bodies, for sizing a fleet.

Ships ``--events`` events of each workload through a ShipHandler at its
defaults (JSON arrays, gzip, batches of up to 1,000) to a receiver in this
process that keeps, for every request, the bytes on the wire and the bytes
once gunzipped; prints both per event, and their ratio, for each workload:

- ``bench``: the benchmarks' call, ``"user %s did %s"`` with a ``request_id``;
- ``web``: what a web app's request leaves, two events (the app's line with a
  request id and path, and an access-log line), with ``service`` and ``env``
  fields;
- ``web+errors``: the same, with a traceback on one request in 100.

The events are real ones: built by logship's own code on this host (its
hostname, pid, kernel version), each with its time-ordered uuid.

    .venv/bin/python benchmarks/tools/event_size.py [--events 20000]
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import json
import logging
import threading
from collections.abc import Callable

import logship


class Bodies(http.server.ThreadingHTTPServer):
    """A receiver that keeps each body's size on the wire and gunzipped, and its event count."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.sizes: list[tuple[int, int, int]] = []  # (wire, gunzipped, events)
        self.lock = threading.Lock()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/size"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Bodies

    def do_POST(self) -> None:
        wire = self.rfile.read(int(self.headers["Content-Length"]))
        raw = gzip.decompress(wire) if self.headers.get("Content-Encoding") == "gzip" else wire
        with self.server.lock:
            self.server.sizes.append((len(wire), len(raw), len(json.loads(raw))))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def bench(log: logging.Logger, i: int) -> None:
    log.info("user %s did %s", i, "thing", extra={"request_id": i})


def web(log: logging.Logger, i: int, errors: bool = False) -> None:
    rid = f"{i:016x}"
    if errors and i % 100 == 0:
        try:
            raise RuntimeError("the payment service is down")
        except RuntimeError:
            log.exception("Error handling request GET /checkout", extra={"request_id": rid})
    else:
        log.info("handled %s", "/hello", extra={"request_id": rid, "path": "/hello"})
    access = '127.0.0.1 - - [07/Dec/2026:10:00:00 +0000] "GET /hello HTTP/1.1" 200 42 "-" "curl/8"'
    logging.getLogger("gunicorn.access").info(access)


WORKLOADS: dict[str, tuple[Callable[[logging.Logger, int], None], dict[str, str]]] = {
    "bench": (bench, {}),
    "web": (web, {"service": "billing", "env": "prod"}),
    "web+errors": (lambda log, i: web(log, i, errors=True), {"service": "billing", "env": "prod"}),
}


def measure(name: str, events: int) -> dict[str, float]:
    """Ship ``events`` calls of workload ``name``; bytes per event on the wire and raw."""
    call, fields = WORKLOADS[name]
    server = Bodies()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # overflow="block": every call is measured, none dropped while the receiver decodes.
    handler = logship.ShipHandler(
        url=server.url(), fields=fields, spill=False, overflow="block", flush_interval=0.2
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        log = logging.getLogger("app")
        for i in range(events):
            call(log, i)
        if not handler.flush(60):
            raise SystemExit(f"{name}: not delivered within 60 s: {handler.stats()}")
    finally:
        root.removeHandler(handler)
        handler.close()
        server.shutdown()
        server.server_close()
    wire, raw, n = (sum(column) for column in zip(*server.sizes, strict=True))
    return {"events": n, "raw_per_event": raw / n, "wire_per_event": wire / n, "ratio": raw / wire}


def main() -> None:
    """Measure every workload and print a table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="calls per workload")
    args = parser.parse_args()
    print(f"{'workload':<12} {'events':>8} {'B/event raw':>12} {'B/event gzip':>13} {'ratio':>6}")
    for name in WORKLOADS:
        m = measure(name, args.events)
        print(
            f"{name:<12} {m['events']:>8,.0f} {m['raw_per_event']:>12.0f} "
            f"{m['wire_per_event']:>13.1f} {m['ratio']:>6.1f}"
        )


if __name__ == "__main__":
    main()
