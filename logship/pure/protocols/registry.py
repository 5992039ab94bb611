"""Every protocol logship speaks, by the name the ``protocol`` option gives it. Pure.

A protocol module offers a :class:`~logship.pure.protocols.WireProtocol`
and the encoders that read its spilled bodies back (``DECODERS``, by the
name an encoder records with each spilled batch). Adding a protocol is one
module and one line in each table here.
"""

from __future__ import annotations

from collections.abc import Callable

from logship.pure.protocols import (
    Encoder,
    WireProtocol,
    elasticsearch,
    forward,
    http,
    loki,
    otlp,
    splunk,
)

PROTOCOLS: dict[str, WireProtocol] = {
    "http": http.HTTP,
    "forward": forward.FORWARD,
    "elasticsearch": elasticsearch.ELASTICSEARCH,
    "splunk": splunk.SPLUNK,
    "loki": loki.LOKI,
    "otlp": otlp.OTLP,
}

_DECODERS: dict[str, Callable[[bool], Encoder]] = {
    **http.DECODERS,
    **forward.DECODERS,
    **elasticsearch.DECODERS,
    **splunk.DECODERS,
    **loki.DECODERS,
    **otlp.DECODERS,
}

#: Every name a spilled batch may record as its encoder.
ENCODER_NAMES = frozenset(_DECODERS)


def protocol_named(name: str) -> WireProtocol:
    """The protocol called ``name``; ``ValueError`` naming the option when logship lacks it."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        available = ", ".join(repr(n) for n in PROTOCOLS)
        raise ValueError(
            f"logship: option 'protocol' is {name!r}, which this logship does not speak "
            f"(it speaks {available})"
        ) from None


def decoder_named(name: str, compressed: bool) -> Encoder:
    """The encoder that reads bodies its encoder recorded as ``name``; ``ValueError`` if none."""
    try:
        return _DECODERS[name](compressed)
    except KeyError:
        raise ValueError(f"no encoder is called {name!r}") from None
