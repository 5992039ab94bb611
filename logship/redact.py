"""``RedactFilter``: mask secrets in a record before it leaves the calling thread.

A ``logging.Filter`` that rewrites the record in place: the message (rendered
with ``getMessage()``, redacted, and stored back as ``msg`` with no
``args``), the traceback (formatted into ``exc_text``), ``stack_info``, and
the string values of ``extra=`` fields, nested dicts and lists included (as
copies: the application's own objects are never changed). Every handler
called after the filter sees the masked record, a ``ShipHandler`` included.

What it masks, each replaced by ``replacement``:

- ``password=…``, ``"token": "…"``, ``Authorization: Bearer …``: the value
  after a key that ends with one of :data:`DEFAULT_KEYS` (or ``keys``),
  followed by ``=`` or ``:``, in plain, JSON or Python-repr text; an
  authorization scheme (``Bearer``, ``Basic``, …) is kept. The same keys'
  values in ``extra=`` fields and dicts are masked whole, whatever they hold.
- ``Bearer …`` tokens anywhere, and the password of ``scheme://user:password@host``.
- card numbers: 13 to 19 digits, optionally grouped by single spaces or
  dashes, starting with 2 to 6 (every major network's range; this spares
  Unix timestamps in milliseconds) and passing the Luhn check.
- every match of the regular expressions in ``patterns``.

Most log messages hold none of these: before any regular expression runs,
a few substring tests and one pass of C code (``encode`` and ``translate``,
to count digits) decide which of them could match, so scanning such a
message costs a few hundred nanoseconds.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

from logship.pure.event import (
    INIT_RECORD_ATTRS,
    STANDARD_RECORD_ATTRS,
    format_exc_info,
    render_exc_info,
    unformattable,
)

__all__ = ["DEFAULT_KEYS", "RedactFilter"]

DEFAULT_KEYS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "access_key",
    "private_key",
    "authorization",
    "cookie",
)
"""Key names whose values [`RedactFilter`][logship.RedactFilter] masks.

A key matches when it ends with one of these, ignoring case and ``_`` or
``-`` between words: ``db_password``, ``X-Auth-Token``, ``apiKey`` and
``client_secret`` all do; ``max_tokens`` and ``password_hash`` do not. The
filter's ``keys`` option adds more.
"""

# Authorization schemes kept in front of a masked credential (RFC 9110 names).
_SCHEMES = "bearer|basic|digest|token|negotiate|ntlm|apikey|dpop|hoba|mutual"
_SCHEME_PREFIX = re.compile(rf"(?i:{_SCHEMES})[ \t]+")
_SCHEME_ONLY = re.compile(rf"(?i:{_SCHEMES})")

# A value: double- or single-quoted (escapes allowed), or a bare run that
# stops where a query string, a list or a bracket would go on.
_VALUE = (
    r"""(?:"(?P<dq>(?:[^"\\\n]|\\.)*)"|'(?P<sq>(?:[^'\\\n]|\\.)*)'"""
    r"""|(?P<bare>[^\s"',;&(){}\[\]<>]+))"""
)
# Each pattern below starts with a literal or a character class, so that the
# regular expression engine skips in C to where a match could start.
_SEPARATOR = re.compile(r"[:=]")
_VALUE_AFTER = re.compile(rf"(?P<head>[ \t]*(?:(?i:{_SCHEMES})[ \t]+)?)" + _VALUE)
_BEARER = re.compile(
    r"(?P<head>[Bb](?<![A-Za-z0-9_][Bb])[Ee][Aa][Rr][Ee][Rr][ \t]+)(?P<val>[A-Za-z0-9\-._~+/]+=*)"
)
_URL_PASSWORD = re.compile(r"(?P<head>://[^\s:/@?#]+:)(?P<val>[^\s/@?#]+)(?=@)")
_CARD = re.compile(r"[2-6](?<![0-9][2-6])(?:[ -]?[0-9]){12,18}(?![0-9])")
# How far before a separator a key's end is looked for (quotes and blanks included).
_KEY_WINDOW = 64
_DOUBLED = str.maketrans("0123456789", "0246813579")  # 2*d, digits summed

_DIGITS = b"0123456789"
_ZERO = ord("0")
_MIN_CARD_DIGITS = 13

# extra= fields (and a Formatter's `message` and `asctime`) come after the
# attributes LogRecord.__init__ sets.
_INIT_LEN = len(INIT_RECORD_ATTRS)
_SECRET_KEY_CACHE_MAX = 4096

_MAX_DEPTH = 32


def luhn(digits: str) -> bool:
    """True when the string of digits passes the Luhn check (as card numbers do)."""
    # Every other digit from the right doubled (its digits summed), all summed;
    # summing the bytes of ASCII digits is C work, int() of each one is not.
    summed = (digits[-1::-2] + digits[-2::-2].translate(_DOUBLED)).encode()
    return (sum(summed) - _ZERO * len(summed)) % 10 == 0


def _is_card(digits: str) -> bool:
    return _MIN_CARD_DIGITS <= len(digits) <= 19 and digits[0] in "23456" and luhn(digits)


def extra_keys(attrs: dict[str, Any]) -> Iterable[str]:
    """The names in a record's ``__dict__`` that ``LogRecord.__init__`` did not set.

    Reads from the end until the first attribute ``__init__`` set: a few
    steps, where a set difference of the whole ``__dict__`` costs ten times
    more. When what it skipped and the rest do not add up (an attribute was
    deleted, or set before ``__init__`` ran), it falls back to the set
    difference, so nothing is missed.
    """
    found = []
    seen = 0
    for key in reversed(attrs):
        if key in INIT_RECORD_ATTRS:
            break
        seen += 1
        if key not in STANDARD_RECORD_ATTRS:
            found.append(key)
    if len(attrs) - seen == _INIT_LEN:
        return found
    return attrs.keys() - STANDARD_RECORD_ATTRS


def _normal_key(key: str) -> str:
    return key.lower().replace("-", "_").strip("_")


def _check_patterns(patterns: Any) -> list[re.Pattern[str]]:
    if isinstance(patterns, (str, bytes, re.Pattern)):
        raise TypeError("logship: RedactFilter option 'patterns' must be a list of patterns")
    try:
        items = list(patterns)
    except TypeError:
        raise TypeError(
            "logship: RedactFilter option 'patterns' must be a list of patterns"
        ) from None
    compiled: list[re.Pattern[str]] = []
    for p in items:
        if isinstance(p, re.Pattern):
            if not isinstance(p.pattern, str):
                raise TypeError(f"logship: RedactFilter pattern {p.pattern!r} is not a str pattern")
            compiled.append(p)
            continue
        if not isinstance(p, str):
            raise TypeError(f"logship: RedactFilter option 'patterns' holds {p!r}, not a string")
        if not p:
            raise ValueError("logship: RedactFilter option 'patterns' holds an empty pattern")
        try:
            compiled.append(re.compile(p))
        except re.error as e:
            raise ValueError(f"logship: RedactFilter pattern {p!r} is invalid: {e}") from None
    return _combined(compiled)


def _combined(compiled: list[re.Pattern[str]]) -> list[re.Pattern[str]]:
    """One regular expression for all the string patterns when that is safe, else one each."""
    plain = [p for p in compiled if not p.flags & ~re.UNICODE]
    # A numbered back-reference (\1) would point at another pattern's group once combined.
    if len(plain) > 1 and not any(re.search(r"\\[1-9]|\\g<[0-9]", p.pattern) for p in plain):
        try:
            together = re.compile("|".join(f"(?:{p.pattern})" for p in plain))
        except re.error:  # e.g. two patterns naming a group alike
            pass
        else:
            return [together, *(p for p in compiled if p not in plain)]
    return compiled


class RedactFilter(logging.Filter):
    r"""A ``logging.Filter`` that masks secrets in records; it never drops one.

    It rewrites each record in place, on the thread that logs it: the
    message, the traceback, ``stack_info`` and the values of ``extra=``
    fields (nested dicts and lists as masked copies). Masked are the values
    of secret keys (``password=…``, ``"token": "…"``, see
    [`DEFAULT_KEYS`][logship.redact.DEFAULT_KEYS]), ``Bearer`` tokens, the
    password in ``scheme://user:password@host``, card numbers (13 to 19
    digits passing the Luhn check), and whatever ``patterns`` match. Values
    that are not strings, numbers, dicts, lists or tuples are not looked
    into.

    Attach it to the handlers whose output must be masked: a filter on a
    *logger* does not see the records of its child loggers. Every option is
    a keyword argument, so ``dictConfig`` can build it with
    ``"()": "logship.RedactFilter"``.

    Args:
        patterns: Regular expressions (strings or compiled ``str`` patterns)
            whose every match is masked.
        replacement: The text put in place of each secret.
        keys: More key names whose values are masked, besides
            [`DEFAULT_KEYS`][logship.redact.DEFAULT_KEYS].
        cards: ``False`` stops masking card numbers.

    Raises:
        TypeError: An option of the wrong type (``patterns="x"`` rather than
            a list, a ``replacement`` that is not a string, …).
        ValueError: A pattern that is empty or does not compile.

    Examples:
        >>> import logging, logship
        >>> redact = logship.RedactFilter(patterns=[r"\bACCT-\d+\b"])
        >>> redact.redact("paid from ACCT-991 with 4111 1111 1111 1111")
        'paid from [REDACTED] with [REDACTED]'
        >>> record = logging.makeLogRecord({"msg": "login %s, password=%s", "args": ("ada", "pw")})
        >>> redact.filter(record)
        True
        >>> record.getMessage()
        'login ada, password=[REDACTED]'

        On a handler it masks every record the handler is given:

        >>> handler = logship.ShipHandler(url="http://127.0.0.1:9880/app")
        >>> handler.addFilter(redact)
        >>> handler.close()
    """

    def __init__(
        self,
        *,
        patterns: Iterable[str | re.Pattern[str]] = (),
        replacement: str = "[REDACTED]",
        keys: Iterable[str] = (),
        cards: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(replacement, str):
            raise TypeError("logship: RedactFilter option 'replacement' must be a string")
        if not isinstance(cards, bool):
            raise TypeError("logship: RedactFilter option 'cards' must be True or False")
        if isinstance(keys, str):
            raise TypeError("logship: RedactFilter option 'keys' must be a list of key names")
        more_keys = list(keys)
        for k in more_keys:
            if not isinstance(k, str) or not k.strip("_-"):
                raise TypeError(f"logship: RedactFilter option 'keys' holds {k!r}, not a key name")
        self.replacement = replacement
        self.cards = cards
        self._user = _check_patterns(patterns)
        names = tuple(dict.fromkeys(_normal_key(k) for k in (*DEFAULT_KEYS, *more_keys)))
        #: A key is secret when, lower-cased, it ends with one of these: "api_key"
        #: also stands for "apikey" and, in text, "api-key".
        self._key_suffixes = names + tuple(n.replace("_", "") for n in names if "_" in n)
        self._text_suffixes = self._key_suffixes + tuple(
            n.replace("_", "-") for n in names if "_" in n
        )
        # Lower-case words one of which any key holds: its last word ("api_key": "key").
        self._triggers = tuple(dict.fromkeys(k.rsplit("_", 1)[-1] for k in names))
        self._secret_keys: dict[str, bool] = {}

    # -- text ----------------------------------------------------------------

    def redact(self, text: str) -> str:
        """Return ``text`` with every secret this filter knows of masked (see the class).

        Cheap tests first (a separator, a key's last word, ``bearer``, ``://``,
        thirteen digits); a regular expression runs only where they say it
        could match, and the user's ``patterns`` always.
        """
        if "=" in text or ":" in text:
            lowered = text.lower()
            for trigger in self._triggers:
                if trigger in lowered:
                    text = self._mask_pairs(text)
                    break
            if "://" in text and "@" in text:
                text = _URL_PASSWORD.sub(self._masked_tail, text)
        if "earer" in text or "EARER" in text:
            text = _BEARER.sub(self._masked_tail, text)
        if self.cards and len(text) >= _MIN_CARD_DIGITS:
            try:
                raw = text.encode()
            except UnicodeEncodeError:  # lone surrogates
                raw = text.encode("utf-8", "surrogatepass")
            if len(raw) - len(raw.translate(None, _DIGITS)) >= _MIN_CARD_DIGITS:
                text = _CARD.sub(self._masked_card, text)
        for pattern in self._user:
            text = pattern.sub(self.replacement, text)
        return text

    def _mask_pairs(self, text: str) -> str:
        """Mask the value after each ``:`` or ``=`` that follows a secret key."""
        pieces: list[str] = []
        done = 0
        suffixes = self._text_suffixes
        for sep in _SEPARATOR.finditer(text):
            at = sep.start()
            if at < done:  # inside a value masked already
                continue
            key = text[max(0, at - _KEY_WINDOW) : at].lower().rstrip(" \t\"'")
            if not key.endswith(suffixes):
                continue
            m = _VALUE_AFTER.match(text, at + 1)
            if m is None:
                continue
            masked = self._masked_value(m)
            if masked is None:
                continue
            pieces += (text[done : at + 1], masked)
            done = m.end()
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    def _masked_value(self, m: re.Match[str]) -> str | None:
        """The value matched by ``_VALUE_AFTER``, masked; None to leave it as it is."""
        quote, value = ('"', m["dq"]) if m["dq"] is not None else ("'", m["sq"])
        if value is None:
            quote, value = "", m["bare"]
        if not value or value == self.replacement:
            return None
        if not quote and _SCHEME_ONLY.fullmatch(value):
            return None  # "Bearer [REDACTED]": the scheme of a credential masked already
        scheme = _SCHEME_PREFIX.match(value) if quote else None
        kept = scheme[0] if scheme else ""
        return f"{m['head']}{quote}{kept}{self.replacement}{quote}"

    def _masked_tail(self, m: re.Match[str]) -> str:
        if m["val"] == self.replacement:
            return m[0]
        return m["head"] + self.replacement

    def _masked_card(self, m: re.Match[str]) -> str:
        text = m[0]
        return self.replacement if _is_card(text.replace(" ", "").replace("-", "")) else text

    # -- values ----------------------------------------------------------------

    def _is_secret_key(self, key: Any) -> bool:
        if not isinstance(key, str):
            return False
        known = self._secret_keys.get(key)
        if known is None:
            # extra= names repeat from call to call: remember (a bounded number of) them.
            known = _normal_key(key).endswith(self._key_suffixes)
            if len(self._secret_keys) < _SECRET_KEY_CACHE_MAX:
                self._secret_keys[key] = known
        return known

    def redact_value(self, value: Any, _depth: int = 0) -> Any:
        """``value`` with secrets masked: strings redacted, containers copied, others as they are.

        The values of secret keys ([`DEFAULT_KEYS`][logship.redact.DEFAULT_KEYS],
        ``keys``) in dicts are replaced whole, whatever they hold; an ``int``
        that is a card number is replaced. ``value`` itself is never changed.

        Examples:
            >>> import logship
            >>> logship.RedactFilter().redact_value(
            ...     {"user": "ada", "api_key": ["k-1", "k-2"], "notes": ("token=xyz",)}
            ... )
            {'user': 'ada', 'api_key': '[REDACTED]', 'notes': ('token=[REDACTED]',)}
        """
        kind = type(value)
        if kind is str:
            return self.redact(value)
        if kind is int and not 10**12 <= value < 10**19:  # too short or long for a card
            return value
        if value is None or kind is bool or kind is float:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, int):
            if self.cards and 10**12 <= value < 10**19 and _is_card(str(value)):
                return self.replacement
            return value
        if _depth >= _MAX_DEPTH:
            return self.replacement if isinstance(value, (dict, list, tuple)) else value
        if isinstance(value, dict):
            return {
                k: self.replacement if self._is_secret_key(k) else self.redact_value(v, _depth + 1)
                for k, v in list(value.items())
            }
        if isinstance(value, list):
            return [self.redact_value(v, _depth + 1) for v in value]
        if isinstance(value, tuple):
            return tuple(self.redact_value(v, _depth + 1) for v in value)
        return value

    # -- the record --------------------------------------------------------------

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record's message, traceback, stack and ``extra=`` values, in place.

        The message is rendered (``record.getMessage()``), masked and stored
        back as ``record.msg`` with no ``args``; a structlog event dict stays
        a dict, its values masked.

        Returns:
            ``True``, always, since a record is never dropped. When masking
            fails, the message becomes ``replacement`` and a note, and the
            traceback, stack and ``extra=`` fields are removed: nothing
            unmasked gets through.
        """
        try:
            self._redact_record(record)
        except Exception as e:
            # Never raise into the log call, and never let an unmasked record through.
            record.msg = f"{self.replacement} (logship: redaction failed: {type(e).__name__})"
            record.args = ()
            record.exc_info = record.exc_text = record.stack_info = None
            for key in [k for k in vars(record) if k not in STANDARD_RECORD_ATTRS]:
                delattr(record, key)
        return True

    def _redact_record(self, record: logging.LogRecord) -> None:
        msg = record.msg
        if isinstance(msg, dict) and not record.args:
            # structlog's event dict (ProcessorFormatter.wrap_for_formatter):
            # keep it a dict, for ShipHandler to turn into fields.
            record.msg = self._event_dict(msg, record)
        else:
            try:
                text = record.getMessage()
            except Exception as e:
                # Not the arguments, which no key names: masked whole.
                text = unformattable(record, e, self.replacement)
            record.msg = self.redact(text)
            record.args = ()
        ei = record.exc_info
        if ei and ei[0] is not None and not record.exc_text:
            record.exc_text = format_exc_info(ei)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        attrs = record.__dict__
        # Without extra= (the common case), skip even the call.
        if len(attrs) != _INIT_LEN or next(reversed(attrs)) not in INIT_RECORD_ATTRS:
            for key in extra_keys(attrs):
                value = attrs[key]
                kind = type(value)
                # Ids, counts, flags: nothing to mask, unless the key says secret.
                if (
                    (kind is int and value < 10**12) or value is None or kind is bool
                ) and not self._is_secret_key(key):
                    continue
                attrs[key] = self._field(key, value)

    def _field(self, key: str, value: Any) -> Any:
        if self._is_secret_key(key):
            return self.replacement
        try:
            return self.redact_value(value)
        except Exception:  # a container changed under us, a hostile __eq__: mask it all
            return self.replacement

    def _event_dict(self, msg: dict[Any, Any], record: logging.LogRecord) -> dict[Any, Any]:
        out: dict[Any, Any] = self.redact_value(msg)
        flag = msg.get("exc_info")
        if flag is not None and flag is not False:
            # An exception object would be rendered later, on logship's worker,
            # unmasked: render it here. True means the one being handled now.
            del out["exc_info"]
            if not (record.exc_info and record.exc_info[0] is not None):
                text = render_exc_info(sys.exc_info() if flag is True else flag)
                if text is not None and "exception" not in out:
                    out["exception"] = self.redact(text)
        return out
