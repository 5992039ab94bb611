"""Every option of a :class:`~logship.ShipHandler`, defined once.

Each field of :class:`Options` is one option: its name, its type, its
default, and (in its metadata, a :class:`Spec`) the environment variable
that fills it when unset, the check that validates it and the one line that
documents it. :func:`build_options` validates from these alone, and
:func:`options_table` writes the table of ``docs/configuration.md`` from
them (a test keeps the page in step). ``ShipHandler.__init__`` spells the
same options out as keyword-only parameters, so that ``help()``, IDEs and
mypy see them; a test holds its names and defaults to these fields.

Pure: no threads, no network. Reading ``token_file`` and looking at the
files and folders options name is the only I/O, and it happens once, at
construction, so that a wrong setting fails loudly in the application's
configuration step.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import ssl
import types
import typing
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from logship.pure.redact_url import MASK, redact_url
from logship.pure.sealing import Sealer, parse_key

ProtocolName = Literal["http", "forward", "splunk", "elasticsearch", "otlp", "loki"]
BalanceName = Literal["failover", "round_robin"]
EncodingName = Literal["json", "ndjson", "msgpack"]
OverflowPolicy = Literal["spill", "drop_oldest", "drop_newest", "block"]
TlsVersion = Literal["1.2", "1.3"]
Durability = Literal["memory", "crash"]

PROTOCOLS: tuple[str, ...] = typing.get_args(ProtocolName)
ENCODINGS: tuple[str, ...] = typing.get_args(EncodingName)
OVERFLOW_POLICIES: tuple[str, ...] = typing.get_args(OverflowPolicy)
TLS_MIN_VERSIONS: tuple[str, ...] = typing.get_args(TlsVersion)
DURABILITIES: tuple[str, ...] = typing.get_args(Durability)

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

_HTTP_SCHEMES = ("http", "https")
#: The URL schemes each protocol takes (SPEC section 8).
PROTOCOL_SCHEMES: dict[str, tuple[str, ...]] = {
    "http": _HTTP_SCHEMES,
    "forward": ("tcp", "tls", "unix"),
    "splunk": _HTTP_SCHEMES,
    "elasticsearch": _HTTP_SCHEMES,
    "otlp": _HTTP_SCHEMES,
    "loki": _HTTP_SCHEMES,
}
#: What each protocol but "http" sends, whatever ``encoding`` says.
PROTOCOL_BODIES: dict[str, str] = {
    "forward": "msgpack",
    "splunk": "HEC JSON events",
    "elasticsearch": "_bulk NDJSON",
    "otlp": "OTLP/HTTP JSON",
    "loki": "Loki's JSON push",
}
#: The options only some protocols use, and which.
PROTOCOL_OPTIONS: dict[str, tuple[str, ...]] = {
    "tag": ("forward",),
    "index": ("elasticsearch", "splunk"),
    "source": ("splunk",),
    "sourcetype": ("splunk",),
    "labels": ("loki",),
}

#: The largest ``batch_max_bytes`` a protocol takes, where its servers refuse larger
#: batches without saying so. forward: a message, and its entries once decompressed, must
#: fit Fluent Bit's forward buffer_max_size (6,144,000 bytes by default), or the server
#: closes the connection without an ack; 4 MiB leaves room around the entries.
PROTOCOL_MAX_BATCH_BYTES: dict[str, int] = {"forward": 4 * MiB}

Check = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Spec:
    """What an option's field carries besides its name, type and default."""

    doc: str  #: one line for the configuration reference
    check: Check  #: ``check(name, value)`` returns the value to keep, or raises naming ``name``
    env: str | None = None  #: the variable that fills the option when it is unset (None)
    #: ``env`` is not read when one of these options is set: a token given
    #: in code must not be joined by a token file named in the environment.
    unless: tuple[str, ...] = ()
    shown_default: str | None = None  #: the default as the reference shows it
    shown_type: str | None = None  #: the type as the reference shows it (when not the field's)


def _option(
    default: Any,
    doc: str,
    check: Check,
    *,
    env: str | None = None,
    unless: tuple[str, ...] = (),
    shown: str | None = None,
    secret: bool = False,
    shown_type: str | None = None,
) -> Any:
    return dataclasses.field(
        default=default,
        repr=not secret,  # kept out of repr(options), and so of tracebacks and logs
        metadata={"spec": Spec(doc, check, env, unless, shown, shown_type)},
    )


# -- checks: each takes the option's name and value, returns the value to keep --


def _check_type(name: str, value: Any, kinds: tuple[type, ...], label: str) -> None:
    # bool is an int subclass; `capacity=True` is a mistake, not a size of 1.
    if isinstance(value, bool) and bool not in kinds:
        raise TypeError(f"logship: option {name!r} must be {label}, not bool")
    if not isinstance(value, kinds):
        raise TypeError(f"logship: option {name!r} must be {label}, not {type(value).__name__}")


def positive_int(name: str, value: Any) -> int:
    """An int above zero."""
    _check_type(name, value, (int,), "an int")
    if value <= 0:
        raise ValueError(f"logship: option {name!r} must be positive, got {value}")
    return int(value)


def positive_seconds(name: str, value: Any) -> float:
    """A finite number of seconds above zero."""
    _check_type(name, value, (int, float), "a number of seconds")
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"logship: option {name!r} must be a positive number, got {value}")
    return float(value)


def boolean(name: str, value: Any) -> bool:
    """``True`` or ``False``, nothing that merely converts to one."""
    _check_type(name, value, (bool,), "True or False")
    return bool(value)


def _choice(kind: Any) -> Check:
    choices = typing.get_args(kind)

    def check(name: str, value: Any) -> Any:
        if value in choices:
            return value
        if isinstance(value, str) or value is None:
            raise ValueError(f"logship: option {name!r} must be one of {choices}, got {value!r}")
        # tls_min_version=1.2 printed as "got 1.2" beside ('1.2', '1.3') looks
        # like one of them: say what type it has.
        raise ValueError(
            f"logship: option {name!r} must be one of {choices} (a string), "
            f"not {type(value).__name__}: {value!r}"
        )

    return check


def optional_text(name: str, value: Any) -> str | None:
    """A non-empty string (a path-like is turned into one), or None."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    _check_type(name, value, (str,), "a string")
    if not value:
        raise ValueError(f"logship: option {name!r} must not be empty")
    return str(value)


def existing_file(name: str, value: Any) -> str | None:
    """The path of a regular file that exists, or None."""
    path = optional_text(name, value)
    if path is not None and not os.path.isfile(path):
        raise ValueError(f"logship: option {name!r} names {path!r}, which is not a readable file")
    return path


def usable_folder(name: str, value: Any) -> str | None:
    """A folder that exists and this user can write, or can be made; None stays None.

    Nothing is made here (``logship check`` builds options too, and changes
    nothing): the handler makes a missing folder when it is built
    (:func:`make_folder`). But a path under a regular file, or in a folder
    this user cannot write, would otherwise fail only during the first
    outage, when the events it should keep are already being lost.
    """
    path = optional_text(name, value)
    if path is None:
        return None
    probe = os.path.abspath(path)
    while not os.path.isdir(probe):
        if os.path.lexists(probe):
            raise ValueError(
                f"logship: option {name!r} names {path!r}, which cannot be a folder: "
                f"{probe!r} is not one"
            )
        probe = os.path.dirname(probe)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(
            f"logship: option {name!r} names {path!r}: this user cannot write {probe!r}"
        )
    # Without its trailing separators: "link/" names what the link points to,
    # and would get a symbolic link past the check that refuses one.
    return path.rstrip(os.sep) or os.sep


def make_folder(name: str, path: str) -> None:
    """Make ``path`` (mode 0700) when missing; ``ValueError`` naming the option if it cannot."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as e:
        raise ValueError(
            f"logship: option {name!r} names {path!r}, which cannot be made a folder: "
            f"{e.strerror or e}"
        ) from None


def check_url(name: str, url: Any) -> str:
    """``url`` if it is an absolute URL with a host (or a ``unix://`` path), else raise.

    Which schemes the protocol takes is checked with the protocol (see
    :func:`check_scheme`).
    """
    if url is None:
        raise ValueError(f"logship: option {name!r} is required (or set LOGSHIP_URL)")
    _check_type(name, url, (str,), "a string")
    # A URL pasted with a space or read with its newline: dropped, as around a
    # token. Inside a URL white space is a mistake: urlsplit would keep it in
    # the host name, and the HTTP client refuse it only when the worker starts.
    url = url.strip()
    shown_url = redact_url(url)  # an error message is no place for a password
    if bad := sorted({c for c in url if c.isspace() or ord(c) < 32 or ord(c) == 127}):
        shown = " ".join(repr(c) for c in bad)
        raise ValueError(
            f"logship: option {name!r} has white space or a control character ({shown}) "
            f"in it: {shown_url!r}"
        )
    try:
        parts = urllib.parse.urlsplit(url)  # checks an IPv6 address's brackets
        port = parts.port
    except ValueError as e:
        if "port" in str(e).lower():
            raise ValueError(
                f"logship: option {name!r} has an invalid port: {shown_url!r}"
            ) from None
        raise ValueError(f"logship: option {name!r} is not a URL ({e}): {shown_url!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in {s for schemes in PROTOCOL_SCHEMES.values() for s in schemes}:
        raise ValueError(
            f"logship: option {name!r} must start with http://, https://, tcp://, tls:// "
            f"or unix://: {shown_url!r}"
        )
    if scheme == "unix":
        if parts.netloc or not parts.path:
            raise ValueError(
                f"logship: option {name!r}: a unix:// URL names a socket's path, "
                f"as unix:///run/fluent.sock: {shown_url!r}"
            )
        return str(url)
    if not parts.hostname:
        raise ValueError(f"logship: option {name!r} has no host name: {shown_url!r}")
    if scheme in ("tcp", "tls") and port is None:
        raise ValueError(
            f"logship: option {name!r} needs a port ({scheme}://host:24224): {shown_url!r}"
        )
    return str(url)


def check_urls(name: str, value: Any) -> tuple[str, ...]:
    """One URL, several (a list, or ``LOGSHIP_URL``'s comma-separated), as a tuple; each checked."""
    if isinstance(value, str) and "," in value:
        value = [part.strip() for part in value.split(",")]
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"logship: option {name!r} is an empty list")
        urls = tuple(check_url(name, u) for u in value)
        if len({u.lower() for u in urls}) != len(urls):
            raise ValueError(f"logship: option {name!r} names an endpoint twice")
        return urls
    return (check_url(name, value),)


def check_scheme(protocol: str, url: str) -> None:
    """Raise naming the options when ``protocol`` does not take ``url``'s scheme."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    schemes = PROTOCOL_SCHEMES[protocol]
    if scheme not in schemes:
        shown = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(
            f"logship: option 'url' must start with {shown} for protocol {protocol!r}: "
            f"{redact_url(url)!r}"
        )


def url_protocol(url: str) -> ProtocolName | None:
    """The one protocol that takes ``url``'s scheme; None when several do (``https://``)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    takers = [name for name, schemes in PROTOCOL_SCHEMES.items() if scheme in schemes]
    return typing.cast(ProtocolName, takers[0]) if len(takers) == 1 else None


def optional_label_names(name: str, value: Any) -> list[str] | None:
    """A list of field names (strings), or None."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(f"logship: option {name!r} must be a list of field names")
    for item in value:
        _check_type(name, item, (str,), "a list of field names (strings)")
        if not item:
            raise ValueError(f"logship: option {name!r} has an empty field name")
    return list(value)


def check_token(name: str, value: Any) -> str | None:
    """A token that an HTTP header can carry, stripped of surrounding white space."""
    token = optional_text(name, value)
    if token is None:
        return None
    # A secret mounted as an environment variable often ends in a newline,
    # which no HTTP client will send; a token file is stripped the same way.
    token = token.strip()
    if not token:
        raise ValueError(f"logship: option {name!r} is only white space")
    check_header_value(token, f"logship: option {name!r}", tab=False)
    return token


def check_token_file(name: str, value: Any) -> str | None:
    """A readable file holding a token that an HTTP header can carry."""
    path = existing_file(name, value)
    if path is None:
        return None
    try:
        token = read_token_file(path)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"logship: option {name!r} cannot be read: {e}") from None
    if not token:
        raise ValueError(f"logship: option {name!r} names an empty file: {path!r}")
    check_header_value(token, f"logship: option {name!r}: the token in {path!r}", tab=False)
    return path


def check_fields(name: str, value: Any) -> dict[str, Any]:
    """A mapping of string keys that are not core event fields."""
    value = value or {}
    _check_type(name, value, (Mapping,), "a mapping of field names to values")
    for k in value:
        if not isinstance(k, str):
            raise TypeError(f"logship: option {name!r} keys must be strings, got {k!r}")
        if k in CORE_FIELDS:
            raise ValueError(f"logship: option {name!r} may not set the core event field {k!r}")
    return dict(value)


def check_spill_key(name: str, value: Any) -> str | None:
    """A 32-byte key, with the ``encrypt`` extra installed to use it."""
    key = optional_text(name, value)
    if key is not None:
        Sealer(parse_key(key))  # a bad key or a missing extra fails now
    return key


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


def check_header_value(value: str, what: str, tab: bool = True) -> None:
    """Raise ``ValueError`` if ``value`` cannot be sent in an HTTP header.

    ``what`` names it in the message (``"the value of 'X-Key'"``); the value
    itself is never put in the message. ``tab``: whether a tab may be in it
    (a header's value may hold one; a token may not).
    """
    # RFC 9110's field-value: visible characters, space and HTAB, and
    # obs-text; CR, LF and NUL would even split or cut the request.
    if any((c < " " and not (tab and c == "\t")) or c == "\x7f" for c in value):
        raise ValueError(f"{what} has a control character")
    if value[:1].isspace():
        raise ValueError(f"{what} starts with white space")
    if not value.isascii():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(
                f"{what} has characters an HTTP header cannot carry (Latin-1 only)"
            ) from None


class Headers(dict[str, str]):
    """The ``headers`` option: a dict whose ``repr`` shows each name, never a value.

    Any value may be a credential (``X-API-Key``, ``Authorization``), and
    ``repr(handler.options)``, a traceback's locals or a debugger show the
    option by its ``repr``. Sent as given: only showing it masks.
    """

    def __repr__(self) -> str:
        return repr(dict.fromkeys(self, MASK))


def check_headers(name: str, headers: Any) -> Headers:
    """Return ``headers`` as a dict if a handler may send them, else raise naming ``name``.

    Everything the HTTP client would refuse on every request is refused here,
    once, so that a bad header fails at construction instead of holding every
    event back. Messages name the header, never its value (it may be a
    secret). ``logship check --header`` goes through the same rules.
    """
    headers = headers or {}
    _check_type(name, headers, (Mapping,), "a mapping of header names to values")
    seen: set[str] = set()
    for k, v in headers.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(
                f"logship: option {name!r} must map str to str, got {k!r}: a {type(v).__name__}"
            )
        if not HEADER_NAME.fullmatch(k):
            raise ValueError(
                f"logship: option {name!r}: {shown_name(k)} is not a valid header name "
                "(an RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~ only)"
            )
        check_header_value(v, f"logship: option {name!r}: the value of {k!r}")
        if k.lower() in seen:
            raise ValueError(f"logship: option {name!r} names {k!r} twice (names ignore case)")
        seen.add(k.lower())
        if k.lower() in _RESERVED_HEADERS:
            raise ValueError(f"logship: option {name!r} may not set {k!r}; logship sets it")
    return Headers(headers)


def read_token_file(path: str) -> str:
    """Return the token stored in ``path``, stripped of surrounding white space."""
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


# -- the options ----------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """Every setting of a :class:`~logship.ShipHandler`, checked and filled.

    The fields are the options, in the order the reference lists them; see
    the module docstring.
    """

    url: tuple[str, ...] = _option(
        None,
        "the endpoint, or a list of them (`LOGSHIP_URL`: comma-separated): `http(s)://`; "
        "`forward`: `tcp://`, `tls://` or `unix://`",
        check_urls,
        env="LOGSHIP_URL",
        shown="none",
        shown_type="`str` or `list[str]`",
        secret=True,  # it may hold a password: shown redacted, never in repr(options)
    )
    balance: BalanceName = _option(
        "failover",
        "with several endpoints: `failover` (the first that answers) or `round_robin`",
        _choice(BalanceName),
    )
    protocol: ProtocolName = _option(
        "http",
        "what goes on the wire: the aggregator's own protocol ([protocols](protocols.md))",
        _choice(ProtocolName),
    )
    token: str | None = _option(
        None,
        "sent as `Authorization: Bearer …` (as the protocol sends a token); never shown "
        "in `repr`, warnings or `stats()`",
        check_token,
        env="LOGSHIP_TOKEN",
        unless=("token_file",),
        secret=True,
    )
    token_file: str | None = _option(
        None,
        "a file holding the token; re-read when it changes (rotated secrets)",
        check_token_file,
        env="LOGSHIP_TOKEN_FILE",
        unless=("token",),
    )
    headers: Mapping[str, str] = _option(
        None,
        "extra HTTP headers; `repr(handler.options)` shows their names, never their values",
        check_headers,
    )
    fields: Mapping[str, Any] = _option(None, "static fields added to every event", check_fields)
    encoding: EncodingName = _option(
        "json", "what a request body holds (see below)", _choice(EncodingName)
    )
    compress: bool = _option(
        True,
        "gzip request bodies (`Content-Encoding: gzip`; `forward`: CompressedPackedForward)",
        boolean,
    )
    batch_max_records: int = _option(
        1000, "a batch is sent when it holds this many events…", positive_int
    )
    batch_max_bytes: int = _option(
        MiB,
        "…or this many encoded, uncompressed bytes (a larger event goes alone; "
        "`forward`: at most 4 MiB)…",
        positive_int,
        shown="1 MiB",
    )
    flush_interval: float = _option(
        1.0, "…or when its first event is this many seconds old", positive_seconds
    )
    capacity: int = _option(10_000, "ring bound in events", positive_int)
    capacity_bytes: int = _option(
        16 * MiB,
        "ring bound in characters of message, exception and stack text",
        positive_int,
        shown="16 MiB",
    )
    overflow: OverflowPolicy = _option("spill", "what a full ring does", _choice(OverflowPolicy))
    spill: bool = _option(True, "`False` turns the file-backed spill off", boolean)
    spill_dir: str | None = _option(
        None,
        "where spilled events and dead letters go: a folder of this user, not a link",
        usable_folder,
        env="LOGSHIP_SPILL_DIR",
        shown='a per-endpoint folder under `platformdirs.user_cache_dir("logship")`',
    )
    spill_max_bytes: int = _option(
        256 * MiB,
        "cap on the spill files (dead letters have their own: a quarter of it)",
        positive_int,
        shown="256 MiB",
    )
    spill_key: str | None = _option(
        None,
        "encrypt spill and dead-letter frames (AES-256-GCM): 32 bytes as 64 hex "
        "digits or base64; needs the `encrypt` extra",
        check_spill_key,
        env="LOGSHIP_SPILL_KEY",
        secret=True,
    )
    durability: Durability = _option(
        "memory",
        'what a process that is killed keeps: `"crash"` writes every event to a memory-mapped '
        "file of the spill folder before the log call returns ([the spill](spill.md#durability))",
        _choice(Durability),
    )
    verify: bool = _option(True, "verify the server's TLS certificate", boolean)
    ca_file: str | None = _option(None, "CA bundle to verify the server against", existing_file)
    client_cert: str | None = _option(
        None, "client certificate for mutual TLS (PEM)", existing_file
    )
    client_key: str | None = _option(
        None, "the client certificate's private key (PEM)", existing_file
    )
    tls_min_version: TlsVersion = _option(
        "1.2", "the oldest TLS version accepted", _choice(TlsVersion)
    )
    timeout: float = _option(
        10.0,
        "seconds for one request: to connect, for the whole TLS handshake, and for the whole "
        "answer, however slowly it comes",
        positive_seconds,
    )
    retry_max_backoff: float = _option(
        60.0, "ceiling of the exponential back-off, in seconds", positive_seconds
    )
    shutdown_timeout: float = _option(
        5.0, "how long `flush()` and `close()` may take together at exit", positive_seconds
    )
    trace_context: bool = _option(
        True,
        "add `trace_id` and `span_id` of OpenTelemetry's current span, when one is recording",
        boolean,
    )
    tag: str | None = _option(
        None, "`forward` only: the tag of every record (default `logship`)", optional_text
    )
    index: str | None = _option(
        None,
        "`elasticsearch`: the index or data stream (default `logs-logship-default`); "
        "`splunk`: the index (default: the token's)",
        optional_text,
    )
    source: str | None = _option(
        None, "`splunk` only: the events' `source` (default: the logger's name)", optional_text
    )
    sourcetype: str | None = _option(
        None, "`splunk` only: the events' `sourcetype` (default `_json`)", optional_text
    )
    labels: list[str] | None = _option(
        None,
        "`loki` only: the event fields that become stream labels "
        "(default: `level` and the keys of `fields`)",
        optional_label_names,
    )


def primary_url(o: Options) -> str:
    """The first endpoint: what names the handler in warnings and its spill folder."""
    return o.url[0]


#: The option fields, in order.
FIELDS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(Options)
#: Every option's name.
OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)


def spec_of(f: dataclasses.Field[Any]) -> Spec:
    """The :class:`Spec` of an option's field."""
    spec: Spec = f.metadata["spec"]
    return spec


def check_names(names: Iterable[str]) -> None:
    """Raise ``TypeError`` for a name that is no option, suggesting the nearest one."""
    unknown = sorted(set(names) - set(OPTION_NAMES))
    if not unknown:
        return
    parts = []
    for name in unknown:
        near = difflib.get_close_matches(name, OPTION_NAMES, n=1)
        parts.append(f"{name!r} (did you mean {near[0]!r}?)" if near else repr(name))
    raise TypeError(f"logship: unknown option(s): {', '.join(parts)}")


def _refuse_password() -> bytes:
    # OpenSSL calls this instead of asking on the terminal for a key's password.
    raise ValueError("the key is encrypted")


def load_client_pair(ctx: ssl.SSLContext, cert: str, key: str | None) -> None:
    """Load a client certificate (and key) into ``ctx``, never prompting for a password.

    Raises ``ValueError`` for an encrypted key, ``ssl.SSLError`` or ``OSError``
    for files that are not a matching PEM pair.
    """
    ctx.load_cert_chain(cert, key, password=_refuse_password)


def _check_client_pair(cert: str, key: str | None) -> None:
    """Load the pair once, at construction, so that a wrong one fails here, naming the option."""
    named = "'client_key'" if key else "'client_cert' (which holds the key)"
    try:
        load_client_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cert, key)
    except ValueError:
        raise ValueError(
            f"logship: option {named} names an encrypted private key: logship cannot ask "
            "for its password; give an unencrypted key (readable by this user only)"
        ) from None
    except (ssl.SSLError, OSError) as e:
        reason = getattr(e, "reason", None) or e.strerror or str(e)
        raise ValueError(
            f"logship: options 'client_cert' and 'client_key' cannot be loaded as a "
            f"certificate and its key: {reason}"
        ) from None


def _cross_check(o: Options) -> None:
    """The rules that tie two options together."""
    if o.token is not None and o.token_file is not None:
        raise ValueError("logship: give either option 'token' or 'token_file', not both")
    if (o.token or o.token_file) and any(k.lower() == "authorization" for k in o.headers):
        # The token is sent as Authorization too: one of the two would be lost.
        raise ValueError("logship: option 'headers' sets Authorization and a token is given")
    if o.client_key and not o.client_cert:
        raise ValueError("logship: option 'client_key' needs 'client_cert' as well")
    if o.client_cert:
        _check_client_pair(o.client_cert, o.client_key)
    if o.ca_file and not o.verify:
        raise ValueError("logship: option 'ca_file' is given but 'verify' is False")
    for url in o.url:
        check_scheme(o.protocol, url)
    if o.balance != "failover" and len(o.url) == 1:
        raise ValueError("logship: option 'balance' needs several endpoints in 'url'")
    most = PROTOCOL_MAX_BATCH_BYTES.get(o.protocol)
    if most is not None and o.batch_max_bytes > most:
        raise ValueError(
            f"logship: option 'batch_max_bytes' is {o.batch_max_bytes}; protocol "
            f"{o.protocol!r} takes at most {most} (its servers' message limit)"
        )
    if o.headers and "http" not in PROTOCOL_SCHEMES[o.protocol]:  # a stream: no HTTP request
        raise ValueError(f"logship: protocol {o.protocol!r} takes no option 'headers'")
    if o.encoding != "json" and o.protocol in PROTOCOL_BODIES:
        # Only "http" bodies follow the option; another protocol would ignore it.
        raise ValueError(
            f"logship: protocol {o.protocol!r} takes no option 'encoding' "
            f"(it sends {PROTOCOL_BODIES[o.protocol]})"
        )
    if o.durability == "crash" and not o.spill:
        raise ValueError(
            "logship: option 'durability' is 'crash', which keeps events in the spill folder: "
            "it needs 'spill' True"
        )
    if o.durability == "crash" and o.spill_key:
        # The region is written inside the log call: sealing every event there would
        # cost the caller more than the rest of the call together.
        raise ValueError(
            "logship: option 'durability' is 'crash', which writes events to the spill folder "
            "unencrypted: it cannot be combined with 'spill_key'"
        )
    wrong = [
        name
        for name, protocols in PROTOCOL_OPTIONS.items()
        if getattr(o, name) is not None and o.protocol not in protocols
    ]
    if wrong:
        uses = "; ".join(
            f"{n!r} (it is for protocol {' or '.join(map(repr, PROTOCOL_OPTIONS[n]))})"
            for n in wrong
        )
        raise ValueError(f"logship: protocol {o.protocol!r} takes no option {uses}")
    if o.protocol == "elasticsearch" and o.index is not None:
        check_index_name("index", o.index)


#: What Elasticsearch and OpenSearch refuse in an index or data stream name.
_INDEX_FORBIDDEN = frozenset('\\/*?"<>|,#: ')


def check_index_name(name: str, index: str) -> None:
    """Raise naming the option when Elasticsearch would refuse ``index`` as an index name.

    Otherwise every event would come back refused, one dead letter after another.
    """
    problem = None
    if index != index.lower():
        problem = "it must be lowercase"
    elif bad := sorted(_INDEX_FORBIDDEN.intersection(index)):
        problem = f"it must not hold {' '.join(repr(c) for c in bad)}"
    elif index[0] in "-_+" or index in (".", ".."):
        problem = "it must not start with '-', '_' or '+', nor be '.' or '..'"
    elif len(index.encode("utf-8")) > 255:
        problem = "it must not be longer than 255 bytes"
    if problem:
        raise ValueError(f"logship: option {name!r} is {index!r}, not an index name: {problem}")


def build_options(kwargs: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Options:
    """Validate keyword options, fill unset ones from ``LOGSHIP_*`` variables, and freeze them.

    A name missing from ``kwargs`` takes its default. Raises ``TypeError``
    or ``ValueError`` naming the offending option.
    """
    check_names(kwargs)
    env = os.environ if environ is None else environ
    given = {f.name: kwargs.get(f.name, f.default) for f in FIELDS}
    # An explicit argument always wins over the environment; only unset ones are filled.
    from_env: dict[str, str] = {}
    for f in FIELDS:
        spec = spec_of(f)
        if spec.env and given[f.name] is None and all(given[u] is None for u in spec.unless):
            given[f.name] = env.get(spec.env) or None
            if spec.env in env:
                from_env[f.name] = spec.env
    values = {}
    for f in FIELDS:
        try:
            values[f.name] = spec_of(f).check(f.name, given[f.name])
        except (TypeError, ValueError) as e:
            if f.name not in from_env:
                raise
            # The value is the environment's: say so, or the option seems never given.
            variable = from_env[f.name]
            said = f"{variable} is set, but empty" if given[f.name] is None else f"from {variable}"
            raise type(e)(f"{e} ({said})") from None
    options = Options(**values)
    _cross_check(options)
    return options


# -- the reference ----------------------------------------------------------------


def _type_text(kind: Any) -> str:
    # No "|" in the text: it would split a Markdown table's cell. An option
    # that may be None says so by its default ("none", or its variable).
    if typing.get_origin(kind) is Literal:
        return ", ".join(f'`"{v}"`' for v in typing.get_args(kind))
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
        kind = args[0]
    # Python 3.10 takes a parametrised alias (Mapping[str, str]) for a type:
    # its __name__ would drop the parameters.
    plain_class = isinstance(kind, type) and not typing.get_args(kind)
    text = kind.__name__ if plain_class else str(kind)
    return f"`{text.replace('typing.', '').replace('collections.abc.', '')}`"


def _default_text(f: dataclasses.Field[Any]) -> str:
    spec = spec_of(f)
    shown = spec.shown_default or (
        "none" if f.default is None else f"`{f.default!r}`".replace("'", '"')
    )
    return (
        f"`{spec.env}`, else {shown}"
        if spec.env and shown != "none"
        else (f"`{spec.env}`" if spec.env else shown)
    )


def options_table() -> str:
    """The options as the Markdown table of ``docs/configuration.md``."""
    hints = typing.get_type_hints(Options)
    rows = ["| option | type | default | meaning |", "| --- | --- | --- | --- |"]
    for f in FIELDS:
        doc = spec_of(f).doc
        kind = spec_of(f).shown_type or _type_text(hints[f.name])
        rows.append(f"| `{f.name}` | {kind} | {_default_text(f)} | {doc} |")
    return "\n".join(rows) + "\n"
