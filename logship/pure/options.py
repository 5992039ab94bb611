"""Validated handler options: the one place that knows every option's rules.

Pure: no threads, no network. Reading ``token_file`` and checking that TLS
files exist is the only I/O, and it happens once, at construction, so that a
wrong setting fails loudly in the application's configuration step.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from logship.pure.sealing import Sealer, parse_key

ENCODINGS = ("json", "ndjson", "msgpack")
OVERFLOW_POLICIES = ("spill", "drop_oldest", "drop_newest", "block")
TLS_MIN_VERSIONS = ("1.2", "1.3")

#: Names an event always carries; ``fields`` and ``extra=`` never replace them.
CORE_FIELDS = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "message",
        "hostname",
        "uuid",
        "kernel_version",
        "pid",
        "thread",
        "module",
        "func",
        "line",
        "exception",
        "stack",
    }
)

# Headers logship sets itself: a user value would corrupt the request framing
# or the dedupe contract, so they are refused rather than silently replaced.
_RESERVED_HEADERS = frozenset(
    {"content-type", "content-encoding", "content-length", "idempotency-key", "host"}
)

MiB = 1024 * 1024


@dataclass(frozen=True)
class Options:
    """Every setting of a :class:`~logship.ShipHandler`, checked and filled."""

    url: str = field(repr=False)  # may hold a password: shown redacted, never here
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)
    encoding: str = "json"
    compress: bool = True
    batch_max_records: int = 1000
    batch_max_bytes: int = MiB
    flush_interval: float = 1.0
    capacity: int = 10_000
    capacity_bytes: int = 16 * MiB
    overflow: str = "spill"
    spill: bool = True
    spill_dir: str | None = None
    spill_max_bytes: int = 256 * MiB
    verify: bool = True
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    spill_key: str | None = field(default=None, repr=False)
    tls_min_version: str = "1.2"
    timeout: float = 10.0
    retry_max_backoff: float = 60.0
    shutdown_timeout: float = 5.0


def _check_type(name: str, value: Any, kinds: tuple[type, ...], label: str) -> None:
    # bool is an int subclass; `capacity=True` is a mistake, not a size of 1.
    if isinstance(value, bool) and bool not in kinds:
        raise TypeError(f"logship: option {name!r} must be {label}, not bool")
    if not isinstance(value, kinds):
        raise TypeError(f"logship: option {name!r} must be {label}, not {type(value).__name__}")


def _positive_int(name: str, value: Any) -> int:
    _check_type(name, value, (int,), "an int")
    if value <= 0:
        raise ValueError(f"logship: option {name!r} must be positive, got {value}")
    return int(value)


def _positive_float(name: str, value: Any) -> float:
    _check_type(name, value, (int, float), "a number of seconds")
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"logship: option {name!r} must be a positive number, got {value}")
    return float(value)


def _optional_str(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    _check_type(name, value, (str,), "a string")
    if not value:
        raise ValueError(f"logship: option {name!r} must not be empty")
    return str(value)


def _existing_file(name: str, value: Any) -> str | None:
    path = _optional_str(name, value)
    if path is not None and not os.path.isfile(path):
        raise ValueError(f"logship: option {name!r} names {path!r}, which is not a readable file")
    return path


def check_url(url: Any, name: str = "url") -> str:
    """Return ``url`` if it is an absolute http(s) URL, else raise naming ``name``."""
    if url is None:
        raise ValueError(f"logship: option {name!r} is required (or set LOGSHIP_URL)")
    _check_type(name, url, (str,), "a string")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"logship: option {name!r} must start with http:// or https://: {url!r}")
    if not parts.hostname:
        raise ValueError(f"logship: option {name!r} has no host name: {url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ValueError(f"logship: option {name!r} has an invalid port: {url!r}") from None
    return str(url)


#: RFC 9110 token: the characters a header name may have.
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def shown_name(text: str) -> str:
    """The part of ``text`` that looks like a header name, quoted, "…" when cut.

    For messages about a malformed header: what follows the name-like part
    may be its value, which may be a secret.
    """
    match = HEADER_NAME.match(text)
    head = match.group() if match else ""
    return repr(head + ("…" if head != text else ""))


def check_header_value(value: str, what: str) -> None:
    """Raise ``ValueError`` if ``value`` cannot be sent in an HTTP header.

    ``what`` names it in the message (``"the value of 'X-Key'"``); the value
    itself is never put in the message.
    """
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{what} has a control character (CR, LF or NUL)")
    if value[:1].isspace():
        raise ValueError(f"{what} starts with white space")
    if not value.isascii():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(
                f"{what} has characters an HTTP header cannot carry (Latin-1 only)"
            ) from None


def check_headers(headers: Any, token_given: bool) -> dict[str, str]:
    """Return ``headers`` as a dict if a handler may send them, else raise naming 'headers'.

    ``token_given`` says whether a token (or token file) is configured too.
    Everything the HTTP client would refuse on every request is refused here,
    once, so that a bad header fails at construction instead of holding every
    event back. Messages name the header, never its value (it may be a
    secret). ``logship check --header`` goes through the same rules.
    """
    headers = headers or {}
    _check_type("headers", headers, (Mapping,), "a mapping of header names to values")
    seen: set[str] = set()
    for k, v in headers.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(
                f"logship: option 'headers' must map str to str, got {k!r}: a {type(v).__name__}"
            )
        if not HEADER_NAME.fullmatch(k):
            raise ValueError(
                f"logship: option 'headers': {shown_name(k)} is not a valid header name "
                "(an RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~ only)"
            )
        check_header_value(v, f"logship: option 'headers': the value of {k!r}")
        if k.lower() in seen:
            raise ValueError(f"logship: option 'headers' names {k!r} twice (names ignore case)")
        seen.add(k.lower())
        if k.lower() in _RESERVED_HEADERS:
            raise ValueError(f"logship: option 'headers' may not set {k!r}; logship sets it")
        # The token is sent as Authorization too: one of the two would be lost.
        if k.lower() == "authorization" and token_given:
            raise ValueError("logship: option 'headers' sets Authorization and a token is given")
    return dict(headers)


def read_token_file(path: str) -> str:
    """Return the token stored in ``path``, stripped of surrounding white space."""
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def build_options(kwargs: dict[str, Any], environ: Mapping[str, str] | None = None) -> Options:
    """Validate keyword options, fill gaps from ``LOGSHIP_*`` variables, and freeze them.

    Raises ``TypeError`` or ``ValueError`` naming the offending option.
    """
    env = os.environ if environ is None else environ
    known = set(Options.__dataclass_fields__)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"logship: unknown option(s): {', '.join(unknown)}")

    # An explicit argument always wins over the environment; only unset ones are filled.
    if kwargs.get("url") is None:
        kwargs["url"] = env.get("LOGSHIP_URL") or None
    if kwargs.get("token") is None and kwargs.get("token_file") is None:
        kwargs["token"] = env.get("LOGSHIP_TOKEN") or None
        if kwargs["token"] is None:
            kwargs["token_file"] = env.get("LOGSHIP_TOKEN_FILE") or None
    if kwargs.get("spill_dir") is None:
        kwargs["spill_dir"] = env.get("LOGSHIP_SPILL_DIR") or None
    if kwargs.get("spill_key") is None:
        kwargs["spill_key"] = env.get("LOGSHIP_SPILL_KEY") or None

    o: dict[str, Any] = {"url": check_url(kwargs.pop("url"))}

    token = _optional_str("token", kwargs.pop("token", None))
    if token is not None:
        # A secret mounted as an environment variable often ends in a newline,
        # which no HTTP client will send; a token file is stripped the same way.
        token = token.strip()
        if not token:
            raise ValueError("logship: option 'token' is only white space")
        check_header_value(token, "logship: option 'token'")
    token_file = _existing_file("token_file", kwargs.pop("token_file", None))
    if token is not None and token_file is not None:
        raise ValueError("logship: give either option 'token' or 'token_file', not both")
    if token_file is not None:
        try:
            token_from_file = read_token_file(token_file)
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"logship: option 'token_file' cannot be read: {e}") from None
        if not token_from_file:
            raise ValueError(f"logship: option 'token_file' names an empty file: {token_file!r}")
        what = f"logship: option 'token_file': the token in {token_file!r}"
        check_header_value(token_from_file, what)
    o["token"], o["token_file"] = token, token_file

    o["headers"] = check_headers(kwargs.pop("headers", None), bool(token or token_file))

    fields_ = kwargs.pop("fields", None) or {}
    _check_type("fields", fields_, (Mapping,), "a mapping of field names to values")
    for k in fields_:
        if not isinstance(k, str):
            raise TypeError(f"logship: option 'fields' keys must be strings, got {k!r}")
        if k in CORE_FIELDS:
            raise ValueError(f"logship: option 'fields' may not set the core event field {k!r}")
    o["fields"] = dict(fields_)

    encoding = kwargs.pop("encoding", "json")
    if encoding not in ENCODINGS:
        raise ValueError(f"logship: option 'encoding' must be one of {ENCODINGS}, got {encoding!r}")
    o["encoding"] = encoding

    overflow = kwargs.pop("overflow", "spill")
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(
            f"logship: option 'overflow' must be one of {OVERFLOW_POLICIES}, got {overflow!r}"
        )
    o["overflow"] = overflow

    tls_min = kwargs.pop("tls_min_version", "1.2")
    if tls_min not in TLS_MIN_VERSIONS:
        raise ValueError(
            f"logship: option 'tls_min_version' must be one of {TLS_MIN_VERSIONS}, got {tls_min!r}"
        )
    o["tls_min_version"] = tls_min

    for name in ("compress", "spill", "verify"):
        if name in kwargs:
            _check_type(name, kwargs[name], (bool,), "True or False")
            o[name] = kwargs.pop(name)

    for name in (
        "batch_max_records",
        "batch_max_bytes",
        "capacity",
        "capacity_bytes",
        "spill_max_bytes",
    ):
        if name in kwargs:
            o[name] = _positive_int(name, kwargs.pop(name))

    for name in ("flush_interval", "timeout", "retry_max_backoff", "shutdown_timeout"):
        if name in kwargs:
            o[name] = _positive_float(name, kwargs.pop(name))

    o["spill_dir"] = _optional_str("spill_dir", kwargs.pop("spill_dir", None))
    o["spill_key"] = _optional_str("spill_key", kwargs.pop("spill_key", None))
    if o["spill_key"] is not None:
        Sealer(parse_key(o["spill_key"]))  # a bad key or a missing extra fails now
    o["ca_file"] = _existing_file("ca_file", kwargs.pop("ca_file", None))
    o["client_cert"] = _existing_file("client_cert", kwargs.pop("client_cert", None))
    o["client_key"] = _existing_file("client_key", kwargs.pop("client_key", None))
    if o["client_key"] and not o["client_cert"]:
        raise ValueError("logship: option 'client_key' needs 'client_cert' as well")
    if o["ca_file"] and o.get("verify") is False:
        raise ValueError("logship: option 'ca_file' is given but 'verify' is False")

    leftover = sorted(kwargs)
    if leftover:  # pragma: no cover - every known name is consumed above
        raise TypeError(f"logship: unhandled option(s): {', '.join(leftover)}")
    return Options(**o)
