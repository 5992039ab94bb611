"""``logship check URL [URL ...]``: are these endpoints ready to take logship's events, and
if not, why.

Six steps, in order, one line each with its time and verdict: DNS, TCP to
every address, TLS (:mod:`logship.cli.tlsinfo`), a test POST of one event
made and sent exactly as a handler would, the clock skew against the
server's ``Date`` header (both in :mod:`logship.cli.checkhttp`), and whether
the spill folder a handler would use is one it may use. A step whose
prerequisite failed is skipped. Every WARN or FAIL line ends with the fix to
try. Several URLs (a handler's ``url`` list) are checked in turn, each with
the first five steps, then the spill folder they share, then a line per
endpoint with the verdict of each step. Exit status: 0 when nothing failed,
1 when something did (any endpoint), 2 for a usage error. The token, the
values of ``--header`` and the URLs' secrets are never printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

from logship.cli.checkelastic import check_bulk
from logship.cli.checkforward import check_forward, check_unix
from logship.cli.checkhttp import check_clock, check_post
from logship.cli.checkloki import check_loki
from logship.cli.checkotlp import check_otlp
from logship.cli.checksplunk import check_splunk
from logship.cli.tlsinfo import Finding, check_tls
from logship.pure.options import (
    ENCODINGS,
    PROTOCOLS,
    TLS_MIN_VERSIONS,
    Options,
    build_options,
    read_token_file,
    shown_name,
)
from logship.pure.printable import printable
from logship.pure.protocols.registry import protocol_named
from logship.pure.redact_url import redact_url, scrub, token_secrets
from logship.worker.spill.folder import default_spill_dir
from logship.worker.spill.safefiles import folder_problem
from logship.worker.transport import request_secrets


@dataclass
class Step:
    """One line of the report."""

    name: str
    verdict: str  # PASS, WARN, FAIL or SKIP
    ms: float
    detail: str
    fix: str | None = None


def add_parser(subparsers: Any) -> None:
    """Register ``check``."""
    p = subparsers.add_parser(
        "check",
        help="check DNS, TCP, TLS, a test POST and clock skew against endpoints",
        description="Check that each URL can take logship's events, and say what to fix.",
    )
    p.add_argument(
        "url",
        metavar="URL",
        nargs="+",
        help="the endpoint, or each of several, as given to ShipHandler(url=...)",
    )
    token = p.add_mutually_exclusive_group()
    token.add_argument(
        "--token", help="the token, sent as the protocol sends it (default: LOGSHIP_TOKEN)"
    )
    token.add_argument("--token-file", help="file holding the token (default: LOGSHIP_TOKEN_FILE)")
    p.add_argument(
        "--header",
        dest="headers",
        metavar="'NAME: VALUE'",
        type=parse_header,
        action=_AddHeader,
        help="an extra HTTP header, as the handler's headers option sends it (repeatable; "
        "the value is never printed)",
    )
    p.add_argument("--ca-file", help="CA certificates to verify the server with (PEM)")
    p.add_argument("--client-cert", help="client certificate for mutual TLS (PEM)")
    p.add_argument("--client-key", help="the client certificate's private key (PEM)")
    p.add_argument(
        "--tls-min-version",
        choices=TLS_MIN_VERSIONS,
        default="1.2",
        help="the oldest TLS version to accept, as the handler's tls_min_version (default 1.2)",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per step (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument("--encoding", choices=ENCODINGS, default="json", help="default: json")
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="http",
        help="the handler's protocol: what the test record is sent as (default: http)",
    )
    p.add_argument(
        "--index", help="the handler's index option (elasticsearch: where the test record goes)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run every step and report; 0 when nothing failed, 1 when something did, 2 for bad options."""
    try:
        opts = build_options(
            {
                "url": args.url,
                "token": args.token,
                "token_file": args.token_file,
                "headers": args.headers,
                "ca_file": args.ca_file,
                "client_cert": args.client_cert,
                "client_key": args.client_key,
                "tls_min_version": args.tls_min_version,
                "timeout": args.timeout,
                "encoding": args.encoding,
                "protocol": args.protocol,
                "index": args.index,
                "spill": False,
            }
        )
    except (TypeError, ValueError) as e:
        print(f"logship check: error: {str(e).removeprefix('logship: ')}", file=sys.stderr)
        return 2
    hide = hider(opts)
    shown = [hide(redact_url(u)) for u in opts.url]
    several = len(shown) > 1
    token_from = token_source(args, opts)

    def report(step: Step) -> Step:
        step.detail = hide(step.detail)
        step.fix = hide(step.fix) if step.fix else None
        if not args.json:
            print(render(step), flush=True)
        return step

    if not args.json:
        print(f"logship check {' '.join(shown)}", flush=True)
    endpoints: list[list[Step]] = []
    for n, url in enumerate(opts.url):
        if several and not args.json:
            print(f"endpoint {n + 1} of {len(shown)}: {shown[n]}", flush=True)
        # Each endpoint as a handler with only that one would send to it.
        alone = dataclasses.replace(opts, url=(url,))
        endpoints.append([report(step) for step in endpoint_checks(alone, token_from)])
    if several and not args.json:
        print("the spill folder, the handler's for every endpoint:", flush=True)
    spill = report(spill_step(opts))
    steps = [step for checked in endpoints for step in checked] + [spill]
    ok = passed(steps)
    if args.json:
        if several:
            views = [
                {"url": url, "ok": passed(checked), "steps": [asdict(s) for s in checked]}
                for url, checked in zip(shown, endpoints, strict=True)
            ]
            out = {"ok": ok, "endpoints": views, "steps": [asdict(spill)]}
        else:
            out = {"url": shown[0], "ok": ok, "steps": [asdict(s) for s in steps]}
        print(json.dumps(out, indent=2))
        return 0 if ok else 1
    if several:
        print("endpoints:")
        for url, checked in zip(shown, endpoints, strict=True):
            print(endpoint_line(url, checked, max(map(len, shown))))
    print(summary(steps, [passed(checked) for checked in endpoints]))
    return 0 if ok else 1


def passed(steps: list[Step]) -> bool:
    """Whether none of ``steps`` failed."""
    return not any(s.verdict == "FAIL" for s in steps)


#: The steps the line of each endpoint shows.
VIEW = ("dns", "tcp", "tls", "post")


def endpoint_line(url: str, steps: list[Step], width: int) -> str:
    """One endpoint's line of the per-endpoint view: ready or not, and each step's verdict."""
    verdicts = {s.name: s.verdict for s in steps}
    state = "ready" if passed(steps) else "FAILED"
    cells = "  ".join(f"{name.upper()} {verdicts.get(name, '-'):<4}" for name in VIEW)
    return f"  {url:<{width}}  {state:<6}  {cells}"


def render(step: Step) -> str:
    """A step as one line of text."""
    # A detail may quote a server's answer: one line, nothing a terminal would act on.
    detail = printable(step.detail)
    fix = f" -> fix: {printable(step.fix)}" if step.fix and step.verdict in ("WARN", "FAIL") else ""
    return f"  {step.name.upper():<6} {step.verdict:<5} {step.ms:>8.1f} ms  {detail}{fix}"


def summary(steps: list[Step], endpoints: Sequence[bool] = ()) -> str:
    """The last line of the text report; ``endpoints``: whether each of several passed."""
    failed = sum(s.verdict == "FAIL" for s in steps)
    warned = sum(s.verdict == "WARN" for s in steps)
    if not failed:
        return "all checks passed" + (f", {warned} warning(s)" if warned else "")
    if len(endpoints) > 1:
        down = list(endpoints).count(False)
        return f"{down} of {len(endpoints)} endpoints failed, {failed} check(s) in all"
    return f"{failed} check(s) failed"


def parse_header(text: str) -> tuple[str, str]:
    """``'Name: value'`` as ``(name, value)``; an ``ArgumentTypeError`` if it has no name.

    The name and the value are then held to the handler's own rules (in
    ``build_options``). The messages quote the name, never the value, which
    may be a secret.
    """
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon:
        # Without a colon the value cannot be told apart: show only what
        # looks like a name (up to the first space or '=').
        raise argparse.ArgumentTypeError(
            f"{shown_name(name)} has no colon: give it as 'Name: value'"
        )
    if not name:
        raise argparse.ArgumentTypeError("': …' has no header name before the colon")
    return name, value


class _AddHeader(argparse.Action):
    """Collect ``--header`` into a dict, as the handler's ``headers`` option takes them."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        name, value = cast(tuple[str, str], values)  # made by parse_header
        headers = dict(getattr(namespace, self.dest) or {})
        # HTTP header names are case-insensitive: a second one would silently
        # replace the first in the request.
        if any(name.lower() == known.lower() for known in headers):
            raise argparse.ArgumentError(self, f"{name!r} is given twice (names ignore case)")
        headers[name] = value
        setattr(namespace, self.dest, headers)


def hider(opts: Options) -> Callable[[str], str]:
    """A function that masks every secret the check sends in a text: the token, the header
    values, the URL's secrets, a Basic login.

    The same secrets, in the same forms, as the handler's transport masks in
    what a server says (values too short to search for are left: see
    ``MIN_SCRUBBED``).
    """
    token = opts.token or (read_token_file(opts.token_file) if opts.token_file else None)
    masks = token_secrets(token, protocol_named(opts.protocol).auth)
    for url in opts.url:
        masks += request_secrets(opts, url)
    return lambda text: scrub(text, masks)


#: How each protocol sends its test record: ``(opts, token_from) -> (finding, the
#: server's Date header or None, when the answer came)``.
PROBES: dict[str, Callable[[Options, str | None], tuple[Finding, str | None, float]]] = {
    "http": check_post,
    "splunk": check_splunk,
    "loki": check_loki,
    "otlp": check_otlp,
    "elasticsearch": check_bulk,
    "forward": check_forward,
}


def token_source(args: argparse.Namespace, opts: Options) -> str | None:
    """Where the token came from, for the report (never the token itself)."""
    if args.token:
        return "--token"
    if args.token_file:
        return "--token-file"
    if opts.token:
        return "LOGSHIP_TOKEN"
    if opts.token_file:
        return "LOGSHIP_TOKEN_FILE"
    return None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _step(name: str, finding: Finding, started: float | None = None) -> Step:
    ms = 0.0 if started is None else _ms(started)
    return Step(name, finding.verdict, ms, finding.detail, finding.fix)


def spill_step(opts: Options) -> Step:
    """The spill folder a handler with these options (all its endpoints) would use."""
    started = time.perf_counter()
    folder = opts.spill_dir or default_spill_dir(opts.url)
    return _step("spill", check_spill_folder(folder), started)


def check_spill_folder(folder: str) -> Finding:
    """Whether a handler may use ``folder`` as its spill folder (read-only: changes nothing)."""
    problem = folder_problem(folder, tighten=False)
    if problem is not None:
        return Finding(
            "FAIL",
            f"{problem}: a handler would run without a spill",
            "give spill_dir (or LOGSHIP_SPILL_DIR) a folder this user owns, or chown this one",
        )
    try:
        mode = os.lstat(folder).st_mode & 0o777
    except FileNotFoundError:
        return Finding("PASS", f"{folder}: not made yet; a handler makes it, mode 0700")
    tightened = "" if mode == 0o700 else f" (mode {mode:o}: a handler makes it 0700)"
    return Finding("PASS", f"{folder}: this user's{tightened}")


def endpoint_checks(opts: Options, token_from: str | None) -> Iterator[Step]:
    """DNS, TCP, TLS, the test POST and the clock, for ``opts.url[0]``."""
    parts = urllib.parse.urlsplit(opts.url[0])
    host = parts.hostname or ""
    https = parts.scheme in ("https", "tls")
    port = parts.port or (443 if https else 80)
    unix = parts.scheme == "unix"  # a socket file: no name to resolve, no TCP

    started = time.perf_counter()
    addresses: list[Any] = []
    if unix:
        finding = Finding("SKIP", "a Unix socket: no host name to resolve")
    else:
        addresses, finding = check_dns(host, port, opts.timeout)
    yield _step("dns", finding, started)

    started = time.perf_counter()
    if unix:
        reachable, finding = check_unix(urllib.parse.unquote(parts.path), opts.timeout)
        yield _step("tcp", finding, started)
    elif addresses:
        reachable, finding = check_tcp(addresses, opts.timeout)
        yield _step("tcp", finding, started)
    else:
        reachable = []
        yield _step("tcp", Finding("SKIP", "skipped: no address to connect to"))

    started = time.perf_counter()
    if not https:
        plain = f"plain {parts.scheme}://: nothing to check, nothing encrypted"
        yield _step("tls", Finding("SKIP", plain))
        tls_ok = True
    elif reachable:
        family, sockaddr = reachable[0]
        finding = check_tls(
            host,
            family,
            sockaddr,
            opts.ca_file,
            opts.client_cert,
            opts.client_key,
            opts.timeout,
            opts.tls_min_version,
        )
        yield _step("tls", finding, started)
        tls_ok = finding.verdict != "FAIL"
    else:
        yield _step("tls", Finding("SKIP", "skipped: no TCP connection"))
        tls_ok = False

    if not (reachable and tls_ok):
        yield _step("post", Finding("SKIP", "skipped: the connection steps failed"))
        yield _step("clock", Finding("SKIP", "skipped: no answer from the server"))
        return
    probe = PROBES.get(opts.protocol)
    if probe is None:
        yield _step("post", Finding("SKIP", f"no test record for protocol {opts.protocol!r}"))
        yield _step("clock", Finding("SKIP", "skipped: no answer from the server"))
        return
    started = time.perf_counter()
    finding, date, midpoint = probe(opts, token_from)
    yield _step("post", finding, started)
    started = time.perf_counter()
    yield _step("clock", check_clock(date, midpoint), started)


# -- DNS and TCP -----------------------------------------------------------------------

_DNS_FIX = "the host name does not resolve: check the URL's host and your DNS"


def check_dns(host: str, port: int, timeout: float) -> tuple[list[Any], Finding]:
    """Resolve ``host``; return ``(family, sockaddr)`` pairs, in the resolver's order."""
    box: list[Any] = []

    def resolve() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as e:
            box.append(e)

    # getaddrinfo has no timeout of its own; a thread gives it one.
    worker = threading.Thread(target=resolve, name="check-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if not box:
        return [], Finding("FAIL", f"no answer from DNS for {host} in {timeout:g} s", _DNS_FIX)
    if isinstance(box[0], BaseException):
        return [], Finding("FAIL", f"{host} does not resolve: {box[0]}", _DNS_FIX)
    found: list[Any] = []
    for family, _type, _proto, _name, sockaddr in box[0]:
        if (family, sockaddr) not in found:
            found.append((family, sockaddr))
    shown = ", ".join(str(sockaddr[0]) for _f, sockaddr in found)
    if any(host == str(sockaddr[0]) for _f, sockaddr in found):
        return found, Finding("PASS", f"{host} is an address: nothing to resolve")
    return found, Finding("PASS", f"{host} -> {shown}")


def _where(sockaddr: Any) -> str:
    address, port = sockaddr[0], sockaddr[1]
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def check_tcp(addresses: list[Any], timeout: float) -> tuple[list[Any], Finding]:
    """Connect to each address; return the ones that answered."""
    reachable: list[Any] = []
    results, fixes = [], []
    for family, sockaddr in addresses:
        started = time.perf_counter()
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(sockaddr)
        except ConnectionRefusedError:
            results.append(f"{_where(sockaddr)} refused")
            fixes.append(
                f"nothing listens on {_where(sockaddr)}: check the URL's port and that the "
                "aggregator is running"
            )
        except TimeoutError:
            results.append(f"{_where(sockaddr)} timed out after {timeout:g} s")
            fixes.append(
                f"no answer from {_where(sockaddr)}: a firewall may drop the traffic, or the "
                "host is down: check firewalls and security groups for this port"
            )
        except OSError as e:
            results.append(f"{_where(sockaddr)} failed: {e.strerror or e}")
            fixes.append(f"{_where(sockaddr)} is unreachable: check the route, VPN or address")
        else:
            reachable.append((family, sockaddr))
            results.append(f"{_where(sockaddr)} connected in {_ms(started)} ms")
    detail = "; ".join(results)
    if not reachable:
        return [], Finding("FAIL", detail, "; ".join(dict.fromkeys(fixes)))
    if fixes:
        fix = (
            "clients fall back to the next address, slowly: make the aggregator listen on "
            "every address the name resolves to, or remove the others from DNS"
        )
        return reachable, Finding("WARN", detail, fix)
    return reachable, Finding("PASS", detail)
