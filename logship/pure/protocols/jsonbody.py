"""What encoders of JSON bodies built from event dicts share. Pure.

An encoder that wraps each event in a protocol's own JSON (an HEC
envelope, a Loki stream) builds the event dict first and then its unit
(:meth:`EventJsonEncoder.unit`, the protocol's part). Building units from
ring items, the headers, and compressing a body or undoing it are the same
for all of them, and live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from logship.pure.encoding import gzip_compress, gzip_decompress
from logship.pure.event import EventBuilder, encode_items
from logship.pure.protocols import Event


class EventJsonEncoder:
    """The shared half of an encoder whose units come from event dicts, in a JSON body."""

    def __init__(self, compress: bool, builder: EventBuilder | None = None) -> None:
        self.compress = compress
        self._builder = builder
        self._headers = {"Content-Type": "application/json"}
        if compress:
            self._headers["Content-Encoding"] = "gzip"

    def unit(self, event: Event) -> bytes:
        """One event's unit: the protocol's own (subclasses say how)."""
        raise NotImplementedError

    def units(self, items: Sequence[Any]) -> list[bytes]:
        """One unit per ring item (``logship.ring.Item``), through its event dict."""
        return encode_items(self.unit, self._builder, items)

    def headers(self) -> dict[str, str]:
        """``Content-Type: application/json``, and ``Content-Encoding: gzip`` when compressing."""
        return dict(self._headers)

    def finished(self, raw: bytes) -> tuple[bytes, int]:
        """A body of ``raw`` as sent (gzipped when compressing), and its size before."""
        return (gzip_compress(raw) if self.compress else raw), len(raw)

    def raw(self, body: bytes) -> bytes:
        """A body this encoder made, uncompressed again."""
        return gzip_decompress(body) if self.compress else body
