"""Calling one API: every request bounded, the whole snapshot within one :class:`Deadline` (``apis.deadline_s``),
fail-over across the API's addresses, and retries (tenacity, until ``apis.retry_s`` or the deadline) only of what
is safe to retry. A leaderless cluster (Nomad holds each consistent read 5 s, then answers 500 "No cluster
leader") is thereby reported within the deadline, not after every master was tried for every part."""

from __future__ import annotations

import datetime as dt
import functools
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import tenacity

from acceptance.clients import transport
from acceptance.clients.config import DEFAULT_PORTS, ApiConfig, master_urls
from acceptance.clients.errors import ApiError, check_status, classify, protocol_error
from acceptance.clients.libraries import LibCall, LibClient, client_for
from acceptance.clients.shapes import ShapeError
from acceptance.clients.snapshot import ApiSnapshot, PerNode
from acceptance.clients.transport import Answer, BodyError
from acceptance.inventory import Node

T = TypeVar("T")
# What a server answers from its own state, leader or not; other reads are not asked again once it has none.
LOCAL_PATHS = ("/v1/status/", "/v1/agent/")
Accept = Callable[[Answer], ApiError | None]  # may turn an answer into a retryable error (an empty leader)


def over_urls(cfg: ApiConfig, urls: Sequence[str], what: str, attempt: Callable[[str, float], T],
              timeout: Callable[[], float], final: Callable[[ApiError], bool] = lambda e: not e.retryable,
              right: str | None = None, late: ApiError | None = None) -> tuple[str, T]:
    """The one fail-over (snapshots and remediation): ``attempt(url, timeout)`` on each address until one
    answers; a ``final`` failure (a refusal, a redirect) is raised at once, else the most telling one: an answer
    ("no leader", a 5xx) says more than a refused connection."""
    last: ApiError | None = None
    for url in urls:
        left = timeout()
        if left <= 0:
            raise last or late or ApiError("deadline", f"{cfg.title}: {what}: no time left")
        try:
            return url, attempt(url, left)
        except Exception as e:  # classify() makes one line of whatever was raised
            err = classify(cfg, url, what, e, left, right)
            if final(err):
                raise err from None
            if last is None or (last.kind == "unreachable" and err.kind != "unreachable"):
                last = err
    raise last or ApiError("config", cfg.problem or f"{cfg.title} has no address")


@dataclass
class Deadline:
    seconds: float
    clock: Callable[[], float] = time.monotonic
    end: float = field(init=False)

    def __post_init__(self) -> None:
        self.end = self.clock() + self.seconds

    def left(self) -> float:
        return self.end - self.clock()

    def passed(self) -> bool:
        return self.left() <= 0

    def error(self, cfg: ApiConfig, path: str) -> ApiError:
        return ApiError("deadline", f"{cfg.title}: GET {path} not done: the API's snapshot reached its deadline of "
                                    f"{self.seconds:g} s (apis.deadline_s)")


class Caller:
    """GETs against the API's addresses (the last one that answered first), within one deadline."""

    def __init__(self, cfg: ApiConfig, make_client: Callable[[str], LibClient] | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 deadline: Deadline | None = None) -> None:
        self.cfg, self.clock, self._sleep = cfg, clock, sleep
        self.make_client = make_client or (lambda url: client_for(cfg, url))
        self.deadline = deadline or Deadline(cfg.deadline_s, clock)
        self.retry_until = min(clock() + cfg.retry_s, self.deadline.end)
        self.order = list(cfg.urls)
        self.clients: dict[str, LibClient] = {}
        self.dead: ApiError | None = None  # no address answers (or TLS fails): later calls fail at once
        self.leaderless: ApiError | None = None  # the retry window ended without a leader

    @property
    def url(self) -> str:
        return self.order[0] if self.order else ""

    def _once(self, path: str, params: Mapping[str, str] | None, ok: tuple[int, ...], right: str | None,
              accept: Accept | None, call: LibCall | None) -> Answer:
        def one(url: str, timeout: float) -> Answer:
            client = self.clients.get(url) or self.clients.setdefault(url, self.make_client(url))
            answer = client.get(path, timeout, params, call=call, ok=ok)
            check_status(self.cfg, answer, ok, right)
            rejected = accept(answer) if accept else None
            if rejected is not None:
                raise rejected
            return answer

        def final(err: ApiError) -> bool:  # known leaderless: the other masters would say the same, 5 s each
            return not err.retryable or (err.kind == "no-leader" and self.leaderless is not None)

        url, answer = over_urls(self.cfg, list(self.order), path, one,
                                lambda: min(self.cfg.timeout_s, self.deadline.left()), final, right,
                                self.deadline.error(self.cfg, path))
        self.order.remove(url)
        self.order.insert(0, url)
        return answer

    def get(self, path: str, params: Mapping[str, str] | None = None, *, ok: tuple[int, ...] = (200,),
            right: str | None = None, accept: Accept | None = None, call: LibCall | None = None) -> Answer:
        """``call(the library's client)`` (``path`` names it; without one ``GET path``), retried while retryable;
        ``ok``: the statuses that are answers; ``right``: what a 403 means the token lacks."""
        if self.dead is not None:
            raise self.dead
        if self.leaderless is not None and not path.startswith(LOCAL_PATHS):
            raise self.leaderless  # a server holds such a read while it has no leader (Consul 7 s, Nomad 5 s)
        if self.deadline.passed():
            raise self.deadline.error(self.cfg, path)
        retrying = tenacity.Retrying(
            stop=lambda _: self.clock() >= self.retry_until or self.deadline.passed(),
            wait=tenacity.wait_exponential(multiplier=0.25, max=2),
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, ApiError) and e.retryable),
            sleep=lambda s: self._sleep(max(0.0, min(s, self.deadline.left()))), reraise=True)
        try:
            answer: Answer = retrying(self._once, path, params, ok, right, accept, call)
            return answer
        except ApiError as e:
            if e.kind in ("unreachable", "tls", "client-cert"):
                self.dead = e
            if e.kind == "no-leader":
                self.leaderless = e
            raise

    def read(self, path: str, parse: Callable[[Any], T], params: Mapping[str, str] | None = None, *,
             ok: tuple[int, ...] = (200,), right: str | None = None, accept: Accept | None = None,
             call: LibCall | None = None) -> T:
        return parse_answer(self.cfg, self.get(path, params, ok=ok, right=right, accept=accept, call=call), parse)


def parse_answer(cfg: ApiConfig, answer: Answer, parse: Callable[[Any], T]) -> T:
    """``parse(the answer's data)``; anything wrong with it is a ``protocol`` error naming the endpoint and
    quoting the answer: never a bare exception, never a value a check would pass on."""
    try:
        return parse(answer.data if answer.data is not None else answer.json())
    except BodyError as e:
        raise protocol_error(cfg, answer, str(e)) from None
    except ShapeError as e:
        raise protocol_error(cfg, answer, f"is not as documented: {e}") from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        raise protocol_error(cfg, answer, f"is not as documented ({type(e).__name__})") from None


MasterProbe = Callable[[ApiConfig, LibClient, Callable[[], float]], T]  # (cfg on one master, its client, timeout)
GRACE_S = 0.5  # past a deadline, for the transport's own error (it names the cause) to arrive first


def bounded_all(seconds: float, fns: Mapping[str, Callable[[], T]]) -> dict[str, T | Exception]:
    """Each ``fn()`` inside ``transport.deadline(seconds)``, in daemon threads the caller stops waiting for at the
    deadline: a library can also wait on itself, which no socket deadline ends (keystoneauth, after a 401 to its
    version discovery, asks for a token while it holds its plugin's lock). A fn that did not finish is missing."""
    out: dict[str, T | Exception] = {}

    def run(key: str, fn: Callable[[], T]) -> None:
        with transport.deadline(seconds):
            try:
                out[key] = fn()
            except Exception as e:  # handed to the caller's thread
                out[key] = e

    threads = [threading.Thread(target=run, args=item, name=f"bounded-{item[0]}", daemon=True)
               for item in fns.items()]
    end = time.monotonic() + seconds + GRACE_S
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return dict(out)


def _master_url(cfg: ApiConfig, master: Node) -> str | None:
    urls = master_urls(cfg.url, [master], DEFAULT_PORTS.get(cfg.name, 443))
    return urls[0] if urls else None


def master_part(cfg: ApiConfig, masters: Sequence[Node], deadline: Deadline, probe: MasterProbe[T]) -> PerNode[T]:
    """``probe`` on every master at once, one attempt each (a node's own answer, not the cluster's), all
    within ``deadline``; by master name, the value or the error."""
    urls = {m.name: _master_url(cfg, m) for m in masters}

    def timeout() -> float:
        return min(cfg.timeout_s, deadline.left())

    def one(url: str) -> T | ApiError:
        one_cfg = cfg.for_url(url)
        client = client_for(one_cfg, url)
        try:
            if timeout() <= 0:
                raise deadline.error(cfg, f"(on {url})")
            return probe(one_cfg, client, timeout)
        except Exception as e:  # classify() makes one line of it
            return classify(one_cfg, url, "", e, cfg.timeout_s)
        finally:
            client.close()

    done = bounded_all(max(0.0, deadline.left()),
                       {name: functools.partial(one, url) for name, url in urls.items() if url is not None})
    values: dict[str, T | ApiError] = {}
    for m in masters:
        if urls[m.name] is None:
            values[m.name] = ApiError("config", f"{cfg.title} on {m.name}: its address {m.address!r} in the "
                                                "inventory is not a host name or IP address; fix: correct it")
        else:  # one() hands every failure back as an ApiError
            values[m.name] = cast("T | ApiError", done.get(m.name, deadline.error(cfg, f"(on {m.name})")))
    return PerNode(cfg.title, values, {name: url or "?" for name, url in urls.items()})


def refuse_unknown_token(snap: ApiSnapshot, caller: Caller, parts: Sequence[str],
                         call: LibCall | None = None, path: str = "/v1/acl/token/self") -> None:
    """An unknown or expired token gets the same 403 as a missing right (Nomad 1.9: "Permission denied" for
    both): when a part was refused, ask once whether the server knows the token (any token may read itself)."""
    cfg = caller.cfg
    refused = [n for n in parts if (e := snap.error_of(n)) is not None and e.kind == "forbidden"]
    if not refused or not cfg.token:
        return
    var = cfg.token_var or "the token"
    try:
        answer = caller.get(path, call=call)
    except ApiError as e:
        if e.status not in (401, 403, 404):
            return
        why, status = f"is not a token {cfg.title} knows (unknown or expired: GET {path} answered {e.status})", \
            e.status
    else:  # known; Nomad still shows a token past its ExpirationTime until it is garbage-collected
        expired = _expired_at(answer)
        if expired is None:
            return  # each refused part lacks the right it names
        why, status = f"expired at {expired} (GET {path})", answer.status
    err = ApiError("auth", f"{var} {why} — set {var} to a valid token with the rights README.md lists",
                   status=status)
    for name in refused:
        snap.set_part(name, err)


def _expired_at(answer: Answer) -> str | None:
    """The token's ExpirationTime when it has passed (RFC 3339, nanoseconds cut to what Python reads)."""
    try:
        text = answer.json().get("ExpirationTime")
        when = dt.datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", str(text)).replace("Z", "+00:00"))
    except (ValueError, AttributeError, TypeError, BodyError):
        return None
    if when.tzinfo is None or when.year < 2000:  # Go's zero time: no expiry
        return None
    return str(text) if when < dt.datetime.now(dt.UTC) else None
