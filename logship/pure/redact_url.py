"""Secrets out of URLs and texts before they are shown or stored. Pure: strings only.

Every URL logship displays or writes down (``repr(handler)``, warnings,
``stats()``, spill and dead-letter file headers, ``logship spill status``,
``logship check``) goes through :func:`redact_url`; every text a server or
an HTTP library produced (an error, an answer body, a ``Location``) goes
through :func:`scrub` with the handler's secrets first: every secret it
sends, in every form it sends it (:func:`url_secrets`, :func:`header_secrets`,
:func:`token_secrets`, :func:`login_secrets`).

A URL's secrets are the password of its userinfo (the whole userinfo when it
has no password: ``https://TOKEN@host`` carries a token as the user name),
and the values of query and fragment parameters whose names look secret
(:data:`SECRET_NAME_PARTS`). A secret in the path cannot be told from a path:
give it as ``token`` or ``headers`` instead.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Iterable, Mapping

__all__ = [
    "MASK",
    "SECRET_NAME_PARTS",
    "basic_credentials",
    "header_secrets",
    "login_secrets",
    "normalize_url",
    "redact_url",
    "scrub",
    "token_secrets",
    "url_secrets",
]

MASK = "***"

#: A parameter is secret when its name, lowercased and without ``_`` and
#: ``-``, contains one of these (``api_key``, ``X-Amz-Signature``, ``oauth_token``,
#: ``sessionid``, ``passwd``...). A harmless name that matches is masked too.
SECRET_NAME_PARTS = (
    "key",
    "token",
    "secret",
    "pass",
    "pwd",
    "sig",
    "auth",
    "credential",
    "session",
    "cookie",
    "jwt",
    "private",
)

#: Texts are searched for secrets of at least this many characters: a shorter
#: one would mask unrelated text (a secret "1" in every address), and it is
#: masked wherever a URL is shown all the same.
MIN_SCRUBBED = 4

# RFC 3986, appendix B: splits any string into the five parts, never fails.
_URI = re.compile(
    r"^(?:(?P<scheme>[^:/?#]+):)?(?://(?P<netloc>[^/?#]*))?(?P<path>[^?#]*)"
    r"(?:\?(?P<query>[^#]*))?(?:#(?P<fragment>.*))?$",
    re.DOTALL,
)
_PAIR_SEPARATOR = re.compile(r"([&;])")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _secret_name(name: str) -> bool:
    plain = urllib.parse.unquote(name).lower().replace("_", "").replace("-", "")
    return any(part in plain for part in SECRET_NAME_PARTS)


def _secret_values(params: str) -> list[str]:
    """The values of the secret-named ``name=value`` pairs of a query or fragment."""
    values = []
    for pair in _PAIR_SEPARATOR.split(params):
        name, eq, value = pair.partition("=")
        if eq and value and _secret_name(name):
            values.append(value)
    return values


def _mask_params(params: str) -> str:
    out = []
    for pair in _PAIR_SEPARATOR.split(params):
        name, eq, value = pair.partition("=")
        out.append(f"{name}={MASK}" if eq and value and _secret_name(name) else pair)
    return "".join(out)


def _split_userinfo(netloc: str) -> tuple[str | None, str]:
    """``(userinfo or None, host[:port])``; the last ``@`` ends the userinfo."""
    userinfo, at, hostport = netloc.rpartition("@")
    return (userinfo if at else None), hostport


def _join(m: re.Match[str], netloc: str | None, query: str | None, fragment: str | None) -> str:
    out = f"{m['scheme']}:" if m["scheme"] is not None else ""
    if netloc is not None:
        out += "//" + netloc
    out += m["path"]
    if query is not None:
        out += "?" + query
    if fragment is not None:
        out += "#" + fragment
    return out


def redact_url(url: str) -> str:
    """``url`` with its password and secret parameter values replaced by ``***``.

    Everything else is kept as written. Never raises: a string that is not
    a URL is treated as one all the same, so nothing secret-looking in it
    is shown.
    """
    m = _URI.match(url)
    if m is None:  # pragma: no cover - the expression matches every string
        return MASK
    netloc = m["netloc"]
    if netloc is not None:
        userinfo, hostport = _split_userinfo(netloc)
        if userinfo is not None:
            user, colon, _password = userinfo.partition(":")
            netloc = f"{user}:{MASK}@{hostport}" if colon else f"{MASK}@{hostport}"
    query = None if m["query"] is None else _mask_params(m["query"])
    fragment = None if m["fragment"] is None else _mask_params(m["fragment"])
    return _join(m, netloc, query, fragment)


def url_secrets(url: str, mask: str = MASK) -> list[tuple[str, str]]:
    """``(secret, mask)`` for every secret of ``url``, as written and percent-decoded.

    For :func:`scrub`: an error or an answer may quote the URL either way.
    """
    m = _URI.match(url)
    if m is None:  # pragma: no cover - the expression matches every string
        return []
    found: list[str] = []
    userinfo, _hostport = _split_userinfo(m["netloc"] or "")
    if userinfo:
        user, colon, password = userinfo.partition(":")
        found.append(password if colon else user)
    for params in (m["query"], m["fragment"]):
        found += _secret_values(params or "")
    forms = {
        form
        for value in found
        for form in (value, urllib.parse.unquote(value), urllib.parse.unquote_plus(value))
        if form and form != mask
    }
    return [(form, mask) for form in forms]


def header_secrets(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(value, "[header NAME]")`` for every header given: any of them may carry a credential.

    Which header holds a secret cannot be told from its name (``X-API-Key``,
    ``DD-API-KEY``, ``X-Scope-OrgID``, a vendor's own), so every value is
    treated as one; a harmless value is then masked in what a server says
    back, which costs only that text.
    """
    return [(value, f"[header {name}]") for name, value in headers.items() if value]


def token_secrets(token: str | None, scheme: str = "") -> list[tuple[str, str]]:
    """The token, and the ``Authorization`` value it is sent as (``Bearer TOKEN``).

    The whole value is searched for too: a token shorter than
    :data:`MIN_SCRUBBED` is not searched for alone, but a server that echoes
    the header still shows it with its scheme.
    """
    if not token:
        return []
    pairs = [(token, "[token]")]
    if scheme:
        pairs.append((f"{scheme} {token}", f"{scheme} [token]"))
    return pairs


def login_secrets(user: str, password: str) -> list[tuple[str, str]]:
    """A login sent as ``Authorization: Basic …``: the password, and the encoded pair.

    ``base64(user:password)`` shows neither as written, so searching for the
    password alone would miss a server that echoes the header. The user is
    not secret (URLs show it), except when it is all there is: then it is
    the token (``https://TOKEN@host``).
    """
    if not (user or password):
        return []
    pairs = [(password or user, MASK)]
    try:
        pairs.append((basic_credentials(user, password), "[login]"))
    except UnicodeEncodeError:
        pass  # never sent: the HTTP client refuses such a login
    return pairs


def basic_credentials(user: str, password: str) -> str:
    """``base64(user:password)``, as ``Authorization: Basic`` carries it (Latin-1, as requests).

    Raises ``UnicodeEncodeError`` for a login Latin-1 cannot write.
    """
    return base64.b64encode(f"{user}:{password}".encode("latin-1")).decode("ascii")


def scrub(text: str, secrets: Iterable[tuple[str, str]]) -> str:
    """``text`` with each secret (as written, or escaped as ``repr`` would) replaced by its mask.

    The longest first, so that a secret holding another is masked whole.
    Secrets shorter than :data:`MIN_SCRUBBED` characters are left alone.
    """
    pairs = []
    for secret, mask in secrets:
        if len(secret) >= MIN_SCRUBBED:
            pairs.append((secret, mask))
            escaped = repr(secret)[1:-1]
            if escaped != secret:
                pairs.append((escaped, mask))
    for secret, mask in sorted(pairs, key=lambda pair: len(pair[0]), reverse=True):
        text = text.replace(secret, mask)
    return text


def normalize_url(url: str) -> str:
    """``url`` as one endpoint is written whatever its spelling: the scheme and host in
    lower case, without the scheme's default port. The rest is kept as written."""
    m = _URI.match(url)
    if m is None or m["netloc"] is None:
        return url
    scheme = (m["scheme"] or "").lower()
    userinfo, hostport = _split_userinfo(m["netloc"])
    if hostport.startswith("["):  # an IPv6 literal: the port follows the bracket
        host, _bracket, rest = hostport.partition("]")
        host, port = host + "]", rest[1:] if rest.startswith(":") else ""
    else:
        host, _colon, port = hostport.partition(":")
    netloc = host.lower()
    if port and port != _DEFAULT_PORTS.get(scheme):
        netloc += ":" + port
    if userinfo is not None:
        netloc = f"{userinfo}@{netloc}"
    out = f"{scheme}://{netloc}{m['path']}"
    if m["query"] is not None:
        out += "?" + m["query"]
    if m["fragment"] is not None:
        out += "#" + m["fragment"]
    return out
