"""The TLS step of ``logship check``: a handshake, and what is wrong with the certificate.

Uses the :mod:`ssl` module directly. When verification fails the handshake is
repeated without it, only to read the server's certificate and say why
(expired, another host's, an issuer nobody trusts), and once more verifying
the chain alone. The certificate is read by :mod:`logship.cli.certinfo`:
logship's runtime dependencies have no X.509 parser.

Trust follows what the handler would use, through ``requests``: ``ca_file``,
else ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``, else certifi's bundle.
Like urllib3 2, a certificate's common name is never taken for its host name.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
from dataclasses import dataclass
from typing import Any, NamedTuple

from logship.cli.certinfo import CertInfo, host_matches, parse_certificate
from logship.pure.diagnosis import hint, tls_kind
from logship.worker.connections import TLS_VERSIONS, env_ca_bundle

#: Days before expiry from which the step warns.
EXPIRY_WARN_DAYS = 14

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (1.1.0+): verify the chain, ignore the dates.
_NO_CHECK_TIME = 0x200000


class Finding(NamedTuple):
    """A step's outcome: ``PASS``, ``WARN``, ``FAIL`` or ``SKIP``, what was seen, what to do."""

    verdict: str
    detail: str
    fix: str | None = None


# -- handshakes ------------------------------------------------------------------


@dataclass(frozen=True)
class Trust:
    """The CA certificates a handshake is verified against, and how to name them."""

    label: str
    cafile: str | None = None
    capath: str | None = None


def handler_trust(ca_file: str | None) -> Trust:
    """What a handler with this ``ca_file`` trusts, through ``requests``."""
    if ca_file:
        return Trust(f"--ca-file {ca_file}", ca_file)
    bundle = env_ca_bundle()
    if bundle:
        name, path = bundle
        if os.path.isdir(path):
            return Trust(f"{name}={path}", capath=path)
        return Trust(f"{name}={path}", path)
    try:
        import certifi  # requests' own dependency and default bundle
    except ImportError:  # pragma: no cover - requests cannot run without it
        return SYSTEM
    return Trust("requests' default CA bundle (certifi)", certifi.where())


SYSTEM = Trust("this host's system trust store")


def _context(
    trust: Trust | None,
    client_cert: str | None,
    client_key: str | None,
    host_and_time: bool,
    min_version: str,
) -> ssl.SSLContext:
    """A client context; ``trust`` None verifies nothing (only to read the certificate)."""
    if trust is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=trust.cafile, capath=trust.capath)
        ctx.hostname_checks_common_name = False  # as urllib3 2 does
        if not host_and_time:
            ctx.check_hostname = False
            ctx.verify_flags = ssl.VerifyFlags(ctx.verify_flags | _NO_CHECK_TIME)
    ctx.minimum_version = TLS_VERSIONS[min_version]  # as the handler's tls_min_version
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key)
    return ctx


def _handshake(
    ctx: ssl.SSLContext, family: int, sockaddr: Any, host: str, timeout: float
) -> tuple[str, str, bytes]:
    """Connect and shake hands; return the protocol, the cipher and the server's certificate."""
    with socket.socket(family, socket.SOCK_STREAM) as raw:
        raw.settimeout(timeout)
        raw.connect(sockaddr)
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            cipher = tls.cipher()
            der = tls.getpeercert(binary_form=True)
            if not der:
                raise ssl.SSLError("the server sent no certificate")
            return tls.version() or "?", cipher[0] if cipher else "?", der


def _chain_error(
    trust: Trust,
    family: int,
    sockaddr: Any,
    host: str,
    timeout: float,
    cert: tuple[Any, Any],
    min_version: str,
) -> str | None:
    """Why the chain alone (dates and name aside) does not verify; None when it does."""
    ctx = _context(trust, cert[0], cert[1], False, min_version)
    try:
        _handshake(ctx, family, sockaddr, host, timeout)
    except ssl.SSLCertVerificationError as e:
        return str(e.verify_message)
    except (OSError, ssl.SSLError) as e:
        return f"could not tell: {e}"
    return None


def _days(delta: dt.timedelta) -> str:
    days = abs(delta.total_seconds()) / 86400
    return f"{days:.0f} days" if days >= 2 else f"{days * 24:.0f} hours"


_CLIENT_CERT_FIX = (
    "the server may require a client certificate (mutual TLS): pass --client-cert and "
    "--client-key (handler options client_cert, client_key)"
)
_CLIENT_CERT_REFUSED_FIX = (
    "the server refused the client certificate: check that a CA it trusts issued it, "
    "that it has not expired, and that the key matches"
)


def handshake_fix(
    error: str, client_cert: str | None, min_version: str, fallback: str | None = None
) -> str:
    """The fix for a TLS failure that is not about the server's certificate.

    ``fallback`` replaces the generic advice when no known cause matches.
    """
    text = error.lower()
    if tls_kind(text) == "tls-not-tls":
        return hint("tls-not-tls")
    if "certificate required" in text or ("handshake failure" in text and not client_cert):
        return _CLIENT_CERT_REFUSED_FIX if client_cert else _CLIENT_CERT_FIX
    if client_cert and any(a in text for a in ("bad certificate", "unknown ca", "expired")):
        return _CLIENT_CERT_REFUSED_FIX
    if any(
        needle in text
        for needle in ("unsupported protocol", "no protocols available", "protocol version")
    ):
        lower = " (or lower the handler's tls_min_version)" if min_version != "1.2" else ""
        return f"the server offers no TLS version >= {min_version}: upgrade its TLS settings{lower}"
    return fallback or "check the server's TLS settings, and that this port speaks TLS"


def check_tls(
    host: str,
    family: int,
    sockaddr: Any,
    ca_file: str | None,
    client_cert: str | None,
    client_key: str | None,
    timeout: float,
    min_version: str,
) -> Finding:
    """Shake hands with ``sockaddr`` as the handler would, and judge the certificate."""
    trust = handler_trust(ca_file)
    cert_args = (client_cert, client_key)
    try:
        verifying = _context(trust, client_cert, client_key, True, min_version)
        reading = _context(None, client_cert, client_key, True, min_version)
    except (OSError, ssl.SSLError) as e:
        fix = "check --ca-file, --client-cert and --client-key: readable PEM files, a matching key"
        return Finding("FAIL", f"cannot load the TLS files: {e}", fix)
    verify_error: str | None = None
    try:
        version, cipher, der = _handshake(verifying, family, sockaddr, host, timeout)
    except ssl.SSLCertVerificationError as e:
        verify_error = str(e.verify_message)
        try:
            version, cipher, der = _handshake(reading, family, sockaddr, host, timeout)
        except (OSError, ssl.SSLError) as e2:
            return Finding(
                "FAIL",
                f"certificate rejected: {verify_error} ({e2})",
                handshake_fix(str(e2), client_cert, min_version),
            )
    except (OSError, ssl.SSLError) as e:
        fix = handshake_fix(str(e), client_cert, min_version)
        return Finding("FAIL", f"the TLS handshake failed: {e}", fix)

    try:
        cert: CertInfo | None = parse_certificate(der)
    except ValueError:
        cert = None
    problems: list[str] = []
    fixes: list[str] = []
    warn = False
    facts = [f"{version} {cipher}"]
    if cert is not None:
        now = dt.datetime.now(dt.timezone.utc)
        facts.append(f"subject {cert.subject}; issuer {cert.issuer}; SAN {cert.names()}")
        if verify_error is None or host_matches(cert, host):
            facts.append(f"it covers {host}")
        else:
            problems.append(f"the certificate does not cover {host} (SAN {cert.names()})")
            fixes.append(
                f"connect by a name the certificate covers, or reissue it with {host} in its SAN"
            )
        until = f"{cert.not_after:%Y-%m-%d %H:%M} UTC"
        if now < cert.not_before:
            problems.append(f"not valid until {cert.not_before:%Y-%m-%d %H:%M} UTC")
            fixes.append("check this host's clock (NTP), or reissue the certificate")
        elif now > cert.not_after:
            problems.append(f"expired {_days(now - cert.not_after)} ago ({until})")
            fixes.append("renew the server's certificate (or check this host's clock)")
        elif cert.not_after - now < dt.timedelta(days=EXPIRY_WARN_DAYS):
            warn = True
            facts.append(f"expires in {_days(cert.not_after - now)} ({until})")
            fixes.append("renew the server's certificate soon")
        else:
            facts.append(f"valid until {until}, {_days(cert.not_after - now)} left")
    if verify_error is None:
        facts.append(f"chain verified against {trust.label}")
    else:

        def chain_error(against: Trust) -> str | None:
            return _chain_error(against, family, sockaddr, host, timeout, cert_args, min_version)

        chain = chain_error(trust)
        if chain is None:
            facts.append(f"chain verified against {trust.label}")
        else:
            problems.append(f"the chain does not verify against {trust.label}: {chain}")
            issuer = f" ({cert.issuer})" if cert else ""
            if trust is not SYSTEM and ca_file is None and chain_error(SYSTEM) is None:
                system = ssl.get_default_verify_paths().cafile or "the system CA bundle"
                fixes.append(
                    f"this host's system store trusts it, but logship uses {trust.label}: "
                    f"pass --ca-file {system} (handler option ca_file)"
                )
            elif ca_file:
                fixes.append(
                    f"{ca_file} does not hold the CA that issued it{issuer}: add that CA, "
                    "or make the server send its intermediate certificates"
                )
            else:
                fixes.append(
                    f"pass --ca-file with the CA that issued it{issuer} (handler option ca_file),"
                    " or make the server send its intermediate certificates"
                )
        if not problems:  # a reason the reader above does not look at
            problems.append(f"verification failed: {verify_error}")
            fixes.append("check the certificate chain's dates, names and key usage")
    if problems:
        return Finding("FAIL", "; ".join(problems + facts), "; ".join(fixes))
    return Finding("WARN" if warn else "PASS", "; ".join(facts), "; ".join(fixes) or None)
