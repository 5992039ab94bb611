"""Spill encryption at rest: AES-256-GCM per frame, with the optional ``encrypt`` extra.

Pure: bytes in, bytes out. Each sealed frame carries its own random 96-bit
nonce. The file header (never encrypted) records a key id, a hash of the key
that reveals nothing of it, so a reader with another key can say "wrong
key" instead of mistaking every frame for corruption.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Any

# Binds a sealed frame to its purpose: the same key used elsewhere cannot
# have its ciphertexts passed off as spill frames, nor the reverse.
_AAD = b"logship-spill-frame-v1"
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

    def seal(self, plaintext: bytes) -> bytes:
        """Nonce followed by ciphertext and tag."""
        nonce = os.urandom(12)
        return nonce + bytes(self._aead.encrypt(nonce, plaintext, _AAD))

    def open(self, blob: bytes) -> bytes:
        """The plaintext of :meth:`seal`; ``WrongKey`` when it does not open."""
        from cryptography.exceptions import InvalidTag

        try:
            return bytes(self._aead.decrypt(blob[:12], blob[12:], _AAD))
        except (InvalidTag, ValueError):
            raise WrongKey from None
