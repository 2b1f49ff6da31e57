"""Every failure of an API call as ONE clear line that names what to fix, never a token.

:func:`classify` turns what the libraries raise (requests, python-nomad, py-consul, hvac, keystoneauth) or a
non-2xx response into an :class:`ApiError` with a ``kind``:

``config``       the suite is not configured for this API (missing address, missing file)
``tls``          the server's certificate did not verify against the configured CA
``client-cert``  the server refused our client certificate
``auth``         the token was refused (401/403)
``unreachable``  no answer: connection refused, reset or timed out (retryable)
``http``         any other non-2xx status; 5xx are retryable (e.g. 500 "No cluster leader" during an election)
``no-leader``    the API answered that there is no leader (retryable)
``protocol``     the answer is not what the API documents (not JSON, wrong shape)
"""

from __future__ import annotations

import re
import ssl
from typing import Any

import requests

from acceptance.clients.config import ApiConfig

ROOT_KINDS = ("config", "tls", "client-cert", "unreachable", "auth")


class ApiError(Exception):
    def __init__(self, kind: str, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message


def _one_line(text: object, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def tls_error(cfg: ApiConfig, url: str, detail: str) -> ApiError:
    low = detail.lower()
    if any(s in low for s in ("certificate required", "bad certificate", "unknown ca", "certificate unknown",
                              "handshake failure", "alert")) and "verify failed" not in low:
        source = cfg.cert_source or "the client certificate"
        return ApiError("client-cert", f"{cfg.title} at {url} refused the client certificate "
                                       f"({_one_line(detail, 120)}) — set {source} (and its key) to a certificate "
                                       "the cluster CA signed")
    var = cfg.ca_source.split(" in ")[0] or "the CA file"
    where = f"the system CA bundle ({var} not set)" if cfg.ca is None else f"{var}={cfg.ca}"
    fix = f"set {var} to the cluster CA"
    reason = ""
    match = re.search(r"certificate verify failed: ([^(')\]]+)", detail)
    if match:
        reason = f" ({match.group(1).strip()})"
    return ApiError("tls", f"{cfg.title} at {url}: TLS verification failed{reason} with {where} — {fix}")


def auth_error(cfg: ApiConfig, url: str, path: str, status: int, body: str = "") -> ApiError:
    var = cfg.token_var or "the token"
    what = f"{cfg.title} at {url} rejected the token ({status}) for GET {path}"
    if not cfg.token:
        return ApiError("auth", f"{what}: no token sent — set {var}", status=status)
    detail = f": {_one_line(body, 100)}" if body else ""
    return ApiError("auth", f"{what}{detail} — set {var} to a valid token with read access", status=status)


def http_error(cfg: ApiConfig, url: str, path: str, status: int, body: str = "") -> ApiError:
    if status in (401, 403):
        return auth_error(cfg, url, path, status, body)
    text = _one_line(body) if body else ""
    if status >= 500 and "no cluster leader" in text.lower():
        return ApiError("no-leader", f"{cfg.title} at {url}: GET {path}: {status} {text} (no leader elected)",
                        status=status, retryable=True)
    return ApiError("http", f"{cfg.title} at {url}: GET {path}: HTTP {status}{' ' + text if text else ''}",
                    status=status, retryable=status >= 500 and status != 501)


def _find(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """``exc`` or an exception in its chain (cause, context, python-nomad's nomad_resp) of one of ``kinds``."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, kinds):
            return e
        for nxt in (e.__cause__, e.__context__, getattr(e, "nomad_resp", None), *getattr(e, "args", ())):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return None


def classify(cfg: ApiConfig, url: str, path: str, exc: BaseException) -> ApiError:
    """One :class:`ApiError` for whatever a library raised while calling ``GET url+path``."""
    if isinstance(exc, ApiError):
        return exc
    response = getattr(exc, "nomad_resp", None)
    if isinstance(response, requests.Response):
        return http_error(cfg, url, path, response.status_code, response.text)
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
    # py-consul: the status is the exception's class or the start of its message
    name = type(exc).__name__
    if name == "ACLPermissionDenied":
        return auth_error(cfg, url, path, 403, str(exc))
    if name == "ACLDisabled":
        return auth_error(cfg, url, path, 401, str(exc))
    if type(exc).__module__.startswith("consul"):
        match = re.match(r"\s*(\d{3})\s*(.*)", str(exc), re.S)
        if match:
            return http_error(cfg, url, path, int(match.group(1)), match.group(2))
    if type(exc).__module__.startswith("keystoneauth1") or type(exc).__module__.startswith("openstack"):
        status = getattr(exc, "http_status", None) or getattr(exc, "status_code", None)
        if isinstance(status, int):
            return http_error(cfg, url, path, status, getattr(exc, "details", "") or str(exc))
        if name in ("ConnectFailure", "ConnectTimeout", "UnknownConnectionError", "RetriableConnectionFailure",
                    "ConnectionError", "RequestTimeout"):
            return ApiError("unreachable", f"{cfg.title} at {url} does not answer: {_one_line(exc, 160)}",
                            retryable=True)
    conn = _find(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                       TimeoutError))
    if conn is not None:
        return ApiError("unreachable", f"{cfg.title} at {url} does not answer: {_reason(conn)}", retryable=True)
    return ApiError("protocol", f"{cfg.title} at {url}: GET {path}: {name}: {_one_line(exc, 160)}")


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for pattern, reason in (("Read timed out", "read timed out"), ("timed out", "connection timed out"),
                            ("Connection refused", "connection refused"),
                            ("Name or service not known", "unknown host name"),
                            ("No route to host", "no route to host"), ("Connection reset", "connection reset")):
        if pattern.lower() in text.lower():
            return reason
    return _one_line(text, 160)


def check_response(cfg: ApiConfig, url: str, path: str, response: Any, ok: tuple[int, ...] = (200,)) -> None:
    """Raise the :class:`ApiError` of a requests response whose status is not one of ``ok``."""
    if response.status_code not in ok:
        raise http_error(cfg, url, path, int(response.status_code), str(response.text))
