"""HTTP: the only module that imports ``requests``. Runs on the sender thread.

Connections are kept alive in one pool per handler process. A request goes
straight to urllib3's pool (``requests``' own connection layer), set up once
as ``requests`` would set it up (TLS context, CA bundle, ``~/.netrc``): a
``requests.Session`` call costs about a millisecond of interpreter time per
request on top, time the sender would hold the GIL while the application
waits for it. Only a URL that goes through a proxy (the proxy variables) is
sent with the session, which knows every proxy's rules. Every failure is
turned into an :class:`Answer`; nothing raises out of :meth:`Transport.send`.
"""

from __future__ import annotations

# requests imports these lazily on its first request. Importing them here, on
# the application's thread when the handler is built, means a fork can never
# land while the worker holds their import lock (which would hang the child).
import encodings.idna  # noqa: F401
import netrc  # noqa: F401
import os
import ssl
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import requests
import requests.adapters
import requests.auth
import urllib3
import urllib3.exceptions

from logship.pure.diagnosis import connection_kind, tls_kind
from logship.pure.options import Options
from logship.pure.protocols import Answer, Request, WireProtocol
from logship.pure.protocols.http import HTTP
from logship.pure.redact_url import (
    basic_credentials,
    header_secrets,
    login_secrets,
    redact_url,
    url_secrets,
)
from logship.worker.connections import (
    AddressBook,
    Deadline,
    cert_days_left,
    enforce_deadline,
    env_ca_bundle,
    pool_classes,
    tls_context,
    trusted_locations,
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
    if isinstance(exc, requests.exceptions.SSLError | urllib3.exceptions.SSLError):
        return tls_kind(str(exc))
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return connection_kind(str(exc))  # (a subclass of ConnectTimeoutError)
    if isinstance(
        exc, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError | TimeoutError
    ):
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

    def __init__(self, book: AddressBook, deadline: Deadline, context: Any) -> None:
        self._book, self._deadline, self._context = book, deadline, context
        super().__init__(pool_connections=1, pool_maxsize=2, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = pool_classes(self._book, self._deadline)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """requests' manager for ``proxy``, whose pools check the answer's deadline too."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not isinstance(manager, urllib3.ProxyManager):
            return manager  # a SOCKS proxy's manager: it makes connections its own way
        manager.pool_classes_by_scheme = pool_classes(self._book, self._deadline)
        return manager


# The certificate's expiry is read after a success at most this often.
_CERT_CHECK_INTERVAL = 3600.0


def endpoint_url(url: str, default_path: str) -> str:
    """``url``, with the protocol's standard path when it has none (SPEC section 8)."""
    parts = urllib.parse.urlsplit(url)
    if default_path and parts.path in ("", "/"):
        return urllib.parse.urlunsplit(parts._replace(path=default_path))
    return url


def check_endpoint(url: str) -> None:
    """Raise ``ValueError`` naming the option when the HTTP client would refuse ``url``.

    Called when the handler is built: urllib3 is stricter than ``urlsplit``
    about a host (``a%b``, ``[::1]]``), and would otherwise refuse it only
    when the worker starts.
    """
    try:
        urllib3.util.parse_url(url)
    except urllib3.exceptions.LocationParseError:
        raise ValueError(
            f"logship: option 'url' is not a URL the HTTP client takes (its host or port): "
            f"{redact_url(url)!r}"
        ) from None


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
        self._scheme = protocol.auth or "Bearer"
        self._tokens = TokenSource(opts, warner, self._scheme)
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
        login = _sent_login(opts, self.url)
        self.session.auth = login  # through a proxy, requests sends it as Basic auth
        self._book = AddressBook(self._on_dns_fallback)
        self._warner = warner
        self._next_cert_check = 0.0
        context = tls_context(
            opts.tls_min_version, bool(opts.verify), opts.client_cert, opts.client_key
        )
        self._deadline = Deadline(self.timeout)
        enforce_deadline(context, self._deadline)
        adapter = _Adapter(self._book, self._deadline, context)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.headers = {"User-Agent": USER_AGENT, **opts.headers}
        self._secrets = _sent_secrets(opts, url, login, self.session.proxies)
        #: Called with each answer's headers and reason phrase (``logship check``
        #: reads the server's ``Date``).
        self.on_response: Callable[[Any, str], None] | None = None
        #: The pool a request goes to without ``requests``; None through a proxy.
        self._pool: Any = None
        if not requests.utils.select_proxy(self.url, self.session.proxies):
            self._pool = self._direct_pool(context)
            self._target = _target(self.url)
            # The headers requests would add, then the caller's, as it merges them.
            self._direct_headers = {
                "Accept-Encoding": "gzip, deflate",
                "Accept": "*/*",
                "Connection": "keep-alive",
                **self.headers,
            }
            self._basic = f"Basic {basic_credentials(*login)}" if login else None
            self._timeout = urllib3.Timeout(connect=self.timeout, read=self.timeout)

    def _direct_pool(self, context: ssl.SSLContext) -> Any:
        """The connection pool for ``url``: what requests' adapter would pick for it."""
        kwargs: dict[str, Any] = {"ssl_context": context}
        if self.verify is False:
            kwargs["cert_reqs"] = "CERT_NONE"
        else:
            kwargs["cert_reqs"] = "CERT_REQUIRED"
            if isinstance(self.verify, str):  # ca_file, or the environment's bundle
                folder = os.path.isdir(self.verify)
                cafile, capath = (None, self.verify) if folder else (self.verify, None)
            else:
                cafile, capath = trusted_locations(None)  # certifi's, as requests
            kwargs["ca_certs"], kwargs["ca_cert_dir"] = cafile, capath
        manager = urllib3.PoolManager(num_pools=1, maxsize=2, **kwargs)
        manager.pool_classes_by_scheme = pool_classes(self._book, self._deadline)
        return manager.connection_from_url(self.url)

    def scrub(self, text: str) -> str:
        """``text`` without any secret a request carries: the token, the headers given,
        the URL's secrets, the login (see ``TokenSource.scrub``)."""
        return self._tokens.scrub(text, self._secrets)

    def send(self, request: Request) -> Answer:
        """POST one batch's body; return the answer or the failure, never raise."""
        try:
            # Either way, urllib3's response: the session's is its ``raw``.
            resp = self._post(request) if self._pool is not None else self._post_by_session(request)
        except Exception as e:  # every failure to get an answer is retried, none raised
            self._deadline.stop()
            # An error may quote the header it could not send, or the URL.
            return Answer(None, error=self.scrub(f"{type(e).__name__}: {e}"), kind=error_kind(e))
        try:
            if self.on_response is not None:
                self.on_response(resp.headers, resp.reason or "")
            cert_days = None
            if self.url.startswith("https") and time.monotonic() >= self._next_cert_check:
                sock = getattr(resp.connection, "sock", None)
                cert_days = cert_days_left(sock) if sock is not None else None
                self._next_cert_check = time.monotonic() + _CERT_CHECK_INTERVAL
            return self._answer(resp, cert_days)
        finally:
            self._deadline.stop()

    def _post(self, request: Request) -> Any:
        """POST through the pool; urllib3's response, its body not read yet."""
        headers = {**self._direct_headers, **request.headers, "Idempotency-Key": request.key}
        token = self._tokens.current()
        if token:
            headers["Authorization"] = f"{self._scheme} {token}"
        elif self._basic is not None:
            headers["Authorization"] = self._basic
        return self._pool.urlopen(
            "POST",
            self._target,
            body=request.body,
            headers=headers,
            retries=False,
            # A redirect answered to a POST would become a GET elsewhere; the
            # sender holds the batch and says so (see pure.retry.classify).
            redirect=False,
            preload_content=False,
            decode_content=False,
            timeout=self._timeout,
        )

    def _post_by_session(self, request: Request) -> Any:
        """:meth:`_post` through ``requests.Session``: a URL that goes through a proxy."""
        headers = {**self.headers, **request.headers, "Idempotency-Key": request.key}
        token = self._tokens.current()
        return self.session.post(
            self.url,
            data=request.body,
            headers=headers,
            # As an auth object, not a header: a netrc login (session.auth)
            # would otherwise replace it with Basic auth.
            auth=_Authorization(f"{self._scheme} {token}") if token else None,
            timeout=self.timeout,
            allow_redirects=False,  # (see _post)
            stream=True,
            verify=self.verify,
        ).raw

    def _answer(self, resp: Any, cert_days: float | None) -> Answer:
        """The answer of urllib3's response ``resp``, its body read up to a bound."""
        try:
            # Read a bounded amount: a server answering nonsense must not be
            # able to make the worker hold an endless body in memory.
            raw = resp.read(_MAX_ANSWER_BYTES, decode_content=True) or b""
            text = raw.decode("utf-8", "replace") if raw else ""
            # A server may echo the request (its Authorization header too): a
            # refusal's body becomes a warning and a dead letter's reason, so its
            # secrets go before it is cut. A 2xx body is kept whole (bounded
            # above) and as sent: some protocols judge each event in a success's
            # body (a bulk answer's items, OTLP's partialSuccess), and masking a
            # header value such as "true" in it would unmake the JSON. The sender
            # scrubs the words it shows from it (Sender._said).
            if resp.status >= 300:
                text = self.scrub(text)[:500]
            if resp.read(1):
                resp.close()  # more than we will read: drop this connection
            resp.release_conn()  # fully read: the connection is kept alive
        except Exception:
            text = ""
            resp.close()
            resp.release_conn()
        location = resp.headers.get("Location")
        return Answer(
            resp.status,
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
            if self._pool is not None:
                self._pool.close()
            self.session.close()
        except Exception:
            pass


def request_secrets(opts: Options, url: str) -> list[tuple[str, str]]:
    """``(secret, mask)`` for every secret a :class:`Transport` for ``url`` sends but the token.

    Read from the environment as the transport reads it (``~/.netrc``, the
    proxy variables): for ``logship check``, which masks the same secrets in
    its report.
    """
    login = _sent_login(opts, url)
    return _sent_secrets(opts, url, login, requests.utils.get_environ_proxies(url))


def _sent_login(opts: Options, url: str) -> tuple[str, str] | None:
    """The login sent as Basic auth to ``url``: None with a token.

    ``~/.netrc``'s login for the host, else the URL's user and password. A
    user alone (``https://TOKEN@host``) goes with an empty password, as curl
    sends it: requests would send nothing, and a 401 would be all the user saw.
    """
    if opts.token or opts.token_file:
        return None
    parts = urllib.parse.urlsplit(url)
    from_url = (
        (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
        if parts.username is not None
        else None
    )
    return _login(requests.utils.get_netrc_auth(url) or from_url)


def _sent_secrets(
    opts: Options, url: str, login: tuple[str, str] | None, proxies: dict[str, str]
) -> list[tuple[str, str]]:
    """Every secret a request carries but the token, in each form it is sent: an
    answer or an error may quote any of them (a server echoing the request)."""
    secrets = [*url_secrets(url), *header_secrets(opts.headers)]
    if login:
        secrets += login_secrets(*login)
    for proxy in proxies.values():
        # The proxy's own login goes to the proxy, whose errors come back here.
        secrets += url_secrets(proxy)
        proxy_login = _login(requests.utils.get_auth_from_url(proxy))
        if proxy_login:
            secrets += login_secrets(*proxy_login)
    return secrets


def _login(auth: Any) -> tuple[str, str] | None:
    """``(user, password)`` of a login ``requests`` would send as Basic auth; None without one."""
    if isinstance(auth, tuple) and len(auth) == 2 and any(auth):
        return str(auth[0] or ""), str(auth[1] or "")
    return None


def _target(url: str) -> str:
    """The request target of ``url``: its path and query."""
    parts = urllib.parse.urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
