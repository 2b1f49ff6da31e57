"""The one requests session for every cluster API (:func:`new_session`; python-nomad, py-consul, hvac and
keystoneauth all send through it). Its adapter bounds every request whatever the library asks: a total deadline
(a watchdog shuts the sockets: ``requests``' own timeout is per read, a one-byte-per-second server would stretch
it) -> :class:`Aborted`; a body cap while streaming -> :class:`TooLarge`; no redirect followed (the token would go
along); no environment (proxy, .netrc, REQUESTS_CA_BUNDLE); on a ``json_api`` session a 3xx is
:class:`Redirected` and a 2xx body must be strict JSON (the libraries' ``json.loads`` takes NaN) ->
:class:`BodyError`. All are RequestExceptions, so every library passes them on; errors.classify names them."""

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

from acceptance.redaction import clip

MAX_BODY = 16 * 1024 * 1024  # bytes; no answer the suite reads comes near it
DEFAULT_TIMEOUT = 30.0  # seconds, for a library that passes no timeout


def excerpt(data: bytes | str, limit: int = 120) -> str:
    """A one-line, escaped, redacted and bounded quote of an answer: ``'<html><head>...'``."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = " ".join(clip(text, limit * 8).split())  # redacted before it is cut: a cut secret would not match
    escaped = text.encode("unicode_escape").decode("ascii").replace("'", "\\'")
    return f"'{escaped[: limit - 3] + '...' if len(escaped) > limit else escaped}'"


class BodyError(requests.RequestException):
    """The answer could not be used as it is (not JSON, a non-finite number, an HTML page)."""

    def __init__(self, reason: str, body: bytes = b"", status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.body, self.status = reason, body, status


class Aborted(requests.RequestException):
    def __init__(self, seconds: float | None = None) -> None:
        super().__init__(f"no complete answer within {seconds:.3g} s" if seconds else "deadline passed")
        self.seconds = seconds


class TooLarge(requests.RequestException):
    def __init__(self, size: int | None) -> None:
        super().__init__(f"answer larger than the suite reads ({size or 'streamed'} bytes)")
        self.size = size


class Redirected(requests.RequestException):
    def __init__(self, status: int, location: str) -> None:
        super().__init__(f"{status} to {excerpt(location, 160)}" if location else f"{status} (no Location)")
        self.status, self.location = status, location


def _no_constants(name: str) -> Any:
    raise BodyError(f"holds {name}, which JSON does not allow")


def parse_json(body: bytes, content_type: str = "") -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, not empty; an HTML page (an SSO login page) named as such."""
    if content_type.split(";")[0].strip().lower() == "text/html" or body.lstrip()[:1] == b"<":
        raise BodyError("is an HTML page, not JSON (a login page in front of the API?)")
    if not body.strip():
        raise BodyError("is empty")
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise BodyError("is not UTF-8 text") from None
    except RecursionError:
        raise BodyError("is JSON nested too deep") from None
    except BodyError:
        raise
    except ValueError as e:
        raise BodyError(f"is not JSON ({e.args[0].split(':')[0] if e.args else 'invalid'})") from None


@dataclass(frozen=True)
class Answer:
    """One HTTP answer (headers by lower-case name, the capped body) and the library's own decoding (``data``)."""

    url: str
    path: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    data: Any = None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return parse_json(self.body, self.headers.get("content-type", ""))


_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("transport_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every request sent inside ends within ``seconds`` from now (or an enclosing deadline, if sooner)."""
    outer = _deadline.get()
    end = time.monotonic() + seconds
    token = _deadline.set(end if outer is None else min(outer, end))
    try:
        yield
    finally:
        _deadline.reset(token)


_in_flight = threading.local()  # .socks: the sockets of this thread's request in flight, for the watchdog


class _Tracked:
    """Records its socket for the watchdog: at connect, and at each request (a pooled connection)."""

    sock: Any

    def _track(self) -> None:
        socks = getattr(_in_flight, "socks", None)
        if socks is not None and isinstance(self.sock, socket.socket):
            socks.append(self.sock)

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._track()

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._track()
        super().request(*args, **kwargs)  # type: ignore[misc]


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = type("_Conn", (_Tracked, urllib3.connection.HTTPConnection), {})


class _SecurePool(urllib3.HTTPSConnectionPool):
    ConnectionCls = type("_SecureConn", (_Tracked, urllib3.connection.HTTPSConnection), {})


_requests: Counter[str] = Counter()
_requests_lock = threading.Lock()


def requests_made() -> dict[str, int]:
    """HTTP requests sent per API by this process (the run's cost, in the summary's transport)."""
    with _requests_lock:
        return dict(_requests)


class _Adapter(requests.adapters.HTTPAdapter):
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
        given = [t for t in (timeout if isinstance(timeout, tuple) else (timeout,)) if t is not None]
        total = float(max(given)) if given else DEFAULT_TIMEOUT
        end = _deadline.get()
        if end is not None:
            total = min(total, end - time.monotonic())
        if total <= 0:
            raise Aborted(0)
        with _requests_lock:
            _requests[self.api or str(request.url).split("/")[2]] += 1
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
        if self.json_api and 300 <= response.status_code < 400:
            raise Redirected(response.status_code, response.headers.get("Location", ""))
        if self.json_api and 200 <= response.status_code < 300 and body.strip():
            try:
                parse_json(body, response.headers.get("Content-Type", ""))
            except BodyError as e:
                raise BodyError(e.reason, body, response.status_code) from None
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


class _NoRedirects(requests.Session):
    """requests would still look at a 3xx (and read its whole body) with ``allow_redirects=False``."""

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


def new_session(*, verify: str | bool = True, cert: tuple[str, str] | None = None, max_body: int = MAX_BODY,
                api: str = "", json_api: bool = False) -> requests.Session:
    """A bounded session (see the module) that follows no redirect and reads no environment."""
    session = _NoRedirects()
    session.trust_env, session.max_redirects, session.verify, session.cert = False, 0, verify, cert
    adapter = _Adapter(verify, cert, max_body, api, json_api)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
