"""Text from elsewhere as one printable line, before a person reads it. Pure: strings only.

A server's answer body, a ``PONG``'s reason, a field a sender chose: any of
them may hold a line break (a forged line in the application's own log
output) or an escape sequence (a terminal obeys them: clear the screen,
retitle the window, rewrite the line above). Every such text goes through
:func:`printable` before it reaches a warning on the ``logship`` logger,
``stats()``, or the output of the ``logship`` command.
"""

from __future__ import annotations

__all__ = ["printable"]

#: What marks a text cut short.
ELLIPSIS = "…"


def printable(text: str, limit: int | None = None) -> str:
    """``text`` on one line, every character a terminal could act on escaped (``\\n``, ``\\x1b``).

    Escaped: whatever ``str.isprintable`` refuses except the plain space:
    control characters (C0, DEL, C1), line and paragraph separators,
    bidirectional overrides and lone surrogates, written as Python writes
    them in a string literal. What it returns is printable, so a second
    pass changes nothing. With ``limit``, a longer result is cut to
    ``limit`` characters, the last one ``…``: the escapes count, so the
    line stays short whatever the text held.
    """
    if limit is not None and len(text) > limit:
        # Each character gives at least one: the first limit + 1 decide the result, and a
        # huge text costs no more than they do.
        text = text[: limit + 1]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else _escape(c) for c in text)
    if limit is not None and len(text) > limit:
        return text[: max(limit - 1, 0)] + ELLIPSIS
    return text


def _escape(c: str) -> str:
    # Python's own escapes: \n, \t, \x1b, \u2028, \ud800 (a lone surrogate).
    return c.encode("unicode_escape").decode("ascii")
