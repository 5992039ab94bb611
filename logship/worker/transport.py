"""HTTP: the only module that imports ``requests``. Runs on the sender thread.

One :class:`requests.Session` per handler process keeps connections alive.
Every failure is turned into an :class:`Answer`; nothing raises out of
:meth:`Transport.post`.
"""

from __future__ import annotations

# requests imports these lazily on its first request. Importing them here, on
# the application's thread when the handler is built, means a fork can never
# land while the worker holds their import lock (which would hang the child).
import encodings.idna  # noqa: F401
import netrc  # noqa: F401
import time
import urllib.parse
from typing import Any

import requests
import requests.adapters
import requests.auth

from logship.pure.diagnosis import connection_kind, tls_kind
from logship.pure.options import Options
from logship.pure.protocols import Answer, Request, WireProtocol
from logship.pure.protocols.http import HTTP
from logship.pure.redact_url import redact_url, url_secrets
from logship.worker.connections import (
    AddressBook,
    days_left,
    env_ca_bundle,
    pool_classes,
    tls_context,
)
from logship.worker.diagnostics import Warner
from logship.worker.tokens import TokenSource

USER_AGENT = "logship"
# An answer is read up to this much. Enough for a bulk answer that judges a
# thousand events one by one, each with an error (Elasticsearch writes about
# 200 to 600 bytes per item); a server answering endlessly is cut off here.
_MAX_ANSWER_BYTES = 4 * 1024 * 1024


def error_kind(exc: BaseException) -> str:
    """A short name for why a request got no answer, for warnings and ``stats()``."""
    if isinstance(exc, requests.exceptions.SSLError):
        return tls_kind(str(exc))
    if isinstance(exc, requests.exceptions.Timeout):
        return "timeout"
    return connection_kind(str(exc))


class _Authorization(requests.auth.AuthBase):
    """Sets ``Authorization`` on a request (``Bearer …``, ``Splunk …``, ``ApiKey …``)."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self.value
        return r


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter with logship's TLS context and DNS-fallback connections."""

    def __init__(self, book: AddressBook, context: Any) -> None:
        self._book, self._context = book, context
        super().__init__(pool_connections=1, pool_maxsize=2, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = pool_classes(self._book)


# The certificate's expiry is read after a success at most this often.
_CERT_CHECK_INTERVAL = 3600.0


def endpoint_url(url: str, default_path: str) -> str:
    """``url``, with the protocol's standard path when it has none (SPEC section 8)."""
    parts = urllib.parse.urlsplit(url)
    if default_path and parts.path in ("", "/"):
        return urllib.parse.urlunsplit(parts._replace(path=default_path))
    return url


class Transport:
    """POSTs request bodies to the configured endpoint."""

    def __init__(
        self,
        opts: Options,
        warner: Warner,
        protocol: WireProtocol = HTTP,
        url: str | None = None,
    ) -> None:
        url = url or opts.url[0]
        self.url = endpoint_url(url, protocol.default_path)
        self.timeout = opts.timeout
        self._tokens = TokenSource(opts, warner)
        self._scheme = protocol.auth or "Bearer"
        self._url_secrets = url_secrets(url)
        self.session = requests.Session()
        # requests would read the proxy variables, the CA bundle variables and
        # ~/.netrc again on every request: a measurable share of the worker's
        # CPU. They are read once here, as requests would read them, when
        # the worker starts.
        self.session.trust_env = False
        self.session.proxies = requests.utils.get_environ_proxies(url)
        self.verify: bool | str = opts.ca_file if opts.ca_file else opts.verify
        bundle = env_ca_bundle() if self.verify is True else None
        if bundle:
            self.verify = bundle[1]
        self.session.verify = self.verify
        if not (opts.token or opts.token_file):
            self.session.auth = requests.utils.get_netrc_auth(url)
        self._book = AddressBook(self._on_dns_fallback)
        self._warner = warner
        self._next_cert_check = 0.0
        context = tls_context(
            opts.tls_min_version, bool(opts.verify), opts.client_cert, opts.client_key
        )
        adapter = _Adapter(self._book, context)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.headers = {"User-Agent": USER_AGENT, **opts.headers}

    def scrub(self, text: str) -> str:
        """``text`` without the token or the URL's secrets (see ``TokenSource.scrub``)."""
        return self._tokens.scrub(text, self._url_secrets)

    def send(self, request: Request) -> Answer:
        """POST one batch's body; return the answer or the failure, never raise."""
        headers = {**self.headers, **request.headers, "Idempotency-Key": request.key}
        token = self._tokens.current()
        try:
            resp = self.session.post(
                self.url,
                data=request.body,
                headers=headers,
                # As an auth object, not a header: a netrc login (session.auth)
                # would otherwise replace it with Basic auth.
                auth=_Authorization(f"{self._scheme} {token}") if token else None,
                timeout=self.timeout,
                # A redirect answered to a POST would become a GET elsewhere; the
                # sender holds the batch and says so (see pure.retry.classify).
                allow_redirects=False,
                stream=True,
                verify=self.verify,
            )
        except Exception as e:  # every failure to get an answer is retried, none raised
            # An error may quote the header it could not send, or the URL.
            error = self.scrub(f"{type(e).__name__}: {e}")
            return Answer(None, error=error, kind=error_kind(e))
        cert_days = None
        if self.url.startswith("https") and time.monotonic() >= self._next_cert_check:
            cert_days = days_left(resp)
            self._next_cert_check = time.monotonic() + _CERT_CHECK_INTERVAL
        try:
            # Read a bounded amount: a server answering nonsense must not be
            # able to make the worker hold an endless body in memory.
            raw = resp.raw.read(_MAX_ANSWER_BYTES, decode_content=True) or b""
            # A server may echo the request (its Authorization header too): the
            # body becomes a warning and a dead letter's reason. A 2xx body is
            # kept whole (bounded above): some protocols judge each event in a
            # success's body (a bulk answer's items, OTLP's partialSuccess).
            text = self.scrub(raw.decode("utf-8", "replace")) if raw else ""
            if resp.status_code >= 300:
                text = text[:500]
            if resp.raw.read(1):
                resp.close()  # more than we will read: drop this connection
            else:
                resp.raw.release_conn()  # fully read: keep the connection alive
        except Exception:
            text = ""
            resp.close()
        location = resp.headers.get("Location")
        return Answer(
            resp.status_code,
            retry_after=resp.headers.get("Retry-After"),
            location=redact_url(self.scrub(location)) if location else None,
            body=text,
            cert_days_left=cert_days,
        )

    def _on_dns_fallback(self, host: str, addresses: list[str]) -> None:
        self._warner.warn(
            f"dns-fallback-{host}",
            "logship: %s does not resolve; delivering to its last known addresses %s "
            "(TLS still verifies %s). Check DNS.",
            host,
            ", ".join(addresses),
            host,
        )

    def close(self) -> None:
        """Close pooled connections."""
        try:
            self.session.close()
        except Exception:
            pass
