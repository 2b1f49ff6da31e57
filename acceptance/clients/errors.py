"""Every failure of an API call as ONE clear line that names what to fix, never a secret.

An :class:`ApiError` has a ``kind``:

``config``        the suite is not configured for this API (missing address, missing file, credentials in a URL)
``tls``           the server's certificate did not verify against the configured CA
``client-cert``   the server refused our client certificate
``auth``          the token was refused (401/403)
``forbidden``     the token works but lacks the right one endpoint needs (403 there, answers elsewhere)
``acl-filtered``  Consul answered, but removed what the token may not see (``X-Consul-Results-Filtered-By-ACLs``)
``unreachable``   no (complete) answer: connection refused, reset, timed out (retryable)
``http``          any other non-2xx status; 5xx are retryable (e.g. 500 "No cluster leader" during an election)
``no-leader``     the API answered that there is no leader (retryable)
``redirect``      a 3xx: never followed (the token would go with it)
``protocol``      the answer is not what the API documents (not JSON, HTML, wrong shape, too large)
``deadline``      not fetched: the API's snapshot ran out of its deadline (``apis.deadline_s``)

Messages pass through :func:`acceptance.redaction.redact` when the error is made: a server that echoes a token
back cannot put it in a report.
"""

from __future__ import annotations

import re
import ssl
from typing import Any

import requests

from acceptance.clients.config import ApiConfig
from acceptance.clients.transport import Aborted, Answer, BodyError, Redirected, TooLarge, excerpt
from acceptance.redaction import redact

# the kinds that make an API unusable as a whole (its root check api.<name>.reachable fails or errors)
ROOT_KINDS = ("config", "tls", "client-cert", "unreachable", "auth")


class ApiError(Exception):
    def __init__(self, kind: str, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        message = redact(message)
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ApiError({self.kind!r}, {self.message!r})"

    @property
    def unreachable(self) -> bool:
        """No answer from the service: a verdict on it (``failed``), not on the suite (see outcomes.judge)."""
        return self.kind == "unreachable"


def one_line(text: object, limit: int = 200) -> str:
    line = redact(" ".join(str(text).split()))
    return line if len(line) <= limit else line[: limit - 3] + "..."


def where(cfg: ApiConfig, url: str) -> str:
    return f"{cfg.title} at {url}"


def tls_error(cfg: ApiConfig, url: str, detail: str) -> ApiError:
    low = detail.lower()
    if any(s in low for s in ("certificate required", "bad certificate", "unknown ca", "certificate unknown",
                              "handshake failure", "alert")) and "verify failed" not in low:
        source = cfg.cert_source or "the client certificate"
        return ApiError("client-cert", f"{where(cfg, url)} refused the client certificate "
                                       f"({one_line(detail, 120)}) — set {source} (and its key) to a certificate "
                                       "the cluster CA signed")
    var = cfg.ca_source.split(" in ")[0] or "the CA file"
    place = f"the system CA bundle ({var} not set)" if cfg.ca is None else f"{var}={cfg.ca}"
    reason = ""
    match = re.search(r"certificate verify failed: ([^(')\]]+)", detail)
    if match:
        reason = f" ({match.group(1).strip()})"
    return ApiError("tls", f"{where(cfg, url)}: TLS verification failed{reason} with {place} — "
                           f"set {var} to the cluster CA")


def auth_error(cfg: ApiConfig, url: str, path: str, status: int, body: str = "") -> ApiError:
    """The token was refused outright (no token, an unknown or expired one)."""
    var = cfg.token_var or "the token"
    what = f"{where(cfg, url)} rejected the token ({status}) for GET {path}"
    if not cfg.token:
        return ApiError("auth", f"{what}: no token sent — set {var}", status=status)
    detail = f": {excerpt(body, 100)}" if body else ""
    return ApiError("auth", f"{what}{detail} — set {var} to a valid token with read access", status=status)


def forbidden_error(cfg: ApiConfig, url: str, path: str, status: int, right: str | None) -> ApiError:
    """A 403 on one endpoint: the token lacks the right that endpoint needs (the message names it)."""
    var = cfg.token_var or "the token"
    need = right or "read access to it"
    if not cfg.token:
        return ApiError("forbidden", f"no {var} set; {where(cfg, url)} needs {need} for GET {path} "
                                     f"(answered {status}) — set {var}", status=status)
    return ApiError("forbidden", f"{var} lacks {need} (GET {path} answered {status} at {url}) — give the token "
                                 f"{need}", status=status)


def http_error(cfg: ApiConfig, url: str, path: str, status: int, body: str = "", right: str | None = None) -> ApiError:
    if status == 401 or status == 403 and (not cfg.token or _token_unknown(body)):
        return auth_error(cfg, url, path, status, body)
    if status == 403:
        return forbidden_error(cfg, url, path, status, right)
    text = excerpt(body) if body.strip() else ""
    if status == 429:  # a rate limit or a server too busy: retried within the snapshot's deadline
        return ApiError("http", f"{where(cfg, url)}: GET {path}: 429 {text} (rate limited: retried until "
                                "apis.retry_s)", status=status, retryable=True)
    if status >= 500 and "no cluster leader" in body.lower():
        return ApiError("no-leader", f"{where(cfg, url)}: GET {path}: {status} {text} (no leader elected)",
                        status=status, retryable=True)
    return ApiError("http", f"{where(cfg, url)}: GET {path}: HTTP {status}{' ' + text if text else ''}",
                    status=status, retryable=status >= 500 and status != 501)


def _token_unknown(body: str) -> bool:
    """Nomad "ACL token not found", Consul "ACL not found": the token itself is refused, not one right."""
    low = body.lower()
    return "token not found" in low or "acl not found" in low or "invalid token" in low


def redirect_error(cfg: ApiConfig, answer: Answer) -> ApiError:
    target = answer.headers.get("location", "")
    pointed = f" to {excerpt(target, 160)}" if target else " (no Location)"
    return ApiError("redirect", f"{where(cfg, answer.url)}: GET {answer.path} answered {answer.status}, a redirect"
                                f"{pointed}; not followed (the token would go with it) — set the API's address to "
                                "the server itself")


def protocol_error(cfg: ApiConfig, answer: Answer | None, url: str, path: str, what: str) -> ApiError:
    """The answer is not what the API documents: say which endpoint answered what."""
    quoted = f": {excerpt(answer.body)}" if answer is not None and answer.body.strip() else ""
    status = f"HTTP {answer.status} " if answer is not None else ""
    return ApiError("protocol", f"{where(cfg, url)}: GET {path}: {status}answer {what}{quoted}")


def _find(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """``exc`` or an exception in its chain (cause, context, args) of one of ``kinds``."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, kinds):
            return e
        for nxt in (e.__cause__, e.__context__, *getattr(e, "args", ())):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return None


def classify(cfg: ApiConfig, url: str, path: str, exc: BaseException, timeout_s: float | None = None) -> ApiError:
    """One :class:`ApiError` for whatever was raised while calling ``GET url+path``."""
    if isinstance(exc, ApiError):
        return exc
    exc = _unwrap(cfg, url, path, exc)
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, Redirected):
        return ApiError("redirect", f"{where(cfg, url)}: {path} answered {exc}, a redirect; not followed (the token "
                                    "would go with it) — set the API's address to the server itself")
    if isinstance(exc, BodyError):
        code = f"HTTP {exc.status} " if exc.status else ""
        quoted = f": {excerpt(exc.body)}" if exc.body.strip() else ""
        return ApiError("protocol", f"{where(cfg, url)}: {path}: {code}answer {exc.reason}{quoted}")
    if isinstance(exc, Aborted):
        limit = f" within {timeout_s:g} s" if timeout_s else " in time"
        return ApiError("unreachable", f"{where(cfg, url)} did not finish answering GET {path}{limit}",
                        retryable=True)
    if isinstance(exc, TooLarge):
        size = f" ({exc.size} bytes)" if exc.size else ""
        return ApiError("protocol", f"{where(cfg, url)}: GET {path}: answer larger than the suite reads{size}")
    tls = _find(exc, (requests.exceptions.SSLError, ssl.SSLError))
    if tls is None:
        try:
            from keystoneauth1 import exceptions as ks
        except ImportError:  # pragma: no cover - openstacksdk brings it
            ks = None  # type: ignore[assignment]
        if ks is not None and isinstance(exc, ks.SSLError):
            tls = exc
    if tls is not None:
        return tls_error(cfg, url, str(tls))
    name = type(exc).__name__
    module = type(exc).__module__
    if module.startswith(("keystoneauth1", "openstack")):
        status = getattr(exc, "http_status", None) or getattr(exc, "status_code", None)
        if isinstance(status, int):
            return http_error(cfg, url, path, status, str(getattr(exc, "details", "") or ""))
        if name in ("ConnectFailure", "ConnectTimeout", "UnknownConnectionError", "RetriableConnectionFailure",
                    "ConnectionError", "RequestTimeout"):
            return ApiError("unreachable", f"{where(cfg, url)} does not answer: {_reason(exc)}", retryable=True)
    conn = _find(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                       TimeoutError))
    if conn is not None:
        return ApiError("unreachable", f"{where(cfg, url)} does not answer: {_reason(conn)}", retryable=True)
    return ApiError("protocol", f"{where(cfg, url)}: GET {path}: {name}: {one_line(exc, 160)}")


# py-consul and hvac raise one exception type per status (hvac keeps no status code)
_STATUS_OF = {"ACLDisabled": 401, "ACLPermissionDenied": 403, "NotFound": 404, "BadRequest": 400,
              "InvalidRequest": 400, "Unauthorized": 401, "Forbidden": 403, "InvalidPath": 404,
              "PreconditionFailed": 412, "RateLimitExceeded": 429, "InternalServerError": 500,
              "VaultNotInitialized": 501, "BadGateway": 502, "VaultDown": 503}


def _unwrap(cfg: ApiConfig, url: str, path: str, exc: BaseException) -> BaseException:
    """The transport's error inside a library's wrapper, or a library's status error as an :class:`ApiError`:
    python-nomad wraps both in BaseNomadException (``.nomad_resp``: the response or the error); py-consul and
    hvac raise one type per status, with the body in the message (quoted through :func:`excerpt` only)."""
    inner = getattr(exc, "nomad_resp", None)
    if isinstance(inner, BaseException):
        return inner
    if isinstance(inner, requests.Response):
        return http_error(cfg, url, path, inner.status_code, inner.text)
    if type(exc).__module__.startswith(("consul", "hvac")):
        text = str(exc)
        code = _STATUS_OF.get(type(exc).__name__)
        match = re.match(r"(\d{3}) ", text)
        if code is None and match:
            code = int(match.group(1))
        if code is not None:
            return http_error(cfg, url, path, code, text)
    found = _find(exc, (Aborted, TooLarge, Redirected, BodyError))
    return found if found is not None else exc


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for pattern, reason in (("Read timed out", "read timed out"), ("timed out", "connection timed out"),
                            ("Connection refused", "connection refused"),
                            ("Name or service not known", "unknown host name"),
                            ("No route to host", "no route to host"), ("Connection reset", "connection reset"),
                            ("Connection aborted", "connection aborted"),
                            ("RemoteDisconnected", "closed the connection without answering")):
        if pattern.lower() in text.lower():
            return reason
    return one_line(text, 160)


def check_status(cfg: ApiConfig, answer: Answer, ok: tuple[int, ...] = (200,), right: str | None = None) -> None:
    """Raise the :class:`ApiError` of an answer whose status is not one of ``ok``."""
    if 300 <= answer.status < 400:
        raise redirect_error(cfg, answer)
    if answer.status not in ok:
        raise http_error(cfg, answer.url, answer.path, answer.status, answer.text(), right)


def json_of(cfg: ApiConfig, answer: Answer) -> Any:
    """The answer's JSON, or a protocol error naming the endpoint and quoting the answer."""
    from acceptance.clients.transport import BodyError

    try:
        return answer.json()
    except BodyError as e:
        raise protocol_error(cfg, answer, answer.url, answer.path, str(e)) from None
