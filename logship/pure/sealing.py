"""Spill encryption at rest: AES-256-GCM per frame, with the optional ``encrypt`` extra.

Pure: bytes in, bytes out. Each sealed frame carries its own random 96-bit
nonce. The file header (never encrypted) records a key id, a hash of the key
that reveals nothing of it, so a reader with another key can say "wrong
key" instead of mistaking every frame for corruption.

A frame is bound to the file it was written in: the associated data names
the file (its id), so a frame copied into another file does not open there,
and cannot be delivered twice or passed off as another file's. Frames sealed
before this binding (associated data without a file id) still open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Any

# Binds a sealed frame to its purpose (the same key used elsewhere cannot
# have its ciphertexts passed off as spill frames, nor the reverse) and, from
# v2 on, to its file.
_AAD_V1 = b"logship-spill-frame-v1"
_AAD_V2 = b"logship-spill-frame-v2:"
KEY_BYTES = 32


class WrongKey(Exception):
    """A sealed frame did not open with this key (or was tampered with)."""


def parse_key(value: str) -> bytes:
    """A 32-byte key from 64 hex digits or base64; ``ValueError`` naming the option."""
    text = value.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != KEY_BYTES:
            try:
                raw = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
    if len(raw) != KEY_BYTES:
        raise ValueError(
            "logship: option 'spill_key' must be 32 bytes, as 64 hex digits or base64 "
            "(make one with: python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return raw


class Sealer:
    """Seals and opens spill frames with one key."""

    def __init__(self, key: bytes) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise ValueError(
                "logship: option 'spill_key' needs the 'encrypt' extra: "
                "pip install 'pylogship[encrypt]'"
            ) from None
        self._aead: Any = AESGCM(key)
        self.key_id = hashlib.sha256(b"logship-spill-key-id:" + key).hexdigest()[:16]

    def seal(self, plaintext: bytes, file_id: str) -> bytes:
        """Nonce followed by ciphertext and tag, bound to the file ``file_id``."""
        nonce = os.urandom(12)
        return nonce + bytes(self._aead.encrypt(nonce, plaintext, _AAD_V2 + file_id.encode()))

    def open(self, blob: bytes, file_id: str) -> bytes:
        """The plaintext of :meth:`seal` for the file ``file_id``; ``WrongKey`` if it does not open.

        A frame sealed before frames were bound to their file opens too.
        """
        from cryptography.exceptions import InvalidTag

        for aad in (_AAD_V2 + file_id.encode(), _AAD_V1):
            try:
                return bytes(self._aead.decrypt(blob[:12], blob[12:], aad))
            except (InvalidTag, ValueError):
                continue
        raise WrongKey
