"""Calling one API safely: a timeout on every call, fail-over across the API's addresses, and retries (tenacity)
only of what is safe to retry: idempotent GETs that failed on a connection error, a 5xx or "no leader".

One :class:`Caller` serves one snapshot: its retry window (``apis.retry_s``) is shared by all the snapshot's
calls, so a leader election shorter than the window is invisible, and a dead API costs the window once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import tenacity

from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError, classify

C = TypeVar("C")
T = TypeVar("T")


def _more_telling(last: ApiError | None, err: ApiError) -> ApiError:
    """Of two addresses' failures, an answer ("no leader", a 5xx) says more than a refused connection:
    with two servers down and one up without a leader, the API is reachable and leaderless."""
    if last is None or (last.kind == "unreachable" and err.kind != "unreachable"):
        return err
    return last


class _StopAt(tenacity.stop.stop_base):
    """Stop retrying at the caller's deadline (shared by every call of one snapshot)."""

    def __init__(self, caller: Caller[Any]) -> None:
        self.caller = caller

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.caller.clock() >= self.caller.deadline


class Caller(Generic[C]):
    """Calls ``fn(client)`` against the API's addresses (the last one that answered first)."""

    def __init__(self, cfg: ApiConfig, make_client: Callable[[str], C], *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg = cfg
        self.make_client = make_client
        self.clock = clock
        self.sleep = sleep
        self.deadline = clock() + cfg.retry_s
        self.order = list(cfg.urls)
        self.clients: dict[str, C] = {}
        self.dead: ApiError | None = None  # once no address answers (or TLS fails), later calls fail at once
        self.attempts = 0

    @property
    def url(self) -> str:
        return self.order[0] if self.order else ""

    def _client(self, url: str) -> C:
        if url not in self.clients:
            self.clients[url] = self.make_client(url)
        return self.clients[url]

    def _once(self, path: str, fn: Callable[[C], T], accept: Callable[[T], ApiError | None] | None) -> T:
        self.attempts += 1
        last: ApiError | None = None
        for url in list(self.order):
            try:
                value = fn(self._client(url))
            except Exception as e:  # the libraries raise many types: classify() makes one line of each
                err = classify(self.cfg, url, path, e)
                if not err.retryable:
                    raise err from None
                last = _more_telling(last, err)
                continue
            rejected = accept(value) if accept else None
            if rejected is not None:
                last = _more_telling(last, rejected)
                continue
            self.order.remove(url)
            self.order.insert(0, url)
            return value
        assert last is not None
        raise last

    def get(self, path: str, fn: Callable[[C], T], accept: Callable[[T], ApiError | None] | None = None) -> T:
        """``fn(client)`` (which does ``GET path``), retried until the shared deadline while the failure is
        retryable; ``accept`` may turn a 200 answer into a retryable error (e.g. an empty leader)."""
        if self.dead is not None:
            raise self.dead
        if not self.order:
            raise ApiError("config", self.cfg.problem or f"{self.cfg.title} has no address")
        retrying = tenacity.Retrying(
            stop=_StopAt(self),
            wait=tenacity.wait_exponential(multiplier=0.25, max=2),
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, ApiError) and e.retryable),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            value: T = retrying(self._once, path, fn, accept)
            return value
        except ApiError as e:
            if e.kind in ("unreachable", "tls", "client-cert"):
                self.dead = e
            raise
