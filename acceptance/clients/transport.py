"""The one place that builds a requests session for a cluster API (Nomad, Consul, Vault, Prometheus, OpenStack):
python-nomad, py-consul, hvac and keystoneauth all send through :func:`new_session`, whose adapter holds every
request to the same bounds, whatever the library asks:

- a total deadline (connect, headers and body): the larger element of the timeout the library passes (or the
  float), clamped by :func:`deadline`; a watchdog shuts the request's sockets when it passes, so a server that
  sends one byte per second cannot stretch a call (``requests``' own timeout is per socket read) -> :class:`Aborted`;
- a cap on the body: a larger ``Content-Length`` is refused unread, a longer stream is cut -> :class:`TooLarge`;
  the body is then the response's content, so ``.json()``/``.text`` work;
- redirects are never followed (the token would go wherever the server points): a 3xx is returned as it is, or,
  on a ``json_api`` session, raised as :class:`Redirected` naming the place it pointed to;
- on a ``json_api`` session a 2xx body is strict JSON (no NaN/Infinity, UTF-8, an HTML page named): the libraries
  parse with ``json.loads``, which would take ``NaN`` as a number -> :class:`BodyError`;
- no environment settings (``trust_env=False``): no proxy, no ``.netrc``, no ``REQUESTS_CA_BUNDLE``; the session's
  ``verify``/``cert`` are the configured CA and client certificate;
- requests are counted per API (:func:`requests_made`).

The errors are :class:`requests.RequestException` subclasses, so every library passes them on (or wraps them) as
it does a connection error; :mod:`acceptance.clients.errors` classifies them.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import requests.adapters
import urllib3
import urllib3.connection

from acceptance.redaction import redact

MAX_BODY = 16 * 1024 * 1024  # bytes; no answer the suite reads comes near it
EXCERPT = 120  # characters of an answer quoted in a message
DEFAULT_TIMEOUT = 30.0  # seconds, for a library that passes no timeout


def excerpt(data: bytes | str, limit: int = EXCERPT) -> str:
    """A one-line, escaped, redacted and bounded quote of an answer: ``'<html><head>...'``."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = redact(" ".join(text[: limit * 8].split()))  # redact before cutting: a cut secret would not match
    escaped = text.encode("unicode_escape").decode("ascii").replace("'", "\\'")
    if len(escaped) > limit:
        escaped = escaped[: limit - 3] + "..."
    return f"'{escaped}'"


class BodyError(requests.RequestException):
    """The answer could not be used as it is (not JSON, a non-finite number, an HTML page)."""

    def __init__(self, reason: str, body: bytes = b"", status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.body, self.status = reason, body, status

    def __str__(self) -> str:
        return self.reason


class Aborted(requests.RequestException):
    """The request's deadline passed (the watchdog shut its connection)."""

    def __init__(self, seconds: float | None = None) -> None:
        super().__init__(f"no complete answer within {seconds:.3g} s" if seconds else "deadline passed")
        self.seconds = seconds


class TooLarge(requests.RequestException):
    def __init__(self, size: int | None) -> None:
        super().__init__(f"answer larger than the suite reads ({size or 'streamed'} bytes)")
        self.size = size


class Redirected(requests.RequestException):
    """A JSON API answered a 3xx: not followed."""

    def __init__(self, status: int, location: str) -> None:
        super().__init__(f"{status} to {excerpt(location, 160)}" if location else f"{status} (no Location)")
        self.status, self.location = status, location


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


def check_json(body: bytes, content_type: str = "") -> Any:
    """:func:`parse_json`, naming an HTML page (an SSO login page in front of the API) as such."""
    if content_type.split(";")[0].strip().lower() == "text/html" or body.lstrip()[:1] == b"<":
        raise BodyError("is an HTML page, not JSON (a login page in front of the API?)")
    return parse_json(body)


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
        return check_json(self.body, self.content_type)


# -- the deadline a caller sets around library calls --------------------------------------------------------------

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("transport_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every request sent inside ends within ``seconds`` from now (or an enclosing deadline, if sooner)."""
    end = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(end if outer is None else min(outer, end))
    try:
        yield
    finally:
        _deadline.reset(token)


# -- sockets of the request in flight, per thread, for the watchdog -----------------------------------------------

class _InFlight(threading.local):
    socks: list[socket.socket] | None = None


_in_flight = _InFlight()


def _track(sock: Any) -> None:
    socks = _in_flight.socks
    if socks is not None and isinstance(sock, socket.socket):
        socks.append(sock)


class _Conn(urllib3.connection.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _track(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _track(self.sock)  # a pooled connection, connected by an earlier request
        super().request(*args, **kwargs)


class _SecureConn(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _track(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _track(self.sock)
        super().request(*args, **kwargs)


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _Conn


class _SecurePool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _SecureConn


_requests: Counter[str] = Counter()
_requests_lock = threading.Lock()


def count_request(api: str) -> None:
    with _requests_lock:
        _requests[api] += 1


def requests_made() -> dict[str, int]:
    """HTTP requests sent per API by this process (the run's cost, in the summary's transport)."""
    with _requests_lock:
        return dict(_requests)


def _total(timeout: Any) -> float:
    if isinstance(timeout, tuple):
        values = [t for t in timeout if t is not None]
        return float(max(values)) if values else DEFAULT_TIMEOUT
    return float(timeout) if timeout is not None else DEFAULT_TIMEOUT


class _Adapter(requests.adapters.HTTPAdapter):
    """No retries of its own (the caller decides), every request bounded in time and size."""

    def __init__(self, verify: str | bool, cert: tuple[str, str] | None, max_body: int, api: str,
                 json_api: bool) -> None:
        self.verify, self.cert = verify, cert  # pinned: a library's own default (python-nomad: verify=False) loses
        self.max_body, self.api, self.json_api = max_body, api, json_api
        super().__init__(max_retries=0, pool_connections=4, pool_maxsize=4)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _SecurePool}

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: None | float | tuple[float, float] | tuple[float, None] = None,
             verify: bool | str = True, cert: None | bytes | str | tuple[bytes | str, bytes | str] = None,
             proxies: Mapping[str, str] | None = None) -> requests.Response:
        total = _total(timeout)
        end = _deadline.get()
        if end is not None:
            total = min(total, end - time.monotonic())
        if total <= 0:
            raise Aborted(0)
        count_request(self.api or str(request.url).split("/")[2])
        socks: list[socket.socket] = []
        aborted = threading.Event()

        def abort() -> None:
            aborted.set()
            for s in list(socks):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(total, abort)
        watchdog.daemon = True
        _in_flight.socks = socks
        watchdog.start()
        try:
            response = super().send(request, stream=True, timeout=(total, total), verify=self.verify,
                                    cert=self.cert, proxies=None)
            try:
                body = self._read(response)
            finally:
                response.close()
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
            if aborted.is_set():
                raise Aborted(total) from None
            if isinstance(e, requests.RequestException):
                raise
            raise requests.ConnectionError(e, request=request) from None
        finally:
            watchdog.cancel()
            _in_flight.socks = None
        if aborted.is_set():
            raise Aborted(total)
        response._content = body
        if self.json_api:
            self._check(response, body)
        return response

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

    @staticmethod
    def _check(response: requests.Response, body: bytes) -> None:
        if 300 <= response.status_code < 400:
            raise Redirected(response.status_code, response.headers.get("Location", ""))
        if 200 <= response.status_code < 300 and body.strip():
            try:
                check_json(body, response.headers.get("Content-Type", ""))
            except BodyError as e:
                raise BodyError(e.reason, body, response.status_code) from None


class _NoRedirects(requests.Session):
    """requests would still look at a 3xx (and read its whole body) with ``allow_redirects=False``."""

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


def new_session(*, verify: str | bool = True, cert: tuple[str, str] | None = None, max_body: int = MAX_BODY,
                api: str = "", json_api: bool = False) -> requests.Session:
    """A session whose every request is bounded (see the module), follows no redirect and reads no environment;
    ``json_api``: a 3xx raises :class:`Redirected` and a 2xx body must be strict JSON."""
    session = _NoRedirects()
    session.trust_env = False
    session.max_redirects = 0
    session.verify = verify
    session.cert = cert
    adapter = _Adapter(verify, cert, max_body, api, json_api)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
