"""``logship.pure.printable``: text from elsewhere as one printable line."""

from __future__ import annotations

import pytest

from logship.pure.printable import printable

CASES = [
    ("", ""),
    ("plain text", "plain text"),
    ("ünïcödé, 漢字 and 🙂", "ünïcödé, 漢字 and 🙂"),
    ("a back\\slash stays", "a back\\slash stays"),
    ("two\nlines", "two\\nlines"),
    ("crlf\r\nforged", "crlf\\r\\nforged"),
    ("a\ttab", "a\\ttab"),
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("title\x1b]0;owned\x07", "title\\x1b]0;owned\\x07"),
    ("nul\x00 del\x7f", "nul\\x00 del\\x7f"),
    ("c1 csi\x9b31m nel\x85", "c1 csi\\x9b31m nel\\x85"),
    ("no-break\xa0space", "no-break\\xa0space"),
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("\u202eexe.txt", "\\u202eexe.txt"),
    ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
    ("tag \U000e0041", "tag \\U000e0041"),
]


@pytest.mark.parametrize(("text", "shown"), CASES)
def test_printable(text, shown):
    assert printable(text) == shown
    assert shown.isprintable()
    assert printable(shown) == shown  # a second pass changes nothing


@pytest.mark.parametrize(
    ("text", "limit", "shown"),
    [
        ("abcdef", 6, "abcdef"),
        ("abcdef", 4, "abc…"),
        ("abcdef", None, "abcdef"),
        ("\n\n\n", 5, "\\n\\n…"),  # the escapes count: the line stays short
        ("ab\x1b", 3, "ab…"),
    ],
)
def test_printable_cuts_at_the_limit(text, limit, shown):
    assert printable(text, limit) == shown
