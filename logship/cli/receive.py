"""``logship receive``: a local HTTP receiver for development, demos, tests and benchmarks.

It takes every encoding logship sends (JSON, NDJSON, msgpack, gzipped or
not) on any path, answers like Fluent Bit's ``http`` input (``201``, empty
body), counts events and duplicates (by ``uuid``, among the last
``dedupe_window`` of them), and can print events or append them to an NDJSON
file. ``GET /_logship/stats`` returns the counts, so a process that did not
start the receiver can follow its progress. It is not meant for production
ingestion: see the limits in :class:`~logship.cli.httpd.Limits`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import IO, Any, TextIO

from logship.cli.argtypes import seconds, whole_number
from logship.cli.bodies import MAX_DECODED_BYTES, BadRequest
from logship.cli.httpd import STATS_PATH, Limits, Server
from logship.cli.show import DUPLICATE, as_text, echo_line, ndjson_line, refusal_line
from logship.pure.options import check_header_value, read_token_file
from logship.worker.spill.safefiles import UnsafeFile, open_file

DEFAULT_PORT = 9880
COUNT_NAMES = ("events", "unique", "duplicates", "requests", "bad_requests", "bytes")
#: Where the command line finds the token when neither --token nor --token-file is given.
TOKEN_VARIABLE = "LOGSHIP_RECEIVE_TOKEN"

# stop() never waits longer than this for the server's threads.
_JOIN_TIMEOUT = 5.0
# How often serve_forever checks for shutdown: the bound on how long stop() waits for it.
_POLL_INTERVAL = 0.05
# A uuid longer than this is remembered as a 16-byte digest (a UUID is 36 characters).
_LONGEST_KEPT_KEY = 64
_MiB = 1024 * 1024


class RecentKeys:
    """The last ``size`` distinct keys seen: duplicate detection in bounded memory.

    A key older than that is forgotten, and counts as new if it comes back.
    Long keys are kept as a digest, so that the window's memory does not
    depend on what senders put in their ``uuid``.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._order: deque[Hashable] = deque()
        self._keys: set[Hashable] = set()

    def seen(self, value: Any) -> bool:
        """Whether ``value`` is among the last ``size`` keys; if it is not, remember it."""
        key = _dedupe_key(value)
        if key in self._keys:
            return True
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self.size:
            self._keys.discard(self._order.popleft())
        return False


def _dedupe_key(value: Any) -> Hashable:
    """A string uuid as itself (or a bytes digest if long); anything else tagged as a repr."""
    text = as_text(value)  # unhashable or odd values still dedupe
    key: Hashable = text
    if len(text) > _LONGEST_KEPT_KEY:
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return key if isinstance(value, str) else ("repr", key)  # 7 and "7" are different uuids


class Receiver:
    """An HTTP receiver serving on a background thread; see the module docstring.

    ``echo`` gets one line per event, ``refusals`` one line per refused
    request (its status, what it was and why; never a header's value).
    ``keep_events=False`` stops :meth:`events` and :meth:`idempotency_keys`
    from holding every request in memory (the command line uses it);
    counting and duplicate detection still work. ``read_timeout``,
    ``max_connections``, ``max_decoded_bytes`` and ``dedupe_window`` bound
    what senders can make it hold (see :class:`~logship.cli.httpd.Limits`);
    a value that is not a positive number raises ``ValueError`` naming it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        output: str | None = None,
        echo: TextIO | None = None,
        refusals: TextIO | None = None,
        keep_events: bool = True,
        read_timeout: float = Limits.read_timeout,
        max_connections: int = Limits.max_connections,
        max_decoded_bytes: int = MAX_DECODED_BYTES,
        dedupe_window: int = Limits.dedupe_window,
    ) -> None:
        self.limits = Limits(
            read_timeout=read_timeout,
            max_connections=max_connections,
            max_decoded_bytes=max_decoded_bytes,
            dedupe_window=dedupe_window,
        )
        self.host = host
        self.port = port
        self.token = token
        self.output = output
        self.echo = echo
        self.refusals = refusals
        self.keep_events = keep_events
        self._cond = threading.Condition()
        self._counts = dict.fromkeys(COUNT_NAMES, 0)
        self._events: list[dict[str, Any]] = []
        self._keys: list[str] = []
        self._recent = RecentKeys(self.limits.dedupe_window)
        self._out: IO[str] | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # -- life ----------------------------------------------------------------

    def start(self) -> Receiver:
        """Bind and serve on a daemon thread; return self. ``OSError`` if the port is taken."""
        if self._server is not None:
            raise RuntimeError("logship receive: already started")
        if self.output:
            self._out = _open_output(self.output)
        try:
            server = Server(self.host, self.port, self, self.limits)
        except BaseException:
            self._close_output()
            raise
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name="logship-receive",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and the output file. Idempotent, bounded."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None:
            return
        deadline = time.monotonic() + _JOIN_TIMEOUT
        if thread is not None and thread.is_alive():
            server.shutdown()  # returns within _POLL_INTERVAL
        handlers = server.close_connections()
        server.server_close()
        for t in [thread, *handlers]:
            if t is not None:
                t.join(max(0.0, deadline - time.monotonic()))
        self._close_output()

    def _close_output(self) -> None:
        with self._cond:
            out, self._out = self._out, None
        if out is not None:
            out.close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running receiver (the real port when ``port=0``)."""
        if self._server is None:
            raise RuntimeError("logship receive: not started")
        host, port = self._server.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def endpoint(self, path: str = "/app") -> str:
        """The URL of ``path`` on this receiver, e.g. for ``ShipHandler(url=...)``."""
        return self.url + path

    # -- what arrived ----------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """``events``, ``unique``, ``duplicates``, ``requests``, ``bad_requests``, ``bytes``.

        ``requests`` counts accepted requests, ``bad_requests`` refused ones
        (any answer but 201 to a POST, and connections refused while
        ``max_connections`` were open); ``bytes`` is the accepted bodies'
        size on the wire. ``unique`` and ``duplicates`` are by ``uuid``,
        among the last ``dedupe_window`` distinct ones: an event with no
        ``uuid`` is unique.
        """
        with self._cond:
            return dict(self._counts)

    def events(self) -> list[dict[str, Any]]:
        """Every event received, in arrival order (a new list; the events are shared).

        Empty with ``keep_events=False``.
        """
        with self._cond:
            return list(self._events)

    def idempotency_keys(self) -> list[str]:
        """The ``Idempotency-Key`` of each accepted request, in order (``""`` when absent).

        Empty with ``keep_events=False``.
        """
        with self._cond:
            return list(self._keys)

    def wait_for(self, unique: int, timeout: float) -> bool:
        """Wait until at least ``unique`` distinct events arrived; False at the timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._counts["unique"] >= unique, timeout)

    # -- called by the request handler ----------------------------------------

    def accept(self, events: list[dict[str, Any]], key: str, wire_bytes: int) -> None:
        """Store, write and echo the events of one accepted request.

        ``BadRequest`` when ``output`` cannot take an event (nested too
        deeply); ``OSError`` when it cannot be written.
        """
        # Formatting outside the lock keeps other requests' time under it short.
        try:
            stored = "".join(map(ndjson_line, events)) if self._out is not None else ""
        except ValueError as e:
            raise BadRequest(f"{e}: the output file cannot take it") from None
        shown = [echo_line(e) for e in events] if self.echo is not None else []
        with self._cond:
            if self._out is not None:
                # Written before counting: once the counts show an event, the file has it.
                self._out.write(stored)
                self._out.flush()
            seen = [e.get("uuid") is not None and self._recent.seen(e["uuid"]) for e in events]
            if self.echo is not None:
                lines = "".join(
                    f"{line}{DUPLICATE}\n" if dup else f"{line}\n"
                    for line, dup in zip(shown, seen, strict=True)
                )
                self.echo = _write(self.echo, lines)
            duplicates = sum(seen)
            c = self._counts
            c["events"] += len(events)
            c["unique"] += len(events) - duplicates
            c["duplicates"] += duplicates
            c["requests"] += 1
            c["bytes"] += wire_bytes
            if self.keep_events:
                self._events.extend(events)
                self._keys.append(key)
            self._cond.notify_all()

    def refuse(self, status: int = 400, reason: str = "", request: str = "") -> None:
        """Count one refused request; with ``refusals``, print one printable line saying why."""
        line = refusal_line(status, reason, request) + "\n" if self.refusals is not None else ""
        with self._cond:
            self._counts["bad_requests"] += 1
            if self.refusals is not None:
                self.refusals = _write(self.refusals, line)


def _write(stream: TextIO, text: str) -> TextIO | None:
    """Write and flush ``text``; None when the reader went away (a closed pipe)."""
    if not text:
        return stream
    try:
        stream.write(text)
        stream.flush()
    except UnicodeEncodeError:
        # A console that cannot show a character a sender chose (cp1252, Latin-1):
        # that character escaped, and the printing goes on.
        encoding = stream.encoding or "ascii"
        return _write(stream, text.encode(encoding, "backslashreplace").decode(encoding))
    except (OSError, ValueError):
        return None  # keep receiving; only the printing stops
    return stream


def _open_output(path: str) -> TextIO:
    """``path`` opened to append events: a regular file of its own, never a link or a FIFO.

    ``--output`` may name a file in a folder others can write (``/tmp``): a
    link planted there would have events appended to a file of the planter's
    choosing, a FIFO would stop the receiver before it listens.
    """
    try:
        fd = open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    except UnsafeFile as e:
        raise OSError(e.errno, e.strerror, path) from None
    os.set_blocking(fd, True)
    # A lone surrogate (valid in a JSON string) is written as its JSON escape.
    return open(fd, "a", encoding="utf-8", errors="backslashreplace")


# -- command line ---------------------------------------------------------------


_port = whole_number(0, 65535, "a port number (0-65535)")
_count = whole_number(1, None, "a positive whole number")
# From a hundredth of a second (0 would make the sockets non-blocking) to a day.
_read_timeout = seconds(0.01, 86400.0)
# The options that bound what senders can make the receiver hold (see Limits):
# flag, type, default, metavar, help.
_LIMIT_OPTIONS: list[tuple[str, Callable[[str], Any], float, str, str]] = [
    (
        "--max-decoded-mib",
        _count,
        MAX_DECODED_BYTES // _MiB,
        "N",
        "refuse (413) a body that decompresses to more than N MiB",
    ),
    (
        "--read-timeout",
        _read_timeout,
        Limits.read_timeout,
        "S",
        "close a connection that sends nothing for S seconds; a request cut short is answered 408",
    ),
    (
        "--max-connections",
        _count,
        Limits.max_connections,
        "N",
        "serve at most N connections at once (one thread each); more are answered 503 at once",
    ),
    (
        "--dedupe-window",
        _count,
        Limits.dedupe_window,
        "N",
        "count duplicates among the last N distinct uuids",
    ),
]


def add_parser(subparsers: Any) -> None:
    """Register ``logship receive`` on the main parser's subparsers."""
    p = subparsers.add_parser(
        "receive",
        help="run a local receiver that takes and shows logship's events",
        description="Receive logship events over HTTP (JSON, NDJSON, msgpack; gzip or not), "
        f"print them and count duplicates. GET {STATS_PATH} returns the counts. "
        "For development, demos and tests, not production ingestion. "
        f"The token can come from --token, --token-file or {TOKEN_VARIABLE}; "
        "--token shows in the process list (ps) to every user of the machine, "
        "the other two do not.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}, Fluent Bit's; 0 picks a free one)",
    )
    p.add_argument("--output", metavar="FILE", help="append every event to FILE as NDJSON")
    token = p.add_mutually_exclusive_group()
    token.add_argument(
        "--token",
        metavar="T",
        help="require 'Authorization: Bearer T'; visible in ps: prefer --token-file "
        f"or {TOKEN_VARIABLE}",
    )
    token.add_argument(
        "--token-file",
        metavar="F",
        help=f"require the bearer token stored in file F (default: {TOKEN_VARIABLE}, if set)",
    )
    p.add_argument("--quiet", action="store_true", help="do not print events")
    for flag, kind, default, metavar, text in _LIMIT_OPTIONS:
        p.add_argument(
            flag, type=kind, default=default, metavar=metavar, help=f"{text} (default {default:g})"
        )
    p.set_defaults(run=run)


def resolve_token(args: argparse.Namespace, environ: dict[str, str] | None = None) -> str | None:
    """The token from ``--token``, ``--token-file`` or ``LOGSHIP_RECEIVE_TOKEN``, in that order.

    ``ValueError`` naming the source (never the token) when it is empty,
    unreadable, or something no HTTP client can send.
    """
    env = os.environ if environ is None else environ
    token: str
    if args.token is not None:
        token, source = args.token, "--token"
    elif args.token_file is not None:
        source = f"--token-file {args.token_file}"
        try:
            token = read_token_file(args.token_file)
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or e
            raise ValueError(f"{source}: cannot read it: {why}") from None
    elif env.get(TOKEN_VARIABLE):
        token, source = env[TOKEN_VARIABLE], TOKEN_VARIABLE
    else:
        return None
    # Stripped as logship's handler strips its token: a secret file often ends in a newline.
    token = token.strip()
    if not token:
        raise ValueError(f"{source}: the token is empty")
    check_header_value(token, f"{source}: the token", tab=False)
    return token


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, then print the counts; return the exit status."""
    try:
        token = resolve_token(args)
    except ValueError as e:
        print(f"logship receive: error: {e}", file=sys.stderr)
        return 2
    receiver = Receiver(
        args.host,
        args.port,
        token=token,
        output=args.output,
        echo=None if args.quiet else sys.stdout,
        refusals=sys.stderr,
        keep_events=False,  # a long run must not hold every event in memory
        read_timeout=args.read_timeout,
        max_connections=args.max_connections,
        max_decoded_bytes=args.max_decoded_mib * _MiB,
        dedupe_window=args.dedupe_window,
    )
    stop = threading.Event()
    restore = _on_signals(stop)
    try:
        try:
            receiver.start()
        except OSError as e:
            if args.output and e.filename == args.output:
                what = f"cannot open {args.output}"
            else:
                what = f"cannot listen on {args.host}:{args.port}"
            print(f"logship receive: {what}: {e.strerror or e}", file=sys.stderr)
            return 1
        print(f"logship receive: listening on {receiver.url}", flush=True)
        # A bounded wait, because on Windows an unbounded one cannot be interrupted.
        while not stop.wait(1.0):
            pass
    finally:
        receiver.stop()
        restore()
    print(summary_line(receiver.counts(), receiver.limits.dedupe_window), flush=True)
    return 0


def summary_line(c: dict[str, int], dedupe_window: int) -> str:
    """What the command prints when it stops: the counts, and what duplicates are among."""
    return (
        f"received {c['events']} events ({c['unique']} unique, {c['duplicates']} duplicates "
        f"among the last {dedupe_window} uuids) in {c['requests']} requests, "
        f"{c['bad_requests']} refused"
    )


def _on_signals(stop: threading.Event) -> Callable[[], None]:
    """Make SIGINT and SIGTERM set ``stop``; return a function that undoes it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signal handlers can only be set from the main thread
    signals = [signal.SIGINT, signal.SIGTERM]
    previous = {sig: signal.signal(sig, lambda _sig, _frame: stop.set()) for sig in signals}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
