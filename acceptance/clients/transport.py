"""One bounded HTTP GET for every cluster API (Nomad, Consul, Vault, Prometheus): the same TLS and token settings
the official CLIs take, and nothing a server can stretch or redirect.

- a total deadline per request (connect, headers and body): a watchdog shuts the connection's socket when the
  deadline passes, so a server that sends one byte per second cannot hold a call longer than its deadline
  (``requests``' own timeout is per socket read);
- a cap on the body (:data:`MAX_BODY`): a larger ``Content-Length`` is refused unread, a longer stream is cut;
- redirects are never followed (the token would go wherever the server points): a 3xx is an error naming the
  place it pointed to;
- no environment settings (``trust_env=False``): no proxy, no ``.netrc`` credentials, no ``REQUESTS_CA_BUNDLE``
  behind the configured CA;
- JSON is parsed strictly: ``NaN``/``Infinity`` are refused, and so is anything that is not UTF-8 JSON.

Every message built from an answer carries a bounded, escaped and redacted excerpt of it (:func:`excerpt`).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import weakref
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.connection

from acceptance.redaction import redact

MAX_BODY = 16 * 1024 * 1024  # bytes; no answer the suite reads comes near it
EXCERPT = 120  # characters of an answer quoted in a message


def excerpt(data: bytes | str, limit: int = EXCERPT) -> str:
    """A one-line, escaped, redacted and bounded quote of an answer: ``'<html><head>...'``."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = redact(" ".join(text[: limit * 8].split()))  # redact before cutting: a cut secret would not match
    escaped = text.encode("unicode_escape").decode("ascii").replace("'", "\\'")
    if len(escaped) > limit:
        escaped = escaped[: limit - 3] + "..."
    return f"'{escaped}'"


class BodyError(Exception):
    """The answer could not be used as it is (too large, not JSON, a non-finite number)."""


def _no_constants(name: str) -> Any:
    raise BodyError(f"holds {name}, which JSON does not allow")


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, not empty."""
    if not body.strip():
        raise BodyError("is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("is not UTF-8 text") from None
    try:
        return json.loads(text, parse_constant=_no_constants)
    except BodyError:
        raise
    except RecursionError:
        raise BodyError("is JSON nested too deep") from None
    except ValueError as e:
        raise BodyError(f"is not JSON ({e.args[0].split(':')[0] if e.args else 'invalid'})") from None


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, headers (lower-case names) and the whole (capped) body."""

    url: str
    path: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed_s: float = 0.0

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; :class:`BodyError` (with the reason) otherwise. An HTML page (an SSO login page
        in front of the API) is named as such."""
        if self.content_type == "text/html" or self.body.lstrip()[:1] == b"<":
            raise BodyError("is an HTML page, not JSON (a login page in front of the API?)")
        return parse_json(self.body)


class Aborted(Exception):
    """The request's deadline passed (the watchdog shut its connection)."""


class TooLarge(Exception):
    def __init__(self, size: int | None) -> None:
        super().__init__(size)
        self.size = size


@dataclass
class _Sockets:
    """The sockets of one session's connections, so that a watchdog can shut them at a deadline."""

    live: weakref.WeakSet[socket.socket] = field(default_factory=weakref.WeakSet)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sock: Any) -> None:
        if isinstance(sock, socket.socket):
            with self.lock:
                self.live.add(sock)

    def shut(self) -> None:
        with self.lock:
            socks = list(self.live)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _pool_classes(sockets: _Sockets) -> dict[str, Any]:
    class Conn(urllib3.connection.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            sockets.add(self.sock)

    class SecureConn(urllib3.connection.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            sockets.add(self.sock)

    class Pool(urllib3.HTTPConnectionPool):
        ConnectionCls = Conn

    class SecurePool(urllib3.HTTPSConnectionPool):
        ConnectionCls = SecureConn

    return {"http": Pool, "https": SecurePool}


class _Adapter(requests.adapters.HTTPAdapter):
    """No retries of its own (the caller decides), one connection per host, sockets tracked."""

    def __init__(self, sockets: _Sockets) -> None:
        self.sockets = sockets
        super().__init__(max_retries=0, pool_connections=4, pool_maxsize=1)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.sockets)


class _NoRedirects(requests.Session):
    """requests would still look at a 3xx (and read its whole body) with ``allow_redirects=False``: here a 3xx is
    an answer like any other, checked by the caller."""

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


def new_session() -> tuple[requests.Session, _Sockets]:
    """A requests session that follows no redirect, reads no environment and tracks its sockets."""
    session = _NoRedirects()
    session.trust_env = False
    session.max_redirects = 0
    sockets = _Sockets()
    adapter = _Adapter(sockets)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session, sockets


_requests: Counter[str] = Counter()
_requests_lock = threading.Lock()


def count_request(api: str) -> None:
    with _requests_lock:
        _requests[api] += 1


def requests_made() -> dict[str, int]:
    """HTTP requests sent per API by this process (the run's cost, in the summary's transport)."""
    with _requests_lock:
        return dict(_requests)


class HttpClient:
    """GET on one base URL with the API's TLS files and token header. Used by one thread at a time."""

    def __init__(self, base_url: str, *, verify: str | bool = True, cert: tuple[str, str] | None = None,
                 headers: Mapping[str, str] | None = None, connect_timeout_s: float = 3.05,
                 max_body: int = MAX_BODY, api: str = "") -> None:
        self.api = api
        self.url = base_url.rstrip("/")
        self.verify = verify
        self.cert = cert
        self.headers = dict(headers or {})
        self.connect_timeout_s = connect_timeout_s
        self.max_body = max_body
        self.session, self.sockets = new_session()

    def get(self, path: str, timeout_s: float, params: Mapping[str, str] | None = None) -> Answer:
        """The whole answer within ``timeout_s`` (total); raise :class:`Aborted`, :class:`TooLarge` or what
        requests raises (connection and TLS errors)."""
        start = time.monotonic()
        timeout_s = max(0.05, timeout_s)
        aborted = threading.Event()

        def abort() -> None:
            aborted.set()
            self.sockets.shut()

        watchdog = threading.Timer(timeout_s, abort)
        watchdog.daemon = True
        watchdog.start()
        count_request(self.api or self.url)
        try:
            response = self.session.get(
                self.url + path, params=params, headers=self.headers, verify=self.verify, cert=self.cert,
                timeout=(min(self.connect_timeout_s, timeout_s), timeout_s), allow_redirects=False, stream=True)
            try:
                body = self._read(response)
            finally:
                response.close()
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError):
            if aborted.is_set():
                raise Aborted() from None
            raise
        finally:
            watchdog.cancel()
        if aborted.is_set():
            raise Aborted()
        headers = {k.lower(): v for k, v in response.headers.items()}
        return Answer(self.url, path, response.status_code, headers, body, time.monotonic() - start)

    def _read(self, response: requests.Response) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise TooLarge(int(declared))
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > self.max_body:
                raise TooLarge(None)
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.session.close()
