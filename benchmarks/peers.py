"""The handlers logship is compared with, each built at its defaults for ``peer_receivers.py``.

Each builder takes the receiver's URL and returns the handler and what closes it as its
documentation says, delivering what it holds. Only what the peer cannot do without is set:
where to send (and the standard library's ``method="POST"``, fluent-logger's structured
``FluentRecordFormatter``, python-logstash-async's HTTP transport and in-memory cache,
``database_path=None``: its SQLite cache commits once per event). A peer's package is
imported by its builder only: one not installed costs nothing but its own cases.
"""

from __future__ import annotations

import functools
import logging
import urllib.parse
import warnings
from collections.abc import Callable
from dataclasses import dataclass

Closer = Callable[[], None]


@dataclass(frozen=True)
class Peer:
    """A handler to compare with: its ``--handler`` name, its label, and how to build it."""

    kind: str
    label: str
    build: Callable[[str], tuple[logging.Handler, Closer]]
    #: The longest the peer holds an event before sending it, by its defaults: how
    #: long to see nothing arrive before taking what did as all there is.
    holds_s: float
    #: Its packages in the ``[bench]`` extra (``install.py`` may fail to install one);
    #: when its builder cannot import them, its cases are skipped.
    packages: tuple[str, ...] = ()


def stdlib(url: str) -> tuple[logging.Handler, Closer]:
    """``QueueHandler`` + ``QueueListener`` around ``HTTPHandler``, stopped at exit."""
    import atexit
    import queue
    from logging.handlers import HTTPHandler, QueueHandler, QueueListener

    parts = urllib.parse.urlsplit(url)
    records: queue.Queue[logging.LogRecord] = queue.Queue(-1)
    listener = QueueListener(records, HTTPHandler(parts.netloc, parts.path, method="POST"))
    listener.start()
    stop = functools.cache(listener.stop)  # called twice: by the case, then at exit
    atexit.register(stop)
    return QueueHandler(records), stop


def logstash(url: str) -> tuple[logging.Handler, Closer]:
    """python-logstash-async's ``AsynchronousLogstashHandler`` with its HTTP transport."""
    from logstash_async.handler import AsynchronousLogstashHandler

    parts = urllib.parse.urlsplit(url)
    handler = AsynchronousLogstashHandler(
        parts.hostname,
        parts.port,
        database_path=None,
        transport="logstash_async.transport.HttpTransport",
        path=parts.path.lstrip("/"),
    )
    return handler, handler.close


def fluent(url: str) -> tuple[logging.Handler, Closer]:
    """fluent-logger's ``asynchandler.FluentHandler`` to the receiver's forward port."""
    from _common import receiver_stats
    from fluent import asynchandler
    from fluent.handler import FluentRecordFormatter

    port = receiver_stats(url)["forward_port"]
    handler = asynchandler.FluentHandler(
        "bench", host=urllib.parse.urlsplit(url).hostname, port=port
    )
    handler.setFormatter(FluentRecordFormatter())
    return handler, handler.close


def otel(url: str) -> tuple[logging.Handler, Closer]:
    """opentelemetry-sdk's ``LoggingHandler`` → ``BatchLogRecordProcessor`` → OTLP/HTTP exporter."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    parts = urllib.parse.urlsplit(url)
    exporter = OTLPLogExporter(endpoint=f"{parts.scheme}://{parts.netloc}/v1/logs")
    provider = LoggerProvider()  # shuts itself down (delivering) at exit
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    with warnings.catch_warnings():  # "use opentelemetry-instrumentation-logging's instead"
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=provider)
    return handler, functools.cache(provider.shutdown)  # safe to call twice


def logzio(url: str) -> tuple[logging.Handler, Closer]:
    """logzio-python-handler's ``LogzioHandler`` pointed at the receiver instead of Logz.io."""
    from logzio.handler import LogzioHandler

    parts = urllib.parse.urlsplit(url)
    handler = LogzioHandler("bench-token", url=f"{parts.scheme}://{parts.netloc}")

    def close() -> None:
        handler.flush()
        handler.close()

    return handler, close


_OTEL = ("opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http")
# holds_s: logstash-async's QUEUED_EVENTS_FLUSH_INTERVAL, the OpenTelemetry
# BatchLogRecordProcessor's schedule delay, logzio's logs_drain_timeout.
PEERS = (
    Peer("stdlib", "stdlib QueueHandler → HTTPHandler", stdlib, 0),
    Peer("logstash", "python-logstash-async (HTTP)", logstash, 10, ("python-logstash-async",)),
    Peer("fluent", "fluent-logger asynchandler", fluent, 0, ("fluent-logger",)),
    Peer("otel", "OpenTelemetry SDK (OTLP/HTTP)", otel, 1, _OTEL),
    Peer("logzio", "logzio-python-handler", logzio, 3, ("logzio-python-handler",)),
)
PEER_KINDS = tuple(p.kind for p in PEERS)
BY_KIND = {p.kind: p for p in PEERS}
