"""``protocol="elasticsearch"``: the ``_bulk`` API of Elasticsearch and OpenSearch. Pure.

The body is NDJSON, two lines per event: a ``create`` action naming the
index (the ``index`` option: an index, an alias or a data stream, which
takes only ``create``) with the event's ``uuid`` as ``_id``, then the
document: the event with its ``timestamp`` as ``@timestamp``. A batch sent
again (a retry, a replay, a part of a split) creates nothing twice: the
second ``create`` of an ``_id`` is answered 409.

A bulk answer judges every action on its own, in the request's order, even
under HTTP 200 (``{"errors": true, "items": [{"create": {"status": 429,
"error": {"type": …, "reason": …}}}, …]}``). :class:`BulkReader` reads
each item: 2xx and 409 (already indexed) are delivered, 429 and 5xx are
sent again alone, 401, 403 and 404 are held as configuration problems, and
other refusals are rejected with their own reason. A status other than 2xx
for the whole request is judged as ``protocol="http"`` judges it (413
splits the batch).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from logship.pure.encoding import Encoding, gzip_compress, gzip_decompress
from logship.pure.event import COLLISION_PREFIX, EventBuilder
from logship.pure.eventjson import JsonEventWriter
from logship.pure.protocols import Answer, Event, Outcome
from logship.pure.protocols.http import StatusReader
from logship.pure.retry import Verdict, classify, parse_retry_after

#: Where events go when the ``index`` option is not given: a name the
#: ``logs-*-*`` index template of Elasticsearch makes a data stream.
DEFAULT_INDEX = "logs-logship-default"

#: The document's time field: what data streams and Kibana expect.
TIME_FIELD = "@timestamp"

#: What the encoder records with a spilled batch.
NAME = "elasticsearch"

CONTENT_TYPE = "application/x-ndjson"

# The JSON writer's events start with the time and carry the uuid as the
# sixth key, before anything nested: the first `,"uuid":"` is the event's.
# (Inside a JSON string every quote is escaped, so neither can match there.)
_JSON_HEAD = b'{"timestamp":'
_UUID_KEY = b',"uuid":"'
# A top-level `@timestamp` of the application's would make the key appear
# twice once the time is renamed; Elasticsearch refuses duplicate keys.
_TIME = TIME_FIELD.encode()
_TIME_KEY = b',"' + _TIME + b'":'
# What joins the _id to the document, whose time is renamed.
_ID_END_DOC_START = b'"}}\n{"' + _TIME + b'":'

_compact = json.JSONEncoder(separators=(",", ":")).encode


class BulkEncoder:
    """Events as ``_bulk`` NDJSON: a ``create`` action and the document, per event."""

    name = NAME
    per_event_overhead = 1  # the newline after each document
    body_overhead = 0

    def __init__(self, index: str, compress: bool, builder: EventBuilder | None = None) -> None:
        self.index = index
        self.compress = compress
        self._encoding = Encoding("ndjson")
        self._write: Callable[[Sequence[Any]], list[bytes]] | None = None
        if builder is not None:
            self._write = JsonEventWriter(builder, self._encoding.encode_event).encode_many
        self._action_head = b'{"create":{"_index":' + _compact(index).encode() + b',"_id":"'
        self._headers = {"Content-Type": CONTENT_TYPE}
        if compress:
            self._headers["Content-Encoding"] = "gzip"

    def units(self, items: Sequence[Any]) -> list[bytes]:
        """One action and document per ring item (through the JSON writer's fast path)."""
        if self._write is None:
            raise RuntimeError("an encoder without an event builder cannot encode ring items")
        return [self._from_json(doc) for doc in self._write(items)]

    def _from_json(self, doc: bytes) -> bytes:
        """The unit of an event the JSON writer wrote: its time renamed, its uuid the ``_id``."""
        start = doc.find(_UUID_KEY) + len(_UUID_KEY)
        end = doc.find(b'"', start)
        uid = doc[start:end]
        if (
            start < len(_UUID_KEY)  # no uuid
            or end < 0
            or b"\\" in uid  # an escape: its closing quote may not be the one found
            or not doc.startswith(_JSON_HEAD)
            or (b"@" in doc and _TIME_KEY in doc)  # (one byte is found much faster)
        ):
            return self.unit(json.loads(doc))  # an unusual event: the general path
        return self._action_head + uid + _ID_END_DOC_START + doc[len(_JSON_HEAD) :]

    def unit(self, event: Event) -> bytes:
        """An event dict's action and document; never raises."""
        uid = event.get("uuid")
        if isinstance(uid, str):
            action = self._action_head + _compact(uid)[1:].encode("ascii") + b"}}"
        else:  # no uuid to dedupe on (not an event logship made): the server picks an _id
            action = self._action_head[: -len(b',"_id":"')] + b"}}"
        return action + b"\n" + self._encoding.encode_event(document(event))

    def body(self, units: Sequence[bytes]) -> tuple[bytes, int]:
        """The units as NDJSON (the last line ends with a newline too), gzipped when asked."""
        raw = b"\n".join(units) + b"\n"
        return (gzip_compress(raw) if self.compress else raw), len(raw)

    def units_of(self, body: bytes) -> list[bytes]:
        """The units of a body this encoder made, byte for byte."""
        lines = self._lines(body)
        return [lines[i] + b"\n" + lines[i + 1] for i in range(0, len(lines) - 1, 2)]

    def events_of(self, body: bytes) -> list[Event]:
        """The events of a body this encoder made (its documents, the time renamed back)."""
        lines = self._lines(body)
        return [event_of(json.loads(lines[i])) for i in range(1, len(lines), 2)]

    def _lines(self, body: bytes) -> list[bytes]:
        raw = gzip_decompress(body) if self.compress else body
        # JSON escapes every newline inside a string: each line is one action or document.
        return [line for line in raw.split(b"\n") if line]

    def headers(self) -> dict[str, str]:
        """``Content-Type: application/x-ndjson``, and ``Content-Encoding: gzip`` when asked."""
        return dict(self._headers)


def document(event: Event) -> Event:
    """The document indexed for ``event``: ``@timestamp`` first, in place of ``timestamp``.

    An ``@timestamp`` the event brought itself (an ``extra=`` key) is kept
    as ``extra_@timestamp``, as other collisions with core fields are.
    """
    doc: Event = {}
    if "timestamp" in event:
        doc[TIME_FIELD] = event["timestamp"]
    for key, value in event.items():
        if key == TIME_FIELD:
            doc[COLLISION_PREFIX + key] = value
        elif key != "timestamp":
            doc[key] = value
    return doc


def event_of(doc: Any) -> Event:
    """The event a document was made from (:func:`document` undone, as far as it can be)."""
    if not isinstance(doc, dict):
        return {"message": doc}
    event: Event = {}
    if TIME_FIELD in doc:
        event["timestamp"] = doc[TIME_FIELD]
    event.update((k, v) for k, v in doc.items() if k != TIME_FIELD)
    return event


# -- the answer -------------------------------------------------------------------------

#: Past this many distinct reasons in one answer, rejected items are grouped
#: by status and error type alone: each group is a dead letter of its own.
MAX_REJECT_GROUPS = 16

# Which verdict decides how long the sender waits when groups differ.
_SEVERITY = {Verdict.DELIVERED: 0, Verdict.REJECT: 1, Verdict.RETRY: 2, Verdict.HOLD: 3}

_READ_STATUS = StatusReader()


class Item:
    """One item of a bulk answer: its status, what it means, and the server's words."""

    __slots__ = ("reason", "status", "type", "verdict")

    def __init__(self, status: int, error: Any, own_id: Any) -> None:
        self.status = status
        verdict = classify(status)
        if status == 409:
            verdict = Verdict.DELIVERED  # a create of an _id that exists: indexed before
        elif verdict is Verdict.SPLIT:
            verdict = Verdict.REJECT  # one document too large: splitting cannot help
        self.verdict = verdict
        self.type = str(error.get("type", "")) if isinstance(error, dict) else ""
        reason = f"{status} {error_text(error)}".rstrip()
        if isinstance(own_id, str) and own_id:
            # Reasons name the document: without its own _id, the same refusal
            # of many events reads the same and makes one dead letter.
            reason = reason.replace(own_id, "[_id]")
        self.reason = reason[:500]  # a dead letter's reason: bounded, as http's are


def read_item(entry: Any) -> Item | None:
    """An entry of ``items`` (``{"create": {"status": 201, …}}``), or None when it is not one."""
    if not isinstance(entry, dict) or len(entry) != 1:
        return None
    (result,) = entry.values()
    if not isinstance(result, dict):
        return None
    status = result.get("status")
    if not isinstance(status, int) or isinstance(status, bool):
        return None
    return Item(status, result.get("error"), result.get("_id"))


def error_text(error: Any) -> str:
    """An Elasticsearch error object as ``type: reason``, with its first cause."""
    if isinstance(error, str):
        return error
    if not isinstance(error, dict):
        return ""
    text = ": ".join(str(error[k]) for k in ("type", "reason") if error.get(k))
    cause = error.get("caused_by")
    if isinstance(cause, dict) and (cause.get("type") or cause.get("reason")):
        text += f" (caused by {error_text({**cause, 'caused_by': None})})"
    return text


def whole_error(body: str) -> str:
    """The reason an Elasticsearch error answer gives (``{"error": {…}, "status": 400}``)."""
    try:
        doc = json.loads(body)
        return error_text(doc.get("error")) if isinstance(doc, dict) else ""
    except Exception:  # any body that cannot be read gives no reason: the status decides
        return ""


class BulkReader:
    """Reads every item of a bulk answer (:class:`~logship.pure.protocols.AnswerReader`)."""

    def read(self, answer: Answer, count: int) -> Outcome:
        """The outcome for a batch of ``count`` events."""
        status = answer.status
        if status is None or not 200 <= status < 300:
            outcome = _READ_STATUS.read(answer, count)
            said = whole_error(answer.body)
            return replace(outcome, reason=said[:500]) if said else outcome
        try:
            doc = json.loads(answer.body)
        except json.JSONDecodeError:  # not JSON: perhaps a JSON answer cut short
            return unreadable(answer, count, cut=answer.body.lstrip().startswith("{"))
        except Exception:
            # JSON, but not readable: nested past the parser's depth
            # (RecursionError), a number past int's digit limit (ValueError).
            # A smaller batch would get the same: no cut.
            return unreadable(answer, count, cut=False)
        try:
            return self._judge(doc, answer, count)
        except Exception:
            # The items' values are the server's: nested or sized past what
            # str() takes, they make an answer that cannot be read, no bug.
            return unreadable(answer, count, cut=False)

    @staticmethod
    def _judge(doc: Any, answer: Answer, count: int) -> Outcome:
        """The outcome of a 2xx whose body is the JSON ``doc``."""
        items = doc.get("items") if isinstance(doc, dict) else None
        read = [read_item(e) for e in items] if isinstance(items, list) else []
        judged = [item for item in read if item is not None]
        if len(judged) == len(read) == count:
            return judge(judged, answer)
        if items is None and isinstance(doc, dict) and doc.get("errors") is False:
            # Items left out (filter_path=errors): none failed, the server says.
            return Outcome(Verdict.DELIVERED, kind=f"http-{answer.status}")
        return unreadable(answer, count, cut=False)


def unreadable(answer: Answer, count: int, cut: bool) -> Outcome:
    """The outcome of a 2xx that does not say what became of each event.

    A JSON answer cut short (longer than the transport reads) is split: a
    smaller batch gets a smaller answer. Anything else (not JSON, not a bulk
    answer, or one that cannot be read at all) is sent again, not taken as
    delivered: a bulk 200 may refuse any of its items, with a 429 that a
    retry would get through, and an answer that cannot be read may hide
    those. Sending again is safe: every event has its ``_id``, so what was
    indexed comes back as a 409.
    """
    kind = f"http-{answer.status}"
    if cut and count > 1:
        return Outcome(Verdict.SPLIT, reason="a bulk answer too long to read", kind=kind)
    text = answer.body.strip()
    shown = f"the answer {text[:80]!r}" if text else "an empty answer"
    reason = (
        f"{shown} is not a bulk answer for {count} events: "
        "check that the URL is Elasticsearch's or OpenSearch's _bulk"
    )
    return Outcome(
        Verdict.RETRY, retry_after=parse_retry_after(answer.retry_after), reason=reason, kind=kind
    )


def judge(items: Sequence[Item], answer: Answer) -> Outcome:
    """The outcome of a batch whose events got ``items``: whole when they agree, else per group.

    Rejected events are grouped by what the server said of them (each group
    becomes a dead letter with that reason); the others by verdict alone.
    """
    groups = _groups(items, lambda item: item.reason)
    if sum(key[0] is Verdict.REJECT for key in groups) > MAX_REJECT_GROUPS:
        groups = _groups(items, lambda item: f"{item.status} {item.type}")
    ordered = sorted(groups.items(), key=lambda g: (_SEVERITY[g[0][0]], g[1][0]))
    parts = tuple((verdict, tuple(indices)) for (verdict, _said), indices in ordered)
    notes = tuple(_note(items, indices) for _key, indices in ordered)
    retry_after = parse_retry_after(answer.retry_after)
    verdict, kind = parts[-1][0], notes[-1][0]  # the worst comes last
    if verdict is Verdict.DELIVERED:
        return Outcome(Verdict.DELIVERED, kind=f"http-{answer.status}")
    if len(parts) == 1:
        return Outcome(verdict, retry_after=retry_after, reason=notes[0][1], kind=kind)
    failed = [
        (len(indices), said)
        for (v, indices), (_kind, said) in zip(parts, notes, strict=True)
        if v is not Verdict.DELIVERED
    ]
    reason = f"{sum(n for n, _said in failed)} of {len(items)} events not indexed: " + "; ".join(
        f"{n} with {said}" for n, said in failed
    )
    return Outcome(verdict, parts, retry_after=retry_after, reason=reason, kind=kind, notes=notes)


def _groups(
    items: Sequence[Item], what: Callable[[Item], str]
) -> dict[tuple[Verdict, str], list[int]]:
    groups: dict[tuple[Verdict, str], list[int]] = {}
    for i, item in enumerate(items):
        key = (item.verdict, what(item) if item.verdict is Verdict.REJECT else "")
        groups.setdefault(key, []).append(i)
    return groups


def _note(items: Sequence[Item], indices: Sequence[int]) -> tuple[str, str]:
    """A group's kind and reason: its first item's, saying when the others differ."""
    first = items[indices[0]]
    others = len({items[i].reason for i in indices} - {first.reason})
    said = f"{first.reason} (and {others} other reasons)" if others else first.reason
    return f"http-{first.status}", said


# -- the protocol -----------------------------------------------------------------------


class Elasticsearch:
    """``protocol="elasticsearch"``: ``_bulk`` NDJSON, the token as ``ApiKey``."""

    name = NAME
    default_path = "/_bulk"
    auth = "ApiKey"
    transport = "http"

    def encoder(self, opts: Any, builder: EventBuilder | None) -> BulkEncoder:
        """An encoder into the ``index`` option's index (default :data:`DEFAULT_INDEX`)."""
        return BulkEncoder(opts.index or DEFAULT_INDEX, opts.compress, builder)

    def reader(self, opts: Any) -> BulkReader:
        """Every item of the answer decides for its event."""
        return BulkReader()


ELASTICSEARCH = Elasticsearch()


def _decoder(compressed: bool) -> BulkEncoder:
    # Decoding needs no index: the actions are kept as they are.
    return BulkEncoder(DEFAULT_INDEX, compressed)


#: The encoders of this module by the name they record with a spilled batch.
DECODERS: dict[str, Callable[[bool], BulkEncoder]] = {NAME: _decoder}
