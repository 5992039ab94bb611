"""How ``logship receive`` shows and stores what senders sent: terminal lines and NDJSON.

Everything here takes text a sender chose. A terminal obeys the escape
sequences it is given (clear the screen, retitle the window, rewrite the
line above), so every echoed field goes through
:func:`~logship.pure.printable.printable` first (the function the library's
warnings use); the NDJSON writer takes any value msgpack can decode, map
keys included.
"""

from __future__ import annotations

import json
import math
from typing import Any

from logship.pure.printable import printable

#: How deeply :func:`ndjson_line` follows an event that JSON cannot take as it is.
MAX_DEPTH = 200
# A refusal line shows this many characters of the request and of the reason, an
# echoed line of each of its fields but the message.
_SHOWN_CHARS = 200
#: The most characters of a message an echoed line shows.
_MESSAGE_CHARS = 4000
#: What marks an echoed event whose ``uuid`` was seen before.
DUPLICATE = " [duplicate]"


def as_text(value: Any) -> str:
    """``value`` as text: itself if a string, else its ``repr`` (never raising on deep nesting)."""
    if isinstance(value, str):
        return value
    try:
        return repr(value)
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply to show>"


def echo_line(event: dict[str, Any]) -> str:
    """One printable line: ``TIMESTAMP LEVEL LOGGER: MESSAGE``, then `` [exception]`` when
    the event has one (the receiver adds :data:`DUPLICATE` when its ``uuid`` was seen
    before). A sender chooses every part: each is cut
    (:data:`_SHOWN_CHARS`, the message :data:`_MESSAGE_CHARS`), so that one
    event can neither flood the console nor hold the receiver while it is
    escaped.
    """
    fields = [
        printable(as_text(event.get(name, "-")), _SHOWN_CHARS)
        for name in ("timestamp", "level", "logger")
    ]
    message = printable(as_text(event.get("message", "")), _MESSAGE_CHARS)
    line = f"{' '.join(fields)}: {message}"
    return line + " [exception]" if "exception" in event else line


def refusal_line(status: int, reason: str, request: str) -> str:
    """One printable line for a refused request: status, what it was, why (shortened)."""
    return f"refused {status} {printable(request, _SHOWN_CHARS)}: {printable(reason, _SHOWN_CHARS)}"


def ndjson_line(event: dict[str, Any]) -> str:
    """The event as one JSON line; ``ValueError`` only if it nests deeper than ``MAX_DEPTH``.

    msgpack can carry what JSON cannot: bytes (written as UTF-8 text), map
    keys that are not strings (bytes, numbers, ``None``, extension types;
    tuples when arrays were decoded as such), at any depth. NaN and the
    infinities (a msgpack float, or the ``NaN`` token Python's JSON reader
    accepts) are written as the text ``"nan"``, ``"inf"``, ``"-inf"``, as
    the handler ships them: a bare ``NaN`` would make the line unreadable to
    strict JSON readers (``jq``, most aggregators).
    """
    try:
        line = json.dumps(event, ensure_ascii=False, default=_json_default, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        plain = _plain(event, MAX_DEPTH)
        return json.dumps(plain, ensure_ascii=False, default=_json_default, allow_nan=False) + "\n"
    # Whether json.dumps reaches the recursion limit first depends on the
    # interpreter (3.12 counts C recursion apart): the depth is checked
    # whenever the line holds enough brackets to be that deep.
    if line.count("{") + line.count("[") > MAX_DEPTH:
        _plain(event, MAX_DEPTH)
    return line + "\n"


def _json_default(value: Any) -> Any:
    # msgpack can carry what JSON cannot (bytes, ext types, timestamps).
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return as_text(value)


def _plain(value: Any, depth: int) -> Any:
    """``value`` with every map key made a string and NaN and infinities text, ``depth``
    levels down at most."""
    if isinstance(value, (dict, list, tuple)) and depth <= 0:
        raise ValueError(f"an event nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {_key(k): _plain(v, depth - 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth - 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes):
        return key.decode("utf-8", "replace")
    if isinstance(key, float):
        return repr(key)  # as json.dumps writes it, and NaN and infinities as values are
    if key is None or isinstance(key, (bool, int)):
        return json.dumps(key)  # what json.dumps itself makes of such a key
    return as_text(key)
