"""The comparison's receiver: every peer's wire format, one count, and an outage switch.

``logship receive``'s HTTP server, also taking the standard library's form
posts, logzio's ``text/plain`` NDJSON and OTLP/HTTP (protobuf, and the JSON
of logship's ``protocol="otlp"``), answering ``200`` with an empty body
(logstash-async and logzio take nothing else as success), and a second port
speaking Fluentd's forward protocol. Every event is counted once, by its
``uuid`` (logship's), else its ``request_id`` (the benchmarks' ``extra=``),
else its message. ``GET /_logship/stats`` adds ``forward_port``; ``POST
/_bench/outage?seconds=S`` answers every POST ``503`` for S seconds and
closes the forward port, shutting its connections: a Fluentd restarting.

    python benchmarks/peer_receivers.py [--port 0]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import threading
import time
import urllib.parse
from typing import Any

import msgpack

from logship.cli.bodies import BadRequest, decode, decompress, gunzip
from logship.cli.httpd import STATS_PATH, Handler, Server
from logship.cli.receive import Receiver
from logship.pure.protocols.otlp import export_requests

OUTAGE_PATH = "/_bench/outage"


def keyed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events, each with what makes it unique as ``uuid``: what ``Receiver`` dedupes on."""
    for event in events:
        sources = [s for s in (event, event.get("extra")) if isinstance(s, dict)]
        found = [s[n] for s in sources for n in ("uuid", "request_id") if s.get(n) is not None]
        event["uuid"] = str(found[0] if found else event.get("message", event.get("msg", "")))
    return events


def otlp_events(body: bytes) -> list[dict[str, Any]]:
    """One ``{"message", "request_id"}`` per log record of an ``ExportLogsServiceRequest``."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    try:
        request = ExportLogsServiceRequest.FromString(body)
    except DecodeError as e:
        raise BadRequest(f"malformed ExportLogsServiceRequest: {e}") from None
    events = []
    for resource in request.resource_logs:
        for scope in resource.scope_logs:
            for record in scope.log_records:
                event: dict[str, Any] = {"message": record.body.string_value}
                for attribute in record.attributes:
                    if attribute.key == "request_id":
                        event["request_id"] = attribute.value.int_value
                events.append(event)
    return events


def otlp_json_events(raw: bytes) -> list[dict[str, Any]]:
    """One ``{"message", "uuid", "request_id"}`` per log record of an OTLP JSON request."""
    events = []
    for _resource, _scope, record in export_requests(raw):
        attributes = {a["key"]: a["value"] for a in record.get("attributes", [])}
        event: dict[str, Any] = {
            "message": record.get("body", {}).get("stringValue", ""),
            "uuid": attributes.get("log.record.uid", {}).get("stringValue"),
        }
        if "request_id" in attributes:
            event["request_id"] = int(attributes["request_id"]["intValue"])
        events.append(event)
    return events


def http_events(body: bytes, content_type: str | None, encoding: str | None) -> list[Any]:
    """The events of one POST body, whichever peer sent it."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        return [{k: v[0] for k, v in form.items()}]
    if kind == "application/x-protobuf":
        return otlp_events(body)
    if kind == "text/plain":
        return decode(body, "application/x-ndjson", encoding)
    if kind == "application/json":
        raw = decompress(body, encoding)
        if raw[:64].lstrip().startswith(b'{"resourceLogs"'):
            try:
                return otlp_json_events(raw)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise BadRequest(f"malformed OTLP JSON: {e}") from None
        return decode(raw, content_type, None)
    return decode(body, content_type, encoding)


class PeerHandler(Handler):
    """``logship receive``'s handler, taking every peer's body and honouring the outage."""

    server: PeerServer

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != STATS_PATH:
            super().do_GET()
            return
        counts = {**self.server.sink.counts(), "forward_port": self.server.forward_port}
        self._reply(200, json.dumps(counts).encode("ascii"), ctype="application/json")

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        sink = self.server.sink
        try:
            body = self._read_body()
            if path == OUTAGE_PATH:
                seconds = float(urllib.parse.parse_qs(query).get("seconds", ["5"])[0])
                self.server.outage_until = time.monotonic() + seconds
            elif self.server.outage_left():
                self._reply(503, b"outage\n")
                return
            else:
                events = http_events(
                    body, self.headers["Content-Type"], self.headers["Content-Encoding"]
                )
                sink.accept(keyed(events), self.headers.get("Idempotency-Key", ""), len(body))
        except BadRequest as e:
            self.close_connection = True
            sink.refuse()
            self._reply(e.status, f"{e}\n".encode())
            return
        self._reply(200, b"")


class PeerServer(Server):
    """``logship receive``'s server, with :class:`PeerHandler`, an outage and a forward port."""

    def __init__(self, host: str, port: int, sink: Receiver) -> None:
        super().__init__(host, port, sink)
        self.RequestHandlerClass = PeerHandler
        self.outage_until = 0.0
        self.forward_port = 0

    def outage_left(self) -> float:
        return max(0.0, self.outage_until - time.monotonic())


def forward_records(message: Any) -> tuple[list[Any], dict[str, Any]]:
    """The records and the option of one forward-protocol message.

    Message mode is ``[tag, time, record, option?]``, Forward mode ``[tag,
    [[time, record], ...], option?]`` and PackedForward mode ``[tag, packed
    entries, option?]``, the entries gzipped when the option says so.
    """
    if not isinstance(message, (list, tuple)) or len(message) < 2:
        raise ValueError(f"not a forward-protocol message: {message!r:.80}")
    second = message[1]
    at = 2 if isinstance(second, (list, tuple, bytes, str)) else 3  # where the option is
    option = message[at] if len(message) > at and isinstance(message[at], dict) else {}
    if isinstance(second, (list, tuple)):
        return [entry[1] for entry in second], option
    if isinstance(second, (bytes, str)):
        packed = second.encode("latin-1") if isinstance(second, str) else second
        if option.get("compressed") == "gzip":
            packed = gunzip(packed)
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        unpacker.feed(packed)
        return [entry[1] for entry in unpacker], option
    return [message[2]], option


def serve_forward(http: PeerServer, host: str) -> None:
    """Fluentd's forward protocol into the HTTP side's sink, a thread per connection.

    During an outage the port is closed (connections are refused) and the
    connections it had are shut, dropping what they had not yet handed to the
    sink; it listens on the same port after.
    """
    conns: set[socket.socket] = set()

    def listen(port: int) -> socket.socket:
        sock = socket.create_server((host, port), backlog=128)
        sock.settimeout(0.05)
        return sock

    def serve(conn: socket.socket) -> None:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        try:
            while not http.outage_left() and (data := conn.recv(65536)):
                unpacker.feed(data)
                for message in unpacker:
                    if http.outage_left():
                        return  # the connection is being shut; what it carried is lost
                    records, option = forward_records(message)
                    http.sink.accept(keyed([r for r in records if isinstance(r, dict)]), "", 0)
                    if option.get("chunk") is not None:
                        conn.sendall(msgpack.packb({"ack": option["chunk"]}))
        except (ValueError, TypeError, IndexError, BadRequest):
            http.sink.refuse()
        except OSError:
            pass  # shut by the outage, or the client hung up
        finally:
            conns.discard(conn)
            conn.close()

    sock = listen(0)
    http.forward_port = sock.getsockname()[1]
    while True:
        if left := http.outage_left():
            sock.close()
            for conn in list(conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            time.sleep(left)
            sock = listen(http.forward_port)
        try:
            conn, _addr = sock.accept()
        except TimeoutError:
            continue
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.add(conn)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def main() -> None:
    """Serve HTTP and the forward protocol until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    http = PeerServer(args.host, args.port, Receiver(keep_events=False))
    threading.Thread(target=http.serve_forever, args=(0.05,), daemon=True).start()
    threading.Thread(target=serve_forward, args=(http, args.host), daemon=True).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: stop.set())
    while not http.forward_port:
        time.sleep(0.01)
    host, port = http.server_address[:2]
    # logship receive's first line, so that _common.receiver starts either alike.
    print(f"logship receive: listening on http://{host}:{port}", flush=True)
    while not stop.wait(1.0):
        pass
    http.shutdown()
    http.server_close()
    http.close_connections()


if __name__ == "__main__":
    main()
