"""The token a transport sends: given once, or read from a file that is re-read when it changes.

A rotated secret is picked up without a restart; a rotation caught half
way (the file empty for a moment) or a file no header can carry keeps the
previous token, with a warning, instead of sending none.
"""

from __future__ import annotations

import os
from collections import deque

from logship.pure.options import Options, check_header_value, read_token_file
from logship.pure.redact_url import scrub, token_secrets
from logship.worker.diagnostics import Warner


def file_mode_problem(path: str) -> str | None:
    """What is wrong with who may read the token file ``path`` (None when nothing is)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    if st.st_mode & 0o044:
        who = "every user" if st.st_mode & 0o004 else "its group"
        return f"is readable by {who}: chmod 600 it"
    return None


#: How many replaced tokens are still scrubbed from what servers say.
_FORMER_KEPT = 4


class TokenSource:
    """The current token (or None), read lazily on the worker.

    ``scheme`` is how it is sent (``Authorization: <scheme> <token>``); ""
    when it never leaves as a header (``forward``'s shared key).
    """

    def __init__(self, opts: Options, warner: Warner, scheme: str = "") -> None:
        self.scheme = scheme
        self._token = opts.token
        self._file = opts.token_file
        self._mtime: float | None = None
        self._warner = warner
        # Tokens a rotation replaced: an answer to a request sent before it
        # may quote one, after the file says the new one.
        self._former: deque[str] = deque(maxlen=_FORMER_KEPT)

    def current(self) -> str | None:
        """The token to send now; re-reads a token file whose modification time changed."""
        if self._file:
            # A stat per request is cheap next to the request.
            try:
                st = os.stat(self._file)
                if st.st_mtime != self._mtime:
                    self._reload(st.st_mtime)
            except OSError:
                pass  # keep the last token that worked
        return self._token

    def scrub(self, text: str, secrets: list[tuple[str, str]]) -> str:
        """``text`` without the current token, nor one a rotation replaced (nor the header
        that carries them), nor the ``(secret, mask)`` pairs of ``secrets``.

        Errors and answers may quote the token or the URL's secrets; ``stats()``,
        warnings and dead letters show what this returns.
        """
        tokens = (self.current(), *self._former)
        return scrub(text, [*secrets, *(s for t in tokens for s in token_secrets(t, self.scheme))])

    def _reload(self, mtime: float) -> None:
        assert self._file is not None
        try:
            token = read_token_file(self._file)
            if not token:
                raise ValueError(f"the token file {self._file} is empty")
            check_header_value(token, f"the token in {self._file}", tab=False)
        except (OSError, UnicodeDecodeError):
            return  # unreadable for now: try again at the next request
        except ValueError as e:  # empty mid-rotation, or a token no header can carry
            self._warner.warn(
                "token-file-bad", "logship: %s: keeping the previous token. Fix the file.", e
            )
            self._mtime = mtime
            return
        if self._token and self._token != token:
            self._former.append(self._token)
        self._token, self._mtime = token, mtime
        problem = file_mode_problem(self._file)
        if problem:
            self._warner.warn(
                "token-file-mode", "logship: the token file %s %s.", self._file, problem
            )
