"""What a failed connection means and what to check, for the handler and ``logship check``.

Pure: error texts in, a short kind and a fix out. The handler's warnings
and ``stats()["last_error_kind"]`` and the command line's report use the
same words, so that what a warning tells an operator to do is what
``logship check`` would tell them too.
"""

from __future__ import annotations

#: Substrings of TLS error texts (lower case) and the kind each means, most specific first.
TLS_CAUSES = (
    # OpenSSL's words for a TLS hello answered by something that is not TLS
    # (an https:// URL pointing at a plain-HTTP port).
    ("wrong version number", "tls-not-tls"),
    ("record layer failure", "tls-not-tls"),
    ("certificate has expired", "tls-expired"),
    ("not yet valid", "tls-expired"),
    ("hostname mismatch", "tls-hostname"),
    ("ip address mismatch", "tls-hostname"),
    ("doesn't match", "tls-hostname"),
    ("unable to get local issuer", "tls-untrusted"),
    ("self-signed certificate", "tls-untrusted"),
    ("self signed certificate", "tls-untrusted"),
    ("certificate verify failed", "tls-untrusted"),
)

#: What to check, for each way a request can fail without an answer.
KIND_HINTS = {
    "tls-not-tls": "the port does not speak TLS: use http://, or the aggregator's TLS port",
    "tls-expired": "the server's certificate has expired or is not yet valid: renew it",
    "tls-untrusted": "the server's certificate is not trusted: set ca_file to its CA bundle",
    "tls-hostname": "the server's certificate does not name this host: check the URL's host",
    "tls": "the TLS handshake failed: check the certificate, ca_file, client_cert and verify",
    "dns": "the host name does not resolve: check the URL's host and DNS",
    "refused": "the connection was refused: is the aggregator listening on that port?",
    "timeout": "the request timed out: the aggregator is slow or unreachable (see timeout)",
    "connection": "the connection failed: check the network path to the aggregator",
    # The forward protocol's (pure.protocols.forward): answers with no HTTP status.
    "no-ack": "the server did not acknowledge the chunk within timeout: it is overloaded "
    "(Fluent Bit closes connections while its input is paused) or dropped the message "
    "(Fluent Bit buffer_max_size, Fluentd chunk_size_limit)",
    "shared-key": "check that token (or token_file) holds the server's shared_key",
    "too-large": "one event is larger than a forward message may be: log smaller events",
    "not-forward": "the server does not speak the forward protocol: check the URL's port",
}

_DNS_NEEDLES = (
    "Name or service not known",
    "NameResolutionError",
    "getaddrinfo failed",
    "Temporary failure in name resolution",
    "No address associated",
)


def tls_kind(text: str) -> str:
    """The kind of a TLS failure from its error text: ``"tls-…"``, or ``"tls"`` when unknown."""
    lowered = text.lower()
    return next((kind for needle, kind in TLS_CAUSES if needle in lowered), "tls")


def connection_kind(text: str) -> str:
    """The kind of a failure to connect that is not about TLS or a time-out, from its text."""
    if any(needle in text for needle in _DNS_NEEDLES):
        return "dns"
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return "refused"
    return "connection"


def hint(kind: str) -> str:
    """What to check for a failure of ``kind``."""
    return KIND_HINTS.get(kind) or KIND_HINTS["connection"]
