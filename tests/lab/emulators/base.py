"""What every lab emulator shares: an HTTPS JSON server with client certificates and ACL tokens
(HTTP/1.1 keep-alive), calls to peers over persistent connections, and a small leader election with
the raft configuration and autopilot's dead-server cleanup.

Test equipment only (it runs inside the lab's nodes with Debian's python3): standard library only.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Tls:
    """Paths of the lab CA and of this node's certificate (used as server and as client)."""

    ca: str
    cert: str
    key: str

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Tls:
        return cls(ca=cfg["ca"], cert=cfg["cert"], key=cfg["key"])

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(self.ca)
        # Production requires a client certificate signed by the cluster CA; so does the lab.
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.check_hostname = False  # peers are addressed by IP; the CA is still verified
        return ctx


_CLIENT_CONTEXTS: dict[tuple[str, str, str], ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def client_context(tls: Tls) -> ssl.SSLContext:
    """One client context per certificate for the life of the process (loading one reads three files)."""
    key = (tls.ca, tls.cert, tls.key)
    with _CONTEXTS_LOCK:
        if key not in _CLIENT_CONTEXTS:
            _CLIENT_CONTEXTS[key] = tls.client_context()
        return _CLIENT_CONTEXTS[key]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    authz: Any = None  # the resolved ACL token (set by the server's token check)
    filtered: bool = False  # whether ACLs removed items from the answer (Consul's X-Consul-Results-Filtered-By-ACLs)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def flag(self, name: str) -> bool:
        """A query flag given as `?name`, `?name=true` or `?name=1`."""
        return name in self.query and self.query[name].lower() not in ("false", "0")


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as is (text bodies, DNS-less plain answers)

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None and self.status in (204,):
            return b""
        return json.dumps(self.body).encode()


def error(status: int, text: str) -> Response:
    """Nomad and Consul answer errors as plain text, not JSON."""
    return Response(status=status, raw=(text + "\n").encode(), headers={"Content-Type": "text/plain"})


Handler = Callable[[Request], Response]


@dataclass
class Route:
    methods: set[str]
    regex: re.Pattern[str]
    fn: Handler
    acl: bool  # whether the endpoint resolves and checks an ACL token
    need: str  # the right the endpoint needs, as the emulator's token check understands it ("" = any token)


class Router:
    """Maps (method, path pattern) to handlers; `{name}` in a pattern captures one path segment,
    `{name*}` the rest of the path."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(self, methods: str, pattern: str, acl: bool = True, need: str = "") -> Callable[[Handler], Handler]:
        regex = re.sub(r"\{(\w+)\*\}", r"(?P<\1>.*)", pattern)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        compiled = re.compile("^" + regex + "$")

        def register(fn: Handler) -> Handler:
            self.routes.append(Route(set(methods.split("|")), compiled, fn, acl, need))
            return fn

        return register

    def wrap(self, wrapper: Callable[[Handler], Handler]) -> None:
        for r in self.routes:
            r.fn = wrapper(r.fn)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None | str:
        """The route and its path parameters; "405" when only the method is wrong; None when nothing matches."""
        wrong_method = False
        for r in self.routes:
            m = r.regex.match(path)
            if m:
                if method in r.methods:
                    return r, m.groupdict()
                wrong_method = True
        return "405" if wrong_method else None


TokenCheck = Callable[[Request, str], Response | None]


def dispatch(router: Router, req: Request, check: TokenCheck | None) -> Response:
    """Runs a request through a router: route, token check, handler."""
    found = router.match(req.method, req.path)
    if found is None:
        return error(404, "Invalid URL path")
    if isinstance(found, str):
        return error(405, "Invalid method")
    route, params = found
    req.params = params
    denied = check(req, route.need) if (route.acl and check) else None
    return denied or _safe(route.fn, req)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler], ctx: ssl.SSLContext | None):
        self.ctx = ctx
        super().__init__(addr, handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        if self.ctx is not None:
            # The handshake runs in the connection's own thread (see _Handler.setup), not in the accept loop,
            # where one slow handshake would hold up every other new connection.
            sock = self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ssl.SSLError, ValueError)):
            return  # a client that went away or failed its handshake: nothing to report
        super().handle_error(request, client_address)


IDLE_TIMEOUT_S = 60.0  # a keep-alive connection idle this long is closed by the server


def serve(
    bind: str,
    port: int,
    router: Router,
    tls: Tls | None,
    token_check: TokenCheck | None = None,
    name: str = "api",
) -> ThreadingHTTPServer:
    """Starts an HTTPS (or, with tls=None, plain HTTP) server in a daemon thread; connections are kept
    alive (HTTP/1.1) until the client closes them or they are idle for IDLE_TIMEOUT_S."""

    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = name
        timeout = IDLE_TIMEOUT_S

        def setup(self) -> None:
            if isinstance(self.request, ssl.SSLSocket):
                self.request.settimeout(10.0)
                self.request.do_handshake()
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            return  # the journal would drown in scrapes and heartbeats

        def _dispatch(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            req = Request(self.command, parts.path, query, {k.lower(): v for k, v in self.headers.items()}, body)
            resp = dispatch(router, req, token_check)
            payload = resp.encode() if self.command != "HEAD" else b""
            self.send_response(resp.status)
            headers = {"Content-Type": "application/json", **resp.headers}
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload:
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _dispatch  # noqa: N815

    server = _Server((bind, port), _Handler, tls.server_context() if tls is not None else None)
    threading.Thread(target=server.serve_forever, name=f"{name}:{port}", daemon=True).start()
    return server


def _safe(fn: Handler, req: Request) -> Response:
    try:
        return fn(req)
    except (KeyError, ValueError, TypeError) as exc:
        return error(400, f"Bad request: {exc}")


def bearer_token(req: Request, header: str) -> str:
    """The ACL token of a request: the product's own header, or `Authorization: Bearer`."""
    if header in req.headers:
        return req.headers[header]
    auth = req.headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else req.query.get("token", "")


# ----------------------------------------------------------------------------- calls to peers

POOL_IDLE_S = 30.0  # connections idle longer than this are not reused (the server closes them at 60 s)
POOL_PER_HOST = 4


class _Pool:
    """Persistent HTTP(S) connections, per peer and client certificate: one TLS handshake per
    connection instead of one per call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: dict[tuple[str, str, int, int], list[tuple[float, http.client.HTTPConnection]]] = {}

    def _get(self, key: tuple[str, str, int, int]) -> http.client.HTTPConnection | None:
        with self.lock:
            conns = self.idle.get(key) or []
            while conns:
                since, conn = conns.pop()
                if time.monotonic() - since < POOL_IDLE_S:
                    return conn
                conn.close()
        return None

    def _put(self, key: tuple[str, str, int, int], conn: http.client.HTTPConnection) -> None:
        with self.lock:
            conns = self.idle.setdefault(key, [])
            if len(conns) < POOL_PER_HOST:
                conns.append((time.monotonic(), conn))
                return
        conn.close()

    def _drop(self, key: tuple[str, str, int, int]) -> None:
        with self.lock:
            conns = self.idle.pop(key, [])
        for _, conn in conns:
            conn.close()

    def request(self, url: str, ctx: ssl.SSLContext | None, method: str, body: bytes | None,
                headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, host, port, id(ctx))
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (0, 1):
            conn = self._get(key) if attempt == 0 else None
            reused = conn is not None
            if conn is None:
                if parts.scheme == "https":
                    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
                else:
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
            elif conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and not isinstance(exc, TimeoutError):
                    # The peer closed the connection (restarted, or idle too long): the others kept for it are
                    # as stale; once more on a new one.
                    self._drop(key)
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if resp.will_close:
                conn.close()
            else:
                self._put(key, conn)
            return resp.status, data
        raise ConnectionError("unreachable")


_POOL = _Pool()


def call(
    url: str,
    tls: Tls | None,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 2.0,
    raw_body: bytes | None = None,
) -> tuple[int, Any]:
    """One JSON call to a peer over a kept-alive connection; (0, None) when it cannot be reached.
    `raw_body` is sent as is (an already serialised JSON document)."""
    data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
    hdrs = dict(headers or {})
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    try:
        status, raw = _POOL.request(url, client_context(tls) if tls else None, method, data, hdrs, timeout)
    except (OSError, ValueError, http.client.HTTPException):
        return 0, None
    if not raw:
        return status, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


# ----------------------------------------------------------------------------- election and raft

@dataclass
class Peer:
    id: str  # raft server ID (a GUID, as raft protocol 3 uses)
    name: str  # node name
    address: str  # "ip:rpcport", as /v1/status/peers reports it


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


FAULT_DIR = "/run/alicelab"  # where lab faults leave flags (node.json "fault_dir")
LAG_FLAG = "raft-lag"  # lab fault lag-server: this server is a slow raft follower while the flag exists


class Election:
    """Leader election among the servers, sufficient for the lab's needs: a leader exists only while a
    majority can talk to each other, a lost leader is replaced, and leadership can be handed to a chosen
    server. Not raft: the leader replicates its state whole (see `notify_changed`), and the raft log is
    only counted (see "Raft log" below).

    Each server talks to each peer from a thread of its own over a kept-alive connection: a small
    heartbeat every HEARTBEAT_S (`/internal/election`), and, from the leader, the state when it changed
    (`/internal/replicate`, coalesced over COALESCE_S). A peer is failed after FAIL_AFTER_S without a
    reply (at least two missed heartbeats, so that one slow reply on a busy machine is not a failure);
    a follower that hears nothing from its leader for LEADER_TIMEOUT_S looks for a new one. Terms only
    go up; a server follows the highest term it has heard of.

    The leader also keeps the raft configuration as autopilot does (cleanup_dead_servers, on by
    default in Nomad and Consul): every AUTOPILOT_INTERVAL_S it removes failed voters from the
    configuration (never more than (voters-1)/2, so a quorum remains) and their serf status becomes
    `left`; a server that comes back rejoins as a non-voter and is promoted once it has been healthy for
    STABILIZATION_S. The configuration travels with the leader's heartbeats. (Simplification: quorum is
    counted over all configured servers, not over the current voters.)

    Raft log. Each server holds a last log index and the term of that entry (`log_index`, `log_term`). The
    leader appends: one entry when it takes office (raft's no-op of a new term), one per state change
    (`notify_changed`), and ENTRIES_PER_S in the background, as a real Nomad or Consul leader commits entries
    all the time (node heartbeats and status, evaluations, autopilot, Consul's coordinate updates and
    anti-entropy); its index is never below the application's own (`local_index`), as X-Nomad-Index or
    X-Consul-Index never pass raft's. Its heartbeats and pushes carry (index, term); a follower takes them
    (raft's AppendEntries) and reports what it holds in every reply. A lagging follower (below) keeps what it
    had, so at ENTRIES_PER_S it trails by more than MAX_TRAILING_LOGS within a few seconds.

    Autopilot's health (`health`), judged as hashicorp/raft-autopilot's `ServerState.isHealthy` (types.go)
    with Nomad's and Consul's defaults: a server is healthy when its serf status is alive, its LastContact is
    at most LAST_CONTACT_THRESHOLD_S (the leader's own: 0), its LastTerm is the leader's and its LastIndex
    is within MAX_TRAILING_LOGS of the leader's. LastTerm and LastIndex are what the server itself last
    reported; the leader's index it is compared with is the leader's at the moment that report arrived (as
    raft-autopilot's state.go reads the leader's index next to the servers' stats, so that both are of the
    same moment).

    LastContact. Raft's leader talks to a follower continuously (heartbeats every HeartbeatTimeout/10,
    entries as they come), and LastContact is how long ago the follower last heard from it: a few ms on a
    healthy network. The emulator exchanges with a peer only every HEARTBEAT_S (idle CPU), so it cannot
    take the time since the last exchange literally; it reports what a follower contacted continuously
    would: the latency of the last exchange (the round trip of the last heartbeat or push, measured by
    the leader) plus how late the next one is (the time past the moment it was due, HEARTBEAT_S after the
    last reply):

        LastContact = last_rtt + max(0, now - last_reply - HEARTBEAT_S)

    A healthy follower stays at a round trip or two (a few ms idle, some tens of ms on a loaded machine);
    one that answers late reports its latency, and one that does not answer grows without bound. No
    allowance is added: raft-autopilot has none beyond the threshold itself.

    Lab fault lag-server: while `<fault_dir>/raft-lag` (LAG_FLAG) exists, this server is a slow follower:
    it answers its leader's heartbeats and pushes LAG_DELAY_S late (in the connection's own thread: nothing
    else waits), takes neither the leader's log index nor its state (so its LastIndex trails), and stays
    alive, a voter and a follower (its leader's messages still reach it on time, so it never stands for
    election, and its replies keep it far from FAIL_AFTER_S). Without the flag it catches up at the next
    exchange. On the leader the flag does nothing (it has no leader to lag behind) until it follows.
    fault_dir: the constructor's argument, else $ALICELAB_FAULT_DIR, else /run/alicelab (FAULT_DIR).
    """

    HEARTBEAT_S = 1.0
    CALL_TIMEOUT_S = 1.5
    FAIL_AFTER_S = 4.0
    LEADER_TIMEOUT_S = 4.0
    COALESCE_S = 0.05
    AUTOPILOT_INTERVAL_S = _env_float("ALICELAB_AUTOPILOT_INTERVAL_S", 10.0)
    # Autopilot's configuration, Nomad's and Consul's defaults (raft-autopilot types.go `Config`):
    STABILIZATION_S = _env_float("ALICELAB_AUTOPILOT_STABILIZATION_S", 10.0)  # ServerStabilizationTime
    LAST_CONTACT_THRESHOLD_S = _env_float("ALICELAB_AUTOPILOT_LAST_CONTACT_THRESHOLD_S", 0.2)  # LastContactThreshold
    MAX_TRAILING_LOGS = int(_env_float("ALICELAB_AUTOPILOT_MAX_TRAILING_LOGS", 250))  # MaxTrailingLogs
    ENTRIES_PER_S = _env_float("ALICELAB_RAFT_ENTRIES_PER_S", 100.0)  # the leader's background commits
    LAG_DELAY_S = (0.3, 0.5)  # how late a lagging follower answers its leader (uniform)

    def __init__(
        self,
        me: Peer,
        peers: list[Peer],
        tls: Tls | None,
        base_url: Callable[[Peer], str],
        snapshot: Callable[[], bytes] | None = None,
        install: Callable[[Any], None] | None = None,
        local_index: Callable[[], int] | None = None,
        build: Callable[[], str] | None = None,
        fault_dir: str | None = None,
    ) -> None:
        self.me, self.peers, self.tls, self.base_url = me, [p for p in peers if p.id != me.id], tls, base_url
        self.snapshot, self.install, self.local_index = snapshot, install, local_index or (lambda: 0)
        self.build = build or (lambda: "")  # this server's version, as it tells the leader in every reply
        # where lab faults leave flags (LAG_FLAG); an attribute, so that its owner may also set it later
        self.fault_dir = fault_dir or os.environ.get("ALICELAB_FAULT_DIR") or FAULT_DIR
        self.peer_build: dict[str, str] = {}
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.term = 0
        self.leader_id = ""
        self.last_heard = 0.0
        self.alive: dict[str, bool] = {}
        self.last_reply: dict[str, float] = {}
        self.leader_since = 0.0
        # replication (leader side: what each follower has acknowledged; follower side: what it applied)
        self.version = 0
        self.acked: dict[str, int] = {}
        self.push_backoff: dict[str, float] = {}
        self.refused: set[str] = set()  # peers that answered our last push without taking it
        self.applied = (0, 0)
        # the raft log, counted: last index and its term; the leader's background appends
        self.log_index = 0
        self.log_term = 0
        self.log_tick = 0.0
        self.log_credit = 0.0
        # the raft configuration and the servers that left it
        self.voters: set[str] = {p.id for p in self.all_peers()}
        self.nonvoters: dict[str, float] = {}  # id -> since when it has been healthy (leader's clock)
        self.left: set[str] = set()
        self.config_index = 1
        # the leader's autopilot bookkeeping
        self.next_reconcile = 0.0
        self.healthy: dict[str, bool] = {}
        self.stable_since: dict[str, float] = {}
        # what each peer reported in its last reply to this server's heartbeat or push: its log term and
        # index, with this server's own index at that moment; when that reply came and how long it took
        self.peer_term: dict[str, int] = {}
        self.peer_index: dict[str, int] = {}
        self.peer_ref: dict[str, int] = {}
        self.contact_at: dict[str, float] = {}
        self.contact_rtt: dict[str, float] = {}

    def lagging(self) -> bool:
        """Whether the lab fault lag-server is on for this server (LAG_FLAG in fault_dir)."""
        return os.path.exists(os.path.join(self.fault_dir, LAG_FLAG))

    # --- what the API reports
    def leader(self) -> Peer | None:
        with self.lock:
            return self._peer(self.leader_id)

    def is_leader(self) -> bool:
        with self.lock:
            return self.leader_id == self.me.id

    def all_peers(self) -> list[Peer]:
        return sorted([self.me, *self.peers], key=lambda p: p.name)

    def _peer(self, pid: str) -> Peer | None:
        return next((p for p in [self.me, *self.peers] if p.id == pid), None)

    def member_status(self, pid: str) -> str:
        """The serf status of a server as this one sees it: alive, failed, or left (removed by autopilot)."""
        with self.lock:
            return self._status(pid)

    def _status(self, pid: str) -> str:
        if pid == self.me.id or self.alive.get(pid):
            return "alive"
        return "left" if pid in self.left else "failed"

    def raft_servers(self) -> list[tuple[Peer, bool]]:
        """The raft configuration: (server, voter), by name."""
        with self.lock:
            return [(p, p.id in self.voters) for p in self.all_peers() if p.id in self.voters or p.id in self.nonvoters]

    def health(self) -> dict[str, Any]:
        """Autopilot's view of the servers (meaningful on the leader): per server its serf status, whether
        it is healthy (see the class: raft-autopilot's rules), voter, LastContact (s), LastTerm, LastIndex
        and since when its health is what it is; the failure tolerance (healthy voters - quorum, as
        raft-autopilot's state.go counts it)."""
        now, wall = time.monotonic(), time.time()
        with self.lock:
            servers = []
            for p in self.all_peers():
                if p.id not in self.voters and p.id not in self.nonvoters:
                    continue
                mine = p.id == self.me.id
                contact, term, index, _ = self._stats(p.id, now)
                servers.append({"peer": p, "status": self._status(p.id), "healthy": self._healthy(p.id, now),
                                "voter": p.id in self.voters, "leader": p.id == self.leader_id,
                                "last_contact": min(contact, 1e6), "term": term, "index": index,
                                "build": self.build() if mine else self.peer_build.get(p.id, ""),
                                "stable_since": self.stable_since.get(p.id, self.leader_since or wall)})
            healthy_voters = sum(1 for s in servers if s["voter"] and s["healthy"])
            tolerance = max(0, healthy_voters - (len(self.voters) // 2 + 1))
            return {"healthy": all(s["healthy"] for s in servers), "failure_tolerance": tolerance,
                    "servers": servers, "leader": self.leader_id, "voters": sorted(self.voters)}

    def _stats(self, pid: str, now: float) -> tuple[float, int, int, int]:
        """A server's (LastContact in s, LastTerm, LastIndex) and the leader's index to hold its LastIndex
        against (caller holds the lock). LastContact: see the class; the leader's own is 0, as raft's
        Stats() give "last_contact" 0 on the leader; never heard from: infinite (raft's "never")."""
        if pid == self.me.id:
            return 0.0, self.log_term, self.log_index, self.log_index
        at = self.contact_at.get(pid)
        contact = float("inf") if at is None else self.contact_rtt.get(pid, 0.0) + max(0.0, now - at - self.HEARTBEAT_S)
        ref = self.peer_ref.get(pid, 0) if self.leader_id == self.me.id else self._leader_log()[1]
        return contact, self.peer_term.get(pid, 0), self.peer_index.get(pid, 0), ref

    def _leader_log(self) -> tuple[int, int]:
        """The leader's (LastTerm, LastIndex): ours when leading, else what the leader last reported."""
        if self.leader_id == self.me.id:
            return self.log_term, self.log_index
        return self.peer_term.get(self.leader_id, 0), self.peer_index.get(self.leader_id, 0)

    def _keeping_up(self, pid: str, now: float) -> bool:
        """Whether a server's contact and log are within autopilot's limits (caller holds the lock):
        hashicorp/raft-autopilot types.go `isHealthy`, its LastContact and MaxTrailingLogs rules."""
        contact, _, index, ref = self._stats(pid, now)
        # LastContact > LastContactThreshold is unhealthy (types.go isHealthy)
        if contact > self.LAST_CONTACT_THRESHOLD_S:
            return False
        # LastIndex + MaxTrailingLogs < the leader's last index is unhealthy (types.go isHealthy)
        return index + self.MAX_TRAILING_LOGS >= ref

    def _healthy(self, pid: str, now: float) -> bool:
        """Autopilot's judgement of one server (caller holds the lock): hashicorp/raft-autopilot types.go
        `ServerState.isHealthy`, given the leader's term and index as state.go `buildServerState` does."""
        leader_term, leader_index = self._leader_log()
        # no leader term or index yet (raft not bootstrapped): nothing is healthy (types.go isHealthy)
        if not leader_term or not leader_index:
            return False
        # the application (serf) must see the server alive (types.go isHealthy: NodeStatus != NodeAlive)
        if self._status(pid) != "alive":
            return False
        # LastTerm must be the leader's (types.go isHealthy: Stats.LastTerm != lastTerm)
        if self._stats(pid, now)[1] != leader_term:
            return False
        return self._keeping_up(pid, now)

    # --- the protocol, answered on the RPC port
    def on_message(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A peer tells us its term and leader (and, from a leader, the raft configuration and its log
        index); the reply says ours, with what we hold of the log."""
        lagging = self.lagging()
        with self.lock:
            sender = self._peer(msg.get("from", ""))
            if sender is not None and sender.id != self.me.id:
                self.last_reply[sender.id] = time.monotonic()  # a message is as good a sign of life as a reply
            if (sender is not None and sender.id != self.me.id and msg.get("leader") == sender.id
                    and msg["term"] == self.term and self.leader_id == self.me.id and sender.name < self.me.name):
                # Two servers that stood at the same moment (each seeing a different majority) lead the same
                # term; as terms only go up, that would last: the lower-named one keeps the leadership.
                self.leader_id = sender.id
                self.last_heard = time.monotonic()
            ours = self._follow(msg)
            if ours and not lagging:
                self._take_log(msg)
            if msg.get("handoff") == self.me.id and msg.get("leader") == msg["from"]:
                # The leader asks us to take over: a new term with us as leader.
                self.term = max(self.term, msg["term"]) + 1
                self._become_leader()
            reply = {"term": self.term, "leader": self.leader_id, "from": self.me.id, "applied": list(self.applied),
                     "last_term": self.log_term, "index": self.log_index, "build": self.build()}
        if ours and lagging:
            time.sleep(random.uniform(*self.LAG_DELAY_S))  # a slow follower: the answer comes late
        return reply

    def _take_log(self, msg: dict[str, Any]) -> None:
        """A follower takes its leader's log (index and term) from a heartbeat or push: raft's
        AppendEntries, where the follower's log becomes the leader's. Caller holds the lock."""
        if "index" not in msg:
            return
        index, term = int(msg["index"]), int(msg["term"])
        # within a term the leader's index only grows (a push may arrive after a later heartbeat)
        self.log_index = max(self.log_index, index) if term == self.log_term else index
        self.log_term = term

    def _follow(self, msg: dict[str, Any]) -> bool:
        """Adopts the sender's term and leader when they are news; True when it is our leader speaking."""
        now = time.monotonic()
        sender, leader = msg["from"], msg.get("leader", "")
        claims = bool(leader) and leader == sender
        if msg["term"] > self.term:
            self.term, self.leader_id = msg["term"], leader
            if claims:
                self.last_heard = now
        elif msg["term"] == self.term and self.leader_id != self.me.id:
            if claims and (not self.leader_id or self.leader_id == sender
                           or now - self.last_heard > self.LEADER_TIMEOUT_S):
                self.leader_id, self.last_heard = sender, now
            elif not claims and sender == self.leader_id and leader and leader != self.me.id:
                # Our leader stood down for another one of the same term (two stood at once): follow that one.
                self.leader_id, self.last_heard = leader, now
        if not claims or self.leader_id != sender or self.leader_id == self.me.id:
            return False
        self.last_heard = now
        conf = msg.get("config")
        if conf:
            self.voters, self.left = set(conf["voters"]), set(conf["left"])
            self.nonvoters = {pid: 0.0 for pid in conf["nonvoters"]}
            self.config_index = int(conf.get("index", self.config_index))
        return True

    def on_replicate(self, msg: dict[str, Any]) -> dict[str, Any]:
        """The leader's state (whole): installed when it comes from the leader of the current term."""
        lagging = self.lagging()
        with self.lock:
            ours = msg["term"] >= self.term and self._follow(msg)
        if ours and not lagging:
            if self.install is not None:
                self.install(msg["state"])
            with self.lock:
                self.applied = (int(msg["term"]), int(msg["version"]))
                self._take_log(msg)
        with self.lock:
            reply = {"term": self.term, "leader": self.leader_id, "from": self.me.id, "applied": list(self.applied),
                     "last_term": self.log_term, "index": self.log_index}
        if ours and lagging:
            time.sleep(random.uniform(*self.LAG_DELAY_S))  # a slow follower: takes nothing, answers late
        return reply

    def notify_changed(self) -> int:
        """The leader's state changed: followers get it (coalesced); returns the version to wait for."""
        with self.cond:
            self.version += 1
            if self.leader_id == self.me.id:
                self.log_index += 1  # the change is an entry of the leader's log
            self.cond.notify_all()
            return self.version

    def wait_replicated(self, version: int, timeout: float) -> bool:
        """Waits until every live follower that keeps up holds `version`, and a majority does (a raft commit
        needs a majority; a follower autopilot sees lagging is not waited for, as raft's leader does not
        wait for a slow follower). The followers that keep up are waited for too, so that a stale read on
        any of them sees the write."""
        deadline = time.monotonic() + timeout
        quorum = len(self.all_peers()) // 2 + 1
        with self.cond:
            while True:
                now = time.monotonic()
                behind = [p for p in self.peers if self.alive.get(p.id) and self.acked.get(p.id, 0) < version
                          and self._keeping_up(p.id, now)]
                holders = 1 + sum(1 for p in self.peers if self.acked.get(p.id, 0) >= version)
                done = not behind and holders >= quorum
                left = deadline - now
                if done or self.leader_id != self.me.id or left <= 0:
                    return done
                self.cond.wait(min(left, 0.1))

    def _become_leader(self) -> None:
        """Caller holds the lock."""
        self.leader_id = self.me.id
        self.leader_since = time.time()
        # The log goes on from the longest one we know of (raft elects only an up-to-date server), with the
        # new term's first entry (raft's no-op).
        self.log_index = max([self.log_index, *self.peer_index.values()]) + 1
        self.log_term = self.term
        self.log_tick, self.log_credit = time.monotonic(), 0.0
        self.version += 1
        self.acked, self.refused = {}, set()
        self.next_reconcile = time.monotonic() + self.AUTOPILOT_INTERVAL_S
        self.healthy, self.stable_since = {}, {}
        self.cond.notify_all()

    def transfer_to(self, target: Peer) -> bool:
        """Asks `target` to take over leadership; True once it has."""
        if not self.is_leader() or target.id == self.me.id:
            return target.id == self.me.id and self.is_leader()
        with self.lock:
            msg = {"term": self.term, "leader": self.me.id, "from": self.me.id, "handoff": target.id}
        status, reply = call(self.base_url(target) + "/internal/election", self.tls, "POST", msg,
                             timeout=self.CALL_TIMEOUT_S + 1)
        if status == 200 and reply and reply.get("leader") == target.id:
            with self.lock:
                self.term, self.leader_id = reply["term"], target.id
                self.last_heard = time.monotonic()
            return True
        return False

    # --- the loops
    def run(self) -> None:
        for p in self.peers:
            threading.Thread(target=self._peer_loop, args=(p,), name=f"peer-{p.name}", daemon=True).start()
        threading.Thread(target=self._loop, name="election", daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                # the application's index, outside our lock (the application takes its own)
                floor = self.local_index() if self.leader_id == self.me.id else 0
                self._decide(floor)
            except Exception as exc:  # test equipment must keep going
                print(f"election: {exc!r}", file=sys.stderr, flush=True)
            time.sleep(self.HEARTBEAT_S / 2)

    def _push_due(self, p: Peer) -> bool:
        return (self.leader_id == self.me.id and self.snapshot is not None
                and self.acked.get(p.id, 0) < self.version and time.monotonic() >= self.push_backoff.get(p.id, 0))

    def _peer_loop(self, p: Peer) -> None:
        next_beat = 0.0
        while True:
            try:
                with self.cond:
                    if not self._push_due(p):
                        self.cond.wait(max(0.0, next_beat - time.monotonic()))
                    beat = time.monotonic() >= next_beat
                    # A push takes the place of a heartbeat, except after one the peer refused (a lagging
                    # follower, or a rival leader of the same term): then the heartbeat goes first, as only it
                    # carries the configuration and settles two leaders of one term (see on_message).
                    push = self._push_due(p) and not (beat and p.id in self.refused)
                if push:
                    time.sleep(self.COALESCE_S)  # writes close together travel in one push
                    self._push(p)
                    next_beat = time.monotonic() + self.HEARTBEAT_S
                elif beat:
                    self._beat(p)
                    next_beat = time.monotonic() + self.HEARTBEAT_S
            except Exception as exc:  # test equipment must keep going
                print(f"election {p.name}: {exc!r}", file=sys.stderr, flush=True)
                time.sleep(self.HEARTBEAT_S)

    def _beat(self, p: Peer) -> None:
        with self.lock:
            msg: dict[str, Any] = {"term": self.term, "leader": self.leader_id, "from": self.me.id}
            if self.leader_id == self.me.id:
                msg["config"] = {"voters": sorted(self.voters), "nonvoters": sorted(self.nonvoters),
                                 "left": sorted(self.left), "index": self.config_index}
                msg["index"] = self.log_index
        sent = time.monotonic()
        status, reply = call(self.base_url(p) + "/internal/election", self.tls, "POST", msg,
                             timeout=self.CALL_TIMEOUT_S)
        if status != 200 or not isinstance(reply, dict):
            return
        with self.cond:
            self._contact(p, sent, reply)
            if reply["term"] > self.term:
                self.term, self.leader_id = reply["term"], reply["leader"]
                self.last_heard = time.monotonic()
            elif self.leader_id == self.me.id:
                self.peer_build[p.id] = str(reply.get("build") or "")
                term, version = reply.get("applied") or (0, 0)
                if term != self.term:
                    self.acked[p.id] = 0  # a follower that restarted, or one that never had our state
                elif version < self.acked.get(p.id, 0):
                    self.acked[p.id] = version
                self.cond.notify_all()

    def _push(self, p: Peer) -> None:
        with self.lock:
            if self.leader_id != self.me.id or self.snapshot is None:
                return
            term, version = self.term, self.version
        raw = self.snapshot()
        with self.lock:
            index = self.log_index
        head = json.dumps({"term": term, "leader": self.me.id, "from": self.me.id, "version": version,
                           "index": index})
        body = head[:-1].encode() + b', "state": ' + raw + b"}"
        sent = time.monotonic()
        status, reply = call(self.base_url(p) + "/internal/replicate", self.tls, "POST", raw_body=body,
                             timeout=self.CALL_TIMEOUT_S + 1)
        with self.cond:
            if status == 200 and isinstance(reply, dict):
                self._contact(p, sent, reply)
                held = reply.get("applied") or [term, version]
                if reply["term"] > self.term:
                    self.term, self.leader_id = reply["term"], reply["leader"]
                elif reply["term"] == term == self.term and held[0] == term and held[1] >= version:
                    self.acked[p.id] = max(self.acked.get(p.id, 0), version)
                    self.refused.discard(p.id)
                else:
                    # it did not take the state (a lagging follower, a rival leader): again after a heartbeat
                    self.push_backoff[p.id] = time.monotonic() + self.HEARTBEAT_S
                    self.refused.add(p.id)
                self.cond.notify_all()
            else:
                self.push_backoff[p.id] = time.monotonic() + self.HEARTBEAT_S

    def _contact(self, p: Peer, sent: float, reply: dict[str, Any]) -> None:
        """A peer answered our heartbeat or push sent at `sent`: it is alive; the exchange's round trip
        (LastContact, see the class) and the log term and index it reports, with our own index at this
        moment to hold them against. Caller holds the lock."""
        now = time.monotonic()
        self.last_reply[p.id] = self.contact_at[p.id] = now
        self.alive[p.id] = True
        self.contact_rtt[p.id] = now - sent
        self.peer_term[p.id] = int(reply.get("last_term") or 0)
        self.peer_index[p.id] = int(reply.get("index") or 0)
        self.peer_ref[p.id] = self.log_index

    def _decide(self, floor: int = 0) -> None:
        now = time.monotonic()
        with self.cond:
            self.alive = {p.id: now - self.last_reply.get(p.id, -1e9) < self.FAIL_AFTER_S for p in self.peers}
            quorum = 1 + sum(self.alive.values()) >= (len(self.peers) + 1) // 2 + 1
            if self.leader_id == self.me.id:
                if not quorum:
                    self.leader_id = ""  # a leader cut off from the majority steps down
                else:
                    self._append(now, floor)
                    self._autopilot(now)
                return
            stale = now - self.last_heard > self.LEADER_TIMEOUT_S
            if quorum and self.me.id in self.voters and (not self.leader_id or stale):
                # Only the lowest-named live voter stands, so that two never run at once.
                candidates = [self.me] + [p for p in self.peers if self.alive.get(p.id) and p.id in self.voters]
                if self.leader_id:
                    candidates = [c for c in candidates if c.id != self.leader_id]
                if min(candidates, key=lambda p: p.name).id == self.me.id:
                    self.term += 1
                    self._become_leader()
            elif not quorum:
                self.leader_id = ""

    def _append(self, now: float, floor: int) -> None:
        """The leader's background entries since the last round, at ENTRIES_PER_S; never below the
        application's index (caller holds the lock)."""
        self.log_credit += max(0.0, now - self.log_tick) * self.ENTRIES_PER_S
        self.log_tick = now
        entries = int(self.log_credit)
        self.log_credit -= entries
        self.log_index = max(self.log_index + entries, floor)

    def _autopilot(self, now: float) -> None:
        """The leader's autopilot round (caller holds the lock)."""
        changed = False
        healthy = {p.id: p.id == self.me.id or self._healthy(p.id, now) for p in self.all_peers()}
        for p in self.peers:
            alive = self.alive.get(p.id, False)
            if alive and p.id not in self.voters and p.id not in self.nonvoters:
                self.left.discard(p.id)  # back: it rejoins the configuration as a non-voter
                self.nonvoters[p.id] = now
                changed = True
            elif not healthy[p.id] and p.id in self.nonvoters:
                self.nonvoters[p.id] = now  # stabilization starts again once it is healthy
        for pid, since in list(self.nonvoters.items()):
            # promoted once healthy for ServerStabilizationTime (raft-autopilot stable_promoter.go, IsStable)
            if self.alive.get(pid) and healthy.get(pid) and now - since >= self.STABILIZATION_S:
                del self.nonvoters[pid]
                self.voters.add(pid)
                changed = True
        if now >= self.next_reconcile:
            self.next_reconcile = now + self.AUTOPILOT_INTERVAL_S
            for pid in [pid for pid in self.nonvoters if not self.alive.get(pid)]:
                del self.nonvoters[pid]
                self.left.add(pid)
                changed = True
            failed = sorted(pid for pid in self.voters if pid != self.me.id and not self.alive.get(pid))
            for pid in failed[: (len(self.voters) - 1) // 2]:
                self.voters.discard(pid)
                self.left.add(pid)
                changed = True
        if changed:
            self.config_index += 1
        wall = time.time()
        for pid, now_healthy in healthy.items():
            # StableSince: when its health last changed (raft-autopilot state.go buildServerState)
            if self.healthy.get(pid) != now_healthy:
                self.healthy[pid] = now_healthy
                self.stable_since[pid] = wall


def jitter(limit: float) -> float:
    return random.uniform(0, limit)


def load_json(path: str) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)

