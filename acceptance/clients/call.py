"""Calling one API safely: every request bounded, the whole snapshot bounded, fail-over across the API's
addresses, and retries (tenacity) only of what is safe to retry: GETs that failed on a connection error, a 5xx
or "no leader".

One :class:`Caller` serves one snapshot and holds its :class:`Deadline` (``apis.deadline_s``): the retry window
(``apis.retry_s``) ends at the deadline at the latest, every request's timeout is the smaller of
``apis.timeout_s`` and the time left, and a part the deadline leaves no time for is an error saying so. A
leaderless cluster (Nomad holds each consistent read 5 s, then answers 500 "No cluster leader") is therefore
reported within the deadline, not after every master was tried for every part.

:func:`per_master` is the one fan-out over the masters (Vault's and Prometheus' own health on each master);
:func:`master_part` makes a snapshot part of it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import tenacity

from acceptance.clients.config import DEFAULT_PORTS, ApiConfig, master_urls
from acceptance.clients.errors import ApiError, check_status, classify, json_of, protocol_error
from acceptance.clients.libraries import LibClient, client_for
from acceptance.clients.shapes import ShapeError
from acceptance.clients.snapshot import ApiSnapshot, PerNode
from acceptance.clients.transport import Answer
from acceptance.inventory import Node

T = TypeVar("T")
# What a Nomad or Consul server answers from its own state, with or without a leader; every other read needs
# the leader, and is not asked again once the API is known to have none.
LOCAL_PATHS = ("/v1/status/", "/v1/agent/")


class Client(Protocol):
    url: str

    def get(self, path: str, timeout_s: float, params: Mapping[str, str] | None = None) -> Answer: ...


def http_client(cfg: ApiConfig, url: str) -> LibClient:
    """The API's client on one address: its library on a hardened session (CA, client certificate, token)."""
    return client_for(cfg, url)


@dataclass
class Deadline:
    """The end of one API's snapshot."""

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


def _more_telling(last: ApiError | None, err: ApiError) -> ApiError:
    """Of two addresses' failures, an answer ("no leader", a 5xx) says more than a refused connection:
    with two servers down and one up without a leader, the API is reachable and leaderless."""
    if last is None or (last.kind == "unreachable" and err.kind != "unreachable"):
        return err
    return last


class _Stop(tenacity.stop.stop_base):
    """Stop retrying at the end of the retry window or of the snapshot's deadline."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.caller.clock() >= self.caller.retry_until or self.caller.deadline.passed()


class Caller:
    """GETs against the API's addresses (the last one that answered first), within one deadline."""

    def __init__(self, cfg: ApiConfig, make_client: Callable[[str], Client] | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 deadline: Deadline | None = None) -> None:
        self.cfg = cfg
        self.make_client = make_client or (lambda url: http_client(cfg, url))
        self.clock = clock
        self._sleep = sleep
        self.deadline = deadline or Deadline(cfg.deadline_s, clock)
        self.retry_until = min(clock() + cfg.retry_s, self.deadline.end)
        self.order = list(cfg.urls)
        self.clients: dict[str, Client] = {}
        self.dead: ApiError | None = None  # once no address answers (or TLS fails), later calls fail at once
        self.leaderless: ApiError | None = None  # the retry window ended without a leader
        self.attempts = 0

    @property
    def url(self) -> str:
        return self.order[0] if self.order else ""

    def client(self, url: str) -> Client:
        if url not in self.clients:
            self.clients[url] = self.make_client(url)
        return self.clients[url]

    def sleep(self, seconds: float) -> None:
        self._sleep(max(0.0, min(seconds, self.deadline.left())))

    def _once(self, path: str, params: Mapping[str, str] | None, ok: tuple[int, ...], right: str | None,
              accept: Callable[[Answer], ApiError | None] | None) -> Answer:
        self.attempts += 1
        last: ApiError | None = None
        for url in list(self.order):
            left = self.deadline.left()
            if left <= 0:
                raise last or self.deadline.error(self.cfg, path)
            timeout = min(self.cfg.timeout_s, left)
            try:
                answer = self.client(url).get(path, timeout, params)
                check_status(self.cfg, answer, ok, right)
                rejected = accept(answer) if accept else None
                if rejected is not None:
                    raise rejected
            except Exception as e:  # classify() makes one line of whatever was raised
                err = classify(self.cfg, url, path, e, timeout)
                if not err.retryable:
                    raise err from None
                if err.kind == "no-leader" and self.leaderless is not None:
                    raise err from None  # known leaderless: the other masters would say the same, 5 s each
                last = _more_telling(last, err)
                continue
            self.order.remove(url)
            self.order.insert(0, url)
            return answer
        assert last is not None
        raise last

    def get(self, path: str, params: Mapping[str, str] | None = None, *, ok: tuple[int, ...] = (200,),
            right: str | None = None, accept: Callable[[Answer], ApiError | None] | None = None) -> Answer:
        """``GET path``, retried until the retry window's end while the failure is retryable; ``ok``: the
        statuses that are answers; ``right``: what a 403 means the token lacks; ``accept`` may turn an answer
        into a retryable error (e.g. an empty leader)."""
        if self.dead is not None:
            raise self.dead
        if self.leaderless is not None and not path.startswith(LOCAL_PATHS):
            raise self.leaderless  # a server holds such a read while it has no leader (Consul 7 s, Nomad 5 s)
        if not self.order:
            raise ApiError("config", self.cfg.problem or f"{self.cfg.title} has no address")
        if self.deadline.passed():
            raise self.deadline.error(self.cfg, path)
        retrying = tenacity.Retrying(
            stop=_Stop(self),
            wait=tenacity.wait_exponential(multiplier=0.25, max=2),
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, ApiError) and e.retryable),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            answer: Answer = retrying(self._once, path, params, ok, right, accept)
            return answer
        except ApiError as e:
            if e.kind in ("unreachable", "tls", "client-cert"):
                self.dead = e
            if e.kind == "no-leader":
                self.leaderless = e
            raise

    def read(self, path: str, parse: Callable[[Any], T], params: Mapping[str, str] | None = None, *,
             ok: tuple[int, ...] = (200,), right: str | None = None,
             accept: Callable[[Answer], ApiError | None] | None = None) -> T:
        """``GET path`` parsed and shape-checked by ``parse`` (see :func:`parse_answer`)."""
        return parse_answer(self.cfg, self.get(path, params, ok=ok, right=right, accept=accept), parse)

    def json(self, path: str, params: Mapping[str, str] | None = None, *, ok: tuple[int, ...] = (200,),
             right: str | None = None, accept: Callable[[Answer], ApiError | None] | None = None) -> Any:
        """The answer's JSON (strict: see http.parse_json), or a protocol error quoting it."""
        return json_of(self.cfg, self.get(path, params, ok=ok, right=right, accept=accept))


def parse_answer(cfg: ApiConfig, answer: Answer, parse: Callable[[Any], T]) -> T:
    """``parse(json of the answer)``; any shape problem (or anything a parser raises) is a ``protocol`` error
    naming the endpoint and quoting the answer: never a bare exception, never a value a check would pass on."""
    data = json_of(cfg, answer)
    try:
        return parse(data)
    except ShapeError as e:
        raise protocol_error(cfg, answer, answer.url, answer.path, f"is not as documented: {e}") from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        raise protocol_error(cfg, answer, answer.url, answer.path,
                             f"is not as documented ({type(e).__name__})") from None


MasterProbe = Callable[[ApiConfig, Client, Callable[[], float]], T]  # (cfg aimed at one master, its client, timeout)


def _master_url(cfg: ApiConfig, master: Node) -> str | None:
    """The API's scheme and port on the master's address; None when that address is not a host."""
    urls = master_urls(cfg.url, [master], DEFAULT_PORTS.get(cfg.name, 443))
    return urls[0] if urls else None


def per_master(cfg: ApiConfig, masters: Sequence[Node], deadline: Deadline,
               probe: MasterProbe[T]) -> dict[str, T | ApiError]:
    """``probe(cfg aimed at one master, its client, timeout)`` on every master at once (``timeout()``: the
    seconds the next request may take), one attempt each (a node's own answer, not the cluster's), all within
    ``deadline``; by master name, the value or the error."""
    out: dict[str, T | ApiError] = {}
    targets: list[tuple[str, str]] = []
    for m in masters:
        url = _master_url(cfg, m)
        if url is not None:
            targets.append((m.name, url))
        else:
            out[m.name] = ApiError("config", f"{cfg.title} on {m.name}: its address {m.address!r} in the inventory "
                                             "is not a host name or IP address; fix: correct it")
    if not targets:
        return out

    def timeout() -> float:
        return min(cfg.timeout_s, deadline.left())

    def one(url: str) -> T | ApiError:
        one_cfg = cfg.for_url(url)
        client = http_client(one_cfg, url)
        try:
            if timeout() <= 0:
                raise deadline.error(cfg, f"(on {url})")
            return probe(one_cfg, client, timeout)
        except Exception as e:  # classify() makes one line of it
            return classify(one_cfg, url, "", e, cfg.timeout_s)
        finally:
            client.close()

    pool = ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix=f"{cfg.name}-master")
    try:
        futures = {name: pool.submit(one, url) for name, url in targets}
        for name, future in futures.items():
            try:
                out[name] = future.result(timeout=max(0.0, deadline.left()) + 1.0)
            except FutureTimeout:
                out[name] = deadline.error(cfg, f"(on {name})")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return out


def master_part(cfg: ApiConfig, masters: Sequence[Node], deadline: Deadline, probe: MasterProbe[T]) -> PerNode[T]:
    """:func:`per_master` as a snapshot part: each master's value or error, and the URL it was asked at."""
    return PerNode(cfg.title, per_master(cfg, masters, deadline, probe),
                   {m.name: _master_url(cfg, m) or "?" for m in masters})


def refuse_unknown_token(snap: ApiSnapshot, caller: Caller, parts: Sequence[str],
                         path: str = "/v1/acl/token/self") -> None:
    """An unknown or expired token gets the same 403 as a missing right on every endpoint (Nomad 1.9 answers
    "Permission denied" for both), so when a part was refused, the server is asked once whether it knows the
    token at all (any token may read itself); if not, every refused part says so, naming the variable."""
    cfg = caller.cfg
    refused = [n for n in parts if (e := snap.error_of(n)) is not None and e.kind == "forbidden"]
    if not refused or not cfg.token:
        return
    var = cfg.token_var or "the token"
    try:
        answer = caller.get(path)
    except ApiError as e:
        if e.status not in (401, 403, 404):
            return
        why = f"is not a token {cfg.title} knows (unknown or expired: GET {path} answered {e.status})"
        status = e.status
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
        text = json.loads(answer.body).get("ExpirationTime")
        when = dt.datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", str(text)).replace("Z", "+00:00"))
    except (ValueError, AttributeError, TypeError):
        return None
    if when.tzinfo is None or when.year < 2000:  # Go's zero time: no expiry
        return None
    return str(text) if when < dt.datetime.now(dt.UTC) else None
