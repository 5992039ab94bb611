"""The comparison's receiver: every peer's wire format, one count, and an outage switch.

``logship receive``'s HTTP server (``logship.cli.httpd``) with a request
handler that also takes the standard library's form posts, logzio's
``text/plain`` NDJSON and OTLP/HTTP (protobuf, and the JSON encoding of
logship's ``protocol="otlp"``), and a second port speaking Fluentd's forward
protocol (Message, Forward and PackedForward modes, chunks acknowledged).
Every request is answered ``200`` with an empty body: logstash-async and
logzio take nothing else as success.

Every event is counted once, by its ``uuid`` (logship's), else its
``request_id`` (the benchmarks' ``extra=``), else its message. ``GET
/_logship/stats`` returns ``logship receive``'s counts plus
``forward_port``, ``outage_refused`` and ``outage_left_s``. ``POST
/_bench/outage?seconds=S`` answers every POST ``503`` for S seconds and
closes the forward port (which has no status to answer with), shutting its
connections: a Fluentd restarting.

    python benchmarks/peer_receivers.py [--port 0] [--outage-at-start 5]

It prints ``logship receive``'s first line, so that ``_harness.receiver``
starts either alike, and serves until SIGTERM or SIGINT.
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

OUTAGE_PATH = "/_bench/outage"
_FORM = "application/x-www-form-urlencoded"
_PROTOBUF = "application/x-protobuf"
_TEXT = "text/plain"
_JSON = "application/json"


class Outage:
    """A switch that is on for a given number of seconds, and counts what it refused."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()
        self.refused = 0

    def start(self, seconds: float) -> None:
        """Refuse everything for ``seconds`` from now."""
        with self._lock:
            self._until = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds of outage left (0 when there is none)."""
        return max(0.0, self._until - time.monotonic())

    def refuse(self) -> bool:
        """Whether the outage is on now; count one refusal when it is."""
        with self._lock:
            on = time.monotonic() < self._until
            self.refused += on
        return on


def event_key(event: dict[str, Any]) -> str:
    """What makes an event unique: its uuid, else its ``request_id``, else its message."""
    for source in (event, event.get("extra")):
        if isinstance(source, dict):
            for name in ("uuid", "request_id"):
                if source.get(name) is not None:
                    return str(source[name])
    return str(event.get("message", event.get("msg", "")))


def keyed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events, each with its :func:`event_key` as ``uuid``: what ``Receiver`` dedupes on."""
    for event in events:
        event["uuid"] = event_key(event)
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


def otlp_json_events(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One ``{"message", "uuid", "request_id"}`` per log record of an OTLP JSON request."""
    events = []
    for resource in doc.get("resourceLogs", []):
        for scope in resource.get("scopeLogs", []):
            for record in scope.get("logRecords", []):
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
    if kind == _FORM:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        return [{k: v[0] for k, v in form.items()}]
    if kind == _PROTOBUF:
        return otlp_events(body)
    if kind == _TEXT:
        return decode(body, "application/x-ndjson", encoding)
    if kind == _JSON:
        raw = decompress(body, encoding)
        if raw[:64].lstrip().startswith(b'{"resourceLogs"'):
            try:
                return otlp_json_events(json.loads(raw))
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
        counts: dict[str, Any] = self.server.sink.counts()
        counts |= {
            "forward_port": self.server.forward_port,
            "outage_refused": self.server.outage.refused,
            "outage_left_s": self.server.outage.left(),
        }
        self._reply(200, json.dumps(counts).encode("ascii"), ctype="application/json")

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        sink = self.server.sink
        try:
            body = self._read_body()
        except BadRequest as e:
            self.close_connection = True
            sink.refuse()
            self._reply(e.status, f"{e}\n".encode())
            return
        if path == OUTAGE_PATH:
            seconds = float(urllib.parse.parse_qs(query).get("seconds", ["5"])[0])
            self.server.outage.start(seconds)
            self._reply(200, b"")
            return
        if self.server.outage.refuse():
            self._reply(503, b"outage\n")
            return
        try:
            events = http_events(
                body, self.headers["Content-Type"], self.headers["Content-Encoding"]
            )
        except BadRequest as e:
            sink.refuse()
            self._reply(e.status, f"{e}\n".encode())
            return
        sink.accept(keyed(events), self.headers.get("Idempotency-Key", ""), len(body))
        self._reply(200, b"")


class PeerServer(Server):
    """``logship receive``'s server, with :class:`PeerHandler`, an outage and a forward port."""

    def __init__(self, host: str, port: int, sink: Receiver) -> None:
        super().__init__(host, port, sink)
        self.RequestHandlerClass = PeerHandler
        self.outage = Outage()
        self.forward_port = 0


def forward_message(message: Any) -> tuple[list[Any], dict[str, Any]]:
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


class ForwardListener:
    """A forward-protocol server sharing the HTTP side's sink and outage.

    During an outage its port is closed (connections are refused) and the
    connections it had are shut, dropping whatever they had not yet handed
    to the sink: a Fluentd restarting. It listens on the same port after.
    """

    def __init__(self, host: str, sink: Receiver, outage: Outage) -> None:
        self.host, self.sink, self.outage = host, sink, outage
        self._sock = self._listen(0)
        self.port: int = self._sock.getsockname()[1]
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def _listen(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        sock.listen(128)
        sock.settimeout(0.05)
        return sock

    def serve_forever(self) -> None:
        """Accept connections, one thread each; close the port while an outage lasts."""
        while True:
            left = self.outage.left()
            if left:
                self._sock.close()
                with self._lock:
                    conns, self._conns = set(self._conns), set()
                for conn in conns:
                    self.outage.refuse()
                    _shut(conn)
                time.sleep(left)
                self._sock = self._listen(self.port)
            try:
                conn, _addr = self._sock.accept()
            except TimeoutError:
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._read(conn)
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def _read(self, conn: socket.socket) -> None:
        """Count the entries of one connection's messages; acknowledge the chunks that ask."""
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            unpacker.feed(data)
            for message in unpacker:
                if self.outage.left():
                    return  # the connection is being shut; what it carried is lost
                try:
                    records, option = forward_message(message)
                except (ValueError, TypeError, IndexError, BadRequest):
                    self.sink.refuse()
                    return
                self.sink.accept(keyed([r for r in records if isinstance(r, dict)]), "", 0)
                if option.get("chunk") is not None:
                    conn.sendall(msgpack.packb({"ack": option["chunk"]}))


def _shut(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def main() -> None:
    """Serve HTTP and the forward protocol until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--outage-at-start", type=float, default=0.0, metavar="SECONDS")
    args = parser.parse_args()
    sink = Receiver(keep_events=False)
    http = PeerServer(args.host, args.port, sink)
    forward = ForwardListener(args.host, sink, http.outage)
    http.forward_port = forward.port
    if args.outage_at_start:
        http.outage.start(args.outage_at_start)
    threading.Thread(target=http.serve_forever, args=(0.05,), daemon=True).start()
    threading.Thread(target=forward.serve_forever, daemon=True).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: stop.set())
    host, port = http.server_address[:2]
    print(f"logship receive: listening on http://{host}:{port}", flush=True)
    while not stop.wait(1.0):
        pass
    http.shutdown()
    http.server_close()
    http.close_connections()


if __name__ == "__main__":
    main()
