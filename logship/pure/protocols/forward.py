"""``protocol="forward"``: Fluentd's forward protocol v1, as Fluent Bit and Fluentd take it. Pure.

A batch is one **CompressedPackedForward** message (**PackedForward** with
``compress=False``)::

    [tag, <msgpack stream of [time, record] entries, gzipped, as bin>,
     {"chunk": <the batch's key>, "size": <events>, "compressed": "gzip"}]

The encoder's body is the entries stream alone (gzipped when compressing):
that is what the spill keeps, and what ``batch_max_bytes`` counts. The stream
transport (``logship.worker.stream``) wraps it in the message with
:func:`message`, using the batch's key as the ``chunk`` id, so that a retry
and a replay carry the same id. Each entry's time is an **EventTime**
(msgpack extension type 0: seconds and nanoseconds, big-endian), taken from
the event's ``timestamp``; the record is the event itself.

The server answers ``{"ack": <chunk>}`` once the chunk is in its buffer. The
transport reports that ack (an :class:`~logship.pure.protocols.Answer` whose
``ack`` header names the message's chunk), or why none came (its ``kind``),
and :class:`AckReader` says what it means. Servers configured with a
``shared_key`` open each connection with a ``HELO``; :func:`ping` and
:func:`pong_problem` are the client's side of that handshake, with the
handler's token as the shared key.
"""

from __future__ import annotations

import calendar
import hashlib
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgpack

from logship.pure.encoding import Encoding, gzip_compress, gzip_decompress, stated_size
from logship.pure.event import EventBuilder, encode_items
from logship.pure.printable import printable
from logship.pure.protocols import Answer, Event, Outcome
from logship.pure.retry import Verdict

#: The tag of every record unless the ``tag`` option names another.
DEFAULT_TAG = "logship"

#: The largest message, and the largest entries stream once decompressed, that
#: Fluent Bit's forward input takes with its default ``buffer_max_size``
#: (6,144,000 bytes; larger ones close the connection without an ack). Fluentd
#: has no such limit unless ``chunk_size_limit`` is set. The ``batch_max_bytes``
#: this protocol allows (``pure.options``) keeps batches well under it; only one
#: event larger than it can pass, and that one is never sent (see :func:`size_problem`).
MAX_MESSAGE_BYTES = 6_144_000

#: The answer header in which the stream transport puts the ack of the message's chunk.
ACK = "ack"
#: Answer kinds this protocol adds to ``pure.diagnosis``'s.
NO_ACK = "no-ack"  # the connection held, or closed, but no ack came within ``timeout``
SHARED_KEY = "shared-key"  # the handshake refused the shared key (the token)
TOO_LARGE = "too-large"  # one event larger than any server takes: never sent
NOT_FORWARD = "not-forward"  # the server said something the forward protocol does not

# An entry: an array of two, then a fixext 8 of type 0 (EventTime), then its 8 bytes.
_ENTRY_HEAD = b"\x92\xd7\x00"
_EVENT_TIME = struct.Struct(">II")
# The last second in an EventTime's 32 bits (2106).
_LAST_SECOND = 0xFFFFFFFF
# A timestamp as logship writes it: 2026-11-24T10:00:00.123456Z
_STAMP_LENGTH = 27


class ForwardEncoder:
    """Events as PackedForward entries: ``[EventTime, event]``, one msgpack array each."""

    name = "forward"
    per_event_overhead = 0
    body_overhead = 0

    def __init__(self, compress: bool, builder: EventBuilder | None = None) -> None:
        self.compress = compress
        self._builder = builder
        self._record = Encoding("msgpack").encode_event
        # The second of the last timestamp read, by its date-and-time text: events
        # cluster within a second. One tuple, replaced whole: the sender thread
        # encodes too (a split), and reads it without a lock.
        self._second: tuple[str, int] = ("", 0)

    def units(self, items: Sequence[Any]) -> list[bytes]:
        """One entry per ring item."""
        return encode_items(self.unit, self._builder, items)

    def unit(self, event: Event) -> bytes:
        """One event's entry: its time as an EventTime, then the event as a msgpack map."""
        seconds, nanos = self.event_time(event.get("timestamp"))
        return _ENTRY_HEAD + _EVENT_TIME.pack(seconds, nanos) + self._record(event)

    def event_time(self, stamp: Any) -> tuple[int, int]:
        """Seconds and nanoseconds of an event's ``timestamp``; now, when it is unreadable."""
        if isinstance(stamp, str) and len(stamp) == _STAMP_LENGTH and stamp[19] == ".":
            head = stamp[:19]
            known, second = self._second
            try:
                if head != known:
                    second = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
                    self._second = (head, second)
                micros = int(stamp[20:26])
            except ValueError:
                pass
            else:
                if 0 <= second <= _LAST_SECOND and 0 <= micros < 1_000_000:
                    return second, micros * 1000
        seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
        return seconds, nanos

    def body(self, units: Sequence[bytes]) -> tuple[bytes, int]:
        """The entries one after another (a msgpack stream), gzipped when compressing."""
        raw = b"".join(units)
        return (gzip_compress(raw) if self.compress else raw), len(raw)

    def _entries(self, body: bytes) -> Iterator[tuple[Any, bytes]]:
        """Each entry of a body this encoder made, decoded and as its bytes."""
        raw = gzip_decompress(body) if self.compress else body
        unpacker = msgpack.Unpacker(
            raw=False, strict_map_key=False, max_buffer_size=max(len(raw), 1024)
        )
        unpacker.feed(raw)
        start = 0
        for entry in unpacker:
            end = unpacker.tell()
            yield entry, raw[start:end]
            start = end
        if start != len(raw):
            raise ValueError("a forward body that ends inside an entry")

    def units_of(self, body: bytes) -> list[bytes]:
        """The entries of a body this encoder made, byte for byte."""
        return [unit for _entry, unit in self._entries(body)]

    def events_of(self, body: bytes) -> list[Event]:
        """The events (the entries' records) of a body this encoder made."""
        events = []
        for entry, _unit in self._entries(body):
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
                raise ValueError(f"a forward entry that is no [time, record]: {entry!r:.80}")
            events.append(entry[1])
        return events

    def headers(self) -> dict[str, str]:
        """``Content-Encoding: gzip`` when compressing: the transport says so in the message."""
        return {"Content-Encoding": "gzip"} if self.compress else {}


def message(tag: str, body: bytes, chunk: str, count: int, compressed: bool) -> bytes:
    """The PackedForward message for an encoder's ``body``; its ack will name ``chunk``."""
    option: dict[str, Any] = {"chunk": chunk, "size": count}
    if compressed:
        option["compressed"] = "gzip"
    packed: bytes = msgpack.packb([tag, body, option], use_bin_type=True)
    return packed


def inflated_size(body: bytes, compressed: bool) -> int:
    """The size of ``body``'s entries once decompressed (as its gzip trailer states it)."""
    return stated_size(body) if compressed else len(body)


def size_problem(message_size: int, entries_size: int, count: int) -> str | None:
    """Why a message is too large for the servers, or None when it is not."""
    size = max(message_size, entries_size)
    if size <= MAX_MESSAGE_BYTES:
        return None
    which = "one event" if count == 1 else f"{count} events"
    return (
        f"{which} of {size} bytes (decompressed) would not fit the {MAX_MESSAGE_BYTES} bytes "
        "a forward message may have (Fluent Bit's default buffer_max_size)"
    )


# -- the shared_key handshake (HELO, PING, PONG) ---------------------------------------------


def text(value: Any) -> bytes | None:
    """A msgpack str or bin read with ``raw=True``, as bytes; None for anything else."""
    return value if isinstance(value, bytes) else None


def helo_nonce(msg: Any) -> bytes | None:
    """The nonce of a ``["HELO", {"nonce": …, "auth": …, "keepalive": …}]``, else None."""
    if not (isinstance(msg, (list, tuple)) and len(msg) == 2 and msg[0] == b"HELO"):
        return None
    options = msg[1]
    if not isinstance(options, dict):
        return None
    return text(options.get(b"nonce"))


def is_helo(msg: Any) -> bool:
    """Whether ``msg`` (read with ``raw=True``) is a server's HELO, well formed or not."""
    return isinstance(msg, (list, tuple)) and bool(msg) and msg[0] == b"HELO"


def digest(salt: bytes, hostname: bytes, nonce: bytes, key: bytes) -> bytes:
    """``hex(sha512(salt + hostname + nonce + shared_key))``, as both sides compute it."""
    return hashlib.sha512(salt + hostname + nonce + key).hexdigest().encode("ascii")


def ping(nonce: bytes, salt: bytes, hostname: bytes, key: bytes) -> bytes:
    """The client's ``PING``: its hostname, salt and digest, and no user (no ``user_auth``)."""
    fields = [b"PING", hostname, salt, digest(salt, hostname, nonce, key), b"", b""]
    # Every field a msgpack str, as the servers read them (bytes packed without bin).
    packed: bytes = msgpack.packb(fields, use_bin_type=False)
    return packed


def pong_problem(msg: Any, nonce: bytes, salt: bytes, key: bytes) -> tuple[str, str] | None:
    """What is wrong with the server's ``PONG`` as ``(kind, why)``; None when it accepts us.

    ``["PONG", authenticated, reason, server_hostname, digest]``: the digest
    proves that the server holds the same shared key.
    """
    if not (isinstance(msg, (list, tuple)) and len(msg) == 5 and msg[0] == b"PONG"):
        return NOT_FORWARD, f"the server answered the PING with {msg!r:.80}, not a PONG"
    _pong, accepted, reason, hostname, their_digest = msg
    if accepted is not True:
        # The server's own words, quoted in a warning: one printable line.
        said = printable((text(reason) or b"").decode("utf-8", "replace"), 200)
        return SHARED_KEY, f"the server refused the shared key ({said or 'no reason given'})"
    host = text(hostname)
    if host is None or text(their_digest) != digest(salt, host, nonce, key):
        return SHARED_KEY, "the server's PONG does not prove it holds the same shared key"
    return None


# -- answers --------------------------------------------------------------------------------

#: What each kind of answer makes of a batch; any other kind (refused, reset, a
#: time-out, TLS, DNS, no ack) is retried with back-off.
VERDICTS = {
    TOO_LARGE: Verdict.SPLIT,  # split, or, for one event, rejected to the dead letters
    SHARED_KEY: Verdict.HOLD,  # a configuration problem: kept, retried at the ceiling
}


class AckReader:
    """The chunk's ack delivers it; its absence says why (see the module docstring)."""

    def read(self, answer: Answer, count: int) -> Outcome:
        """The outcome of the stream transport's answer for one message."""
        if answer.error is None and answer.headers.get(ACK):
            return Outcome(Verdict.DELIVERED)
        kind = answer.kind or NO_ACK
        verdict = VERDICTS.get(kind, Verdict.RETRY)
        return Outcome(verdict, reason=answer.error or "no ack", kind=kind)


class Forward:
    """``protocol="forward"``: PackedForward messages over a stream, the token as shared key."""

    name = "forward"
    default_path = ""
    auth = ""
    transport = "stream"

    def encoder(self, opts: Any, builder: EventBuilder | None) -> ForwardEncoder:
        """Entries gzipped (CompressedPackedForward) when ``compress``."""
        return ForwardEncoder(opts.compress, builder)

    def reader(self, opts: Any) -> AckReader:
        """The ack decides."""
        return AckReader()


FORWARD = Forward()

#: The encoders of this module by the name they record with a spilled batch.
DECODERS: dict[str, Callable[[bool], ForwardEncoder]] = {ForwardEncoder.name: ForwardEncoder}
