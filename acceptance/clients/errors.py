"""Every failure of an API call as ONE line that names what to fix, never a secret (messages are redacted when
the error is made: a server that echoes a token back cannot put it in a report). Kinds: ``config`` (not set up),
``tls``, ``client-cert``, ``auth`` (token refused), ``forbidden`` (a right missing on one endpoint),
``acl-filtered`` (Consul hid entries), ``unreachable`` (no complete answer; retryable), ``http`` (5xx retryable),
``no-leader`` (retryable), ``redirect`` (never followed), ``protocol`` (not what the API documents),
``deadline`` (the snapshot's ``apis.deadline_s`` ran out)."""

from __future__ import annotations

import re
import ssl

import requests

from acceptance.clients.config import ApiConfig
from acceptance.clients.transport import Aborted, Answer, BodyError, Redirected, TooLarge, excerpt
from acceptance.redaction import clip, redact

# the kinds that make an API unusable as a whole (its root check api.<name>.reachable fails or errors)
ROOT_KINDS = ("config", "tls", "client-cert", "unreachable", "auth")


class ApiError(Exception):
    def __init__(self, kind: str, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        message = redact(message)
        super().__init__(message)
        self.kind, self.message, self.status, self.retryable = kind, message, status, retryable

    def __repr__(self) -> str:
        return f"ApiError({self.kind!r}, {self.message!r})"

    @property
    def unreachable(self) -> bool:
        """No answer from the service: a verdict on it (``failed``), not on the suite (see outcomes.judge)."""
        return self.kind == "unreachable"


def one_line(text: object, limit: int = 200) -> str:
    line = " ".join(clip(str(text), 4 * limit).split())  # redacted before anything is cut
    return line if len(line) <= limit else line[: limit - 3] + "..."


def asked(path: str) -> str:
    """``GET /v1/nodes`` for a read's path; a write names its method itself (``PUT /v1/kv/...``)."""
    return path if " " in path or not path.startswith("/") else f"GET {path}"


def where(cfg: ApiConfig, url: str) -> str:
    return f"{cfg.title} at {url}"


def tls_error(cfg: ApiConfig, url: str, detail: str) -> ApiError:
    low = detail.lower()
    if any(s in low for s in ("certificate required", "bad certificate", "unknown ca", "certificate unknown",
                              "handshake failure", "alert")) and "verify failed" not in low:
        return ApiError("client-cert", f"{where(cfg, url)} refused the client certificate ({one_line(detail, 120)}) "
                                       f"— set {cfg.cert_source or 'the client certificate'} (and its key) to a "
                                       "certificate the cluster CA signed")
    var = cfg.ca_source.split(" in ")[0] or "the CA file"
    place = f"the system CA bundle ({var} not set)" if cfg.ca is None else f"{var}={cfg.ca}"
    match = re.search(r"certificate verify failed: ([^(')\]]+)", detail)
    reason = f" ({match.group(1).strip()})" if match else ""
    return ApiError("tls", f"{where(cfg, url)}: TLS verification failed{reason} with {place} — "
                           f"set {var} to the cluster CA")


def http_error(cfg: ApiConfig, url: str, path: str, status: int, body: str = "", right: str | None = None) -> ApiError:
    var = cfg.token_var or "the token"
    low = body.lower()
    # Nomad "ACL token not found", Consul "ACL not found": the token itself is refused, not one right
    if status == 401 or status == 403 and (not cfg.token or any(
            s in low for s in ("token not found", "acl not found", "invalid token"))):
        what = f"{where(cfg, url)} rejected the token ({status}) for {asked(path)}"
        if not cfg.token:
            return ApiError("auth", f"{what}: no token sent — set {var}", status=status)
        detail = f": {excerpt(body, 100)}" if body else ""
        return ApiError("auth", f"{what}{detail} — set {var} to a valid token with read access", status=status)
    if status == 403:
        need = right or "read access to it"
        return ApiError("forbidden", f"{var} lacks {need} ({asked(path)} answered {status} at {url}) — give the "
                                     f"token {need}", status=status)
    text = excerpt(body) if body.strip() else ""
    if status == 429:  # a rate limit or a server too busy: retried within the snapshot's deadline
        return ApiError("http", f"{where(cfg, url)}: {asked(path)}: 429 {text} (rate limited: retried until "
                                "apis.retry_s)", status=status, retryable=True)
    if status >= 500 and "no cluster leader" in low:
        return ApiError("no-leader", f"{where(cfg, url)}: {asked(path)}: {status} {text} (no leader elected)",
                        status=status, retryable=True)
    return ApiError("http", f"{where(cfg, url)}: {asked(path)}: HTTP {status}{' ' + text if text else ''}",
                    status=status, retryable=status >= 500 and status != 501)


def redirect_error(cfg: ApiConfig, url: str, path: str, redirect: Redirected) -> ApiError:
    return ApiError("redirect", f"{where(cfg, url)}: {asked(path)} answered {redirect}, a redirect; not followed (the "
                                "token would go with it) — set the API's address to the server itself")


def protocol_error(cfg: ApiConfig, answer: Answer, what: str) -> ApiError:
    """The answer is not what the API documents: say which endpoint answered what."""
    quoted = f": {excerpt(answer.body)}" if answer.body.strip() else ""
    return ApiError("protocol", f"{where(cfg, answer.url)}: {asked(answer.path)}: HTTP {answer.status} answer "
                                f"{what}{quoted}")


def check_status(cfg: ApiConfig, answer: Answer, ok: tuple[int, ...] = (200,), right: str | None = None) -> None:
    """Raise the :class:`ApiError` of an answer whose status is not one of ``ok`` (Prometheus' plain requests)."""
    if 300 <= answer.status < 400:
        raise redirect_error(cfg, answer.url, answer.path,
                             Redirected(answer.status, answer.headers.get("location", "")))
    if answer.status not in ok:
        raise http_error(cfg, answer.url, answer.path, answer.status, answer.text(), right)


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
        todo += [n for n in (e.__cause__, e.__context__, *getattr(e, "args", ())) if isinstance(n, BaseException)]
    return None


def classify(cfg: ApiConfig, url: str, path: str, exc: BaseException, timeout_s: float | None = None,
             right: str | None = None) -> ApiError:
    """The ONE classification of whatever a call to ``url`` (``path``: what it asked) raised: the transport's
    errors, each library's status errors, TLS and connection failures; ``right``: what a 403 means is lacking."""
    from keystoneauth1 import exceptions as ks  # openstacksdk's

    if isinstance(exc, ApiError):
        return exc
    exc = _unwrap(cfg, url, path, exc, right)
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, Redirected):
        return redirect_error(cfg, url, path, exc)
    if isinstance(exc, BodyError):
        code = f"HTTP {exc.status} " if exc.status else ""
        quoted = f": {excerpt(exc.body)}" if exc.body.strip() else ""
        return ApiError("protocol", f"{where(cfg, url)}: {asked(path)}: {code}answer {exc.reason}{quoted}")
    if isinstance(exc, Aborted):
        limit = f" within {timeout_s:g} s" if timeout_s else " in time"
        return ApiError("unreachable", f"{where(cfg, url)} did not finish answering {asked(path)}{limit}",
                        retryable=True)
    if isinstance(exc, TooLarge):
        size = f" ({exc.size} bytes)" if exc.size else ""
        return ApiError("protocol", f"{where(cfg, url)}: {asked(path)}: answer larger than the suite reads{size}")
    tls = _find(exc, (requests.exceptions.SSLError, ssl.SSLError, ks.SSLError))
    if tls is not None:
        return tls_error(cfg, url, str(tls))
    if type(exc).__module__.startswith(("keystoneauth1", "openstack")):
        status = getattr(exc, "http_status", None) or getattr(exc, "status_code", None)
        if isinstance(status, int):
            return http_error(cfg, url, path, status, str(getattr(exc, "details", "") or ""))
        if isinstance(exc, ks.ConnectionError | ks.RequestTimeout):
            return ApiError("unreachable", f"{where(cfg, url)} does not answer: {_reason(exc)}", retryable=True)
    conn = _find(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                       TimeoutError))
    if conn is not None:
        return ApiError("unreachable", f"{where(cfg, url)} does not answer: {_reason(conn)}", retryable=True)
    return ApiError("protocol", f"{where(cfg, url)}: {asked(path)}: {type(exc).__name__}: {one_line(exc, 160)}")


# py-consul and hvac raise one exception type per status (hvac keeps no status code)
_STATUS_OF = {"ACLDisabled": 401, "ACLPermissionDenied": 403, "NotFound": 404, "BadRequest": 400,
              "InvalidRequest": 400, "Unauthorized": 401, "Forbidden": 403, "InvalidPath": 404,
              "PreconditionFailed": 412, "RateLimitExceeded": 429, "InternalServerError": 500,
              "VaultNotInitialized": 501, "BadGateway": 502, "VaultDown": 503}


def _unwrap(cfg: ApiConfig, url: str, path: str, exc: BaseException, right: str | None) -> BaseException:
    """The transport's error inside a library's wrapper (python-nomad's ``.nomad_resp``), or a library's status
    error as an :class:`ApiError` (py-consul and hvac: one type per status, the body in the message)."""
    inner = getattr(exc, "nomad_resp", None)
    if isinstance(inner, BaseException):
        return _unwrap(cfg, url, path, inner, right)
    inner = inner if inner is not None else getattr(exc, "response", None)
    if isinstance(inner, requests.Response):
        if 300 <= inner.status_code < 400:
            return Redirected(inner.status_code, inner.headers.get("Location", ""))
        return http_error(cfg, url, path, inner.status_code, inner.text, right)
    if type(exc).__module__.startswith(("consul", "hvac")):
        match = re.match(r"(\d{3}) ", str(exc))
        code = _STATUS_OF.get(type(exc).__name__) or (int(match.group(1)) if match else None)
        if code is not None:
            return http_error(cfg, url, path, code, str(exc), right)
    return _find(exc, (Aborted, TooLarge, Redirected, BodyError)) or exc


_REASONS = (("Read timed out", "read timed out"), ("timed out", "connection timed out"),
            ("Connection refused", "connection refused"), ("Name or service not known", "unknown host name"),
            ("No route to host", "no route to host"), ("Connection reset", "connection reset"),
            ("Connection aborted", "connection aborted"),
            ("RemoteDisconnected", "closed the connection without answering"))


def _reason(exc: BaseException) -> str:
    low = str(exc).lower()
    return next((reason for pattern, reason in _REASONS if pattern.lower() in low), one_line(exc, 160))
