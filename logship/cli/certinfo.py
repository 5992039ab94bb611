"""A small DER reader for the few X.509 fields ``logship check`` reports.

logship's runtime dependencies have no X.509 parser, and ``ssl`` gives a
certificate's fields only once it has been verified; a certificate that fails
verification is read here, from ``getpeercert(binary_form=True)``: subject,
issuer, validity and subjectAltName. Nothing here is trusted for security;
it only explains what OpenSSL refused.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

_SAN_OID = "2.5.29.17"
_NAME_KEYS = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.5": "serialNumber",
    "1.2.840.113549.1.9.1": "emailAddress",
    "0.9.2342.19200300.100.1.25": "DC",
}
_STRING_CODECS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x16: "ascii",  # IA5String
    0x14: "latin-1",  # T61String, as everyone reads it
    0x1E: "utf-16-be",  # BMPString
    0x1C: "utf-32-be",  # UniversalString
}


@dataclass(frozen=True)
class CertInfo:
    """What the check reports of a certificate."""

    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]

    def names(self) -> str:
        """The subjectAltName entries, as OpenSSL prints them."""
        sans = [f"DNS:{n}" for n in self.dns_names] + [f"IP:{a}" for a in self.ip_addresses]
        return ", ".join(sans) or "none"


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The tag, content start and content end of the element at ``pos``."""
    if pos + 2 > end:
        raise ValueError("truncated DER")
    tag, length = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("a multi-byte DER tag")
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if not 0 < n <= 4 or pos + n > end:
            raise ValueError("a bad DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, s, e = _tlv(data, start, end)
        out.append((tag, s, e))
        start = e
    return out


def _oid(raw: bytes) -> str:
    arcs, value = [], 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise ValueError("an empty OID")
    top = min(arcs[0] // 40, 2)
    return ".".join(map(str, [top, arcs[0] - 40 * top, *arcs[1:]]))


def _time(tag: int, raw: bytes) -> dt.datetime:
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime: two-digit years, 1950-2049 (RFC 5280)
        stamp = dt.datetime.strptime(text, "%y%m%d%H%M%SZ")
        if stamp.year >= 2050:
            stamp = stamp.replace(year=stamp.year - 100)
    elif tag == 0x18:  # GeneralizedTime
        stamp = dt.datetime.strptime(text, "%Y%m%d%H%M%SZ")
    else:
        raise ValueError(f"a time with tag {tag:#x}")
    return stamp.replace(tzinfo=dt.timezone.utc)


def _name(data: bytes, start: int, end: int) -> str:
    parts = []
    for _set, s, e in _children(data, start, end):
        for _seq, s2, e2 in _children(data, s, e):
            (_, os_, oe), (vtag, vs, ve) = _children(data, s2, e2)[:2]
            oid = _oid(data[os_:oe])
            value = data[vs:ve].decode(_STRING_CODECS.get(vtag, "latin-1"), "replace")
            parts.append(f"{_NAME_KEYS.get(oid, oid)}={value}")
    return ", ".join(parts) or "(empty)"


def _sans(data: bytes, start: int, end: int) -> tuple[list[str], list[str]]:
    (_, s, e) = _tlv(data, start, end)  # GeneralNames ::= SEQUENCE OF GeneralName
    dns, ips = [], []
    for tag, gs, ge in _children(data, s, e):
        if tag == 0x82:  # [2] dNSName
            dns.append(data[gs:ge].decode("ascii", "replace"))
        elif tag == 0x87 and ge - gs in (4, 16):  # [7] iPAddress
            ips.append(str(ipaddress.ip_address(data[gs:ge])))
    return dns, ips


def parse_certificate(der: bytes) -> CertInfo:
    """Subject, issuer, validity and subjectAltName of a DER certificate.

    Raises ``ValueError`` for anything it cannot read.
    """
    try:
        _, s, e = _tlv(der, 0, len(der))
        _, s, e = _children(der, s, e)[0]  # tbsCertificate
        fields = _children(der, s, e)
        i = 1 if fields[0][0] == 0xA0 else 0  # [0] version is optional
        # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
        issuer, validity, subject = fields[i + 2], fields[i + 3], fields[i + 4]
        before, after = _children(der, validity[1], validity[2])[:2]
        dns: list[str] = []
        ips: list[str] = []
        for tag, xs, xe in fields[i + 6 :]:
            if tag != 0xA3:  # [3] extensions
                continue
            _, ls, le = _tlv(der, xs, xe)
            for _, es, ee in _children(der, ls, le):
                parts = _children(der, es, ee)
                if _oid(der[parts[0][1] : parts[0][2]]) == _SAN_OID:
                    _, vs, ve = parts[-1]  # extnValue, after an optional critical flag
                    dns, ips = _sans(der, vs, ve)
        return CertInfo(
            subject=_name(der, subject[1], subject[2]),
            issuer=_name(der, issuer[1], issuer[2]),
            not_before=_time(before[0], der[before[1] : before[2]]),
            not_after=_time(after[0], der[after[1] : after[2]]),
            dns_names=tuple(dns),
            ip_addresses=tuple(ips),
        )
    except (IndexError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"unreadable certificate: {e}") from None


def host_matches(cert: CertInfo, host: str) -> bool:
    """Whether the certificate's subjectAltName covers ``host`` (no common-name fallback)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return any(ipaddress.ip_address(a) == ip for a in cert.ip_addresses)
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    host = host.rstrip(".").lower()
    for name in cert.dns_names:
        name = name.rstrip(".").lower()
        if name == host:
            return True
        first, _, rest = host.partition(".")
        if name.startswith("*.") and first and rest == name[2:] and "." in rest:
            return True
    return False
