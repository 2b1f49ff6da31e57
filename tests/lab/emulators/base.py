"""What every lab emulator shares: an HTTPS JSON server with client certificates and ACL
tokens, calls to peers, and a small leader election.

Test equipment only (it runs inside the lab's nodes with Debian's python3): standard library only.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

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


class Router:
    """Maps (method, path pattern) to handlers; `{name}` in a pattern captures one path segment,
    `{name*}` the rest of the path."""

    def __init__(self) -> None:
        self._routes: list[tuple[set[str], re.Pattern[str], Handler, bool]] = []

    def route(self, methods: str, pattern: str, acl: bool = True) -> Callable[[Handler], Handler]:
        regex = re.sub(r"\{(\w+)\*\}", r"(?P<\1>.*)", pattern)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        compiled = re.compile("^" + regex + "$")

        def register(fn: Handler) -> Handler:
            self._routes.append((set(methods.split("|")), compiled, fn, acl))
            return fn

        return register

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str], bool] | None | str:
        """The handler, its path parameters and whether it needs a token; "405" when only the
        method is wrong; None when nothing matches."""
        wrong_method = False
        for methods, regex, fn, acl in self._routes:
            m = regex.match(path)
            if m:
                if method in methods:
                    return fn, m.groupdict(), acl
                wrong_method = True
        return "405" if wrong_method else None


TokenCheck = Callable[[Request], Response | None]


def serve(
    bind: str,
    port: int,
    router: Router,
    tls: Tls | None,
    token_check: TokenCheck | None = None,
    name: str = "api",
) -> ThreadingHTTPServer:
    """Starts an HTTPS (or, with tls=None, plain HTTP) server in a daemon thread."""

    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = name

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            return  # the journal would drown in scrapes and heartbeats

        def _dispatch(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            req = Request(self.command, parts.path, query, {k.lower(): v for k, v in self.headers.items()}, body)
            found = router.match(self.command, parts.path)
            if found is None:
                resp = error(404, "Invalid URL path")
            elif found == "405":
                resp = error(405, "Invalid method")
            else:
                assert not isinstance(found, str)
                fn, params, acl = found
                req.params = params
                resp = (token_check(req) if (acl and token_check) else None) or _safe(fn, req)
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

    server = ThreadingHTTPServer((bind, port), _Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.server_context().wrap_socket(server.socket, server_side=True)
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


def call(
    url: str,
    tls: Tls | None,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 2.0,
) -> tuple[int, Any]:
    """One JSON call to a peer; (0, None) when it cannot be reached."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    ctx = tls.client_context() if tls else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:  # noqa: S310 - lab peers only
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")
    except (OSError, ValueError):
        return 0, None


@dataclass
class Peer:
    id: str  # raft server ID (a GUID, as raft protocol 3 uses)
    name: str  # node name
    address: str  # "ip:rpcport", as /v1/status/peers reports it


class Election:
    """Leader election among three servers, sufficient for the lab's needs: a leader exists only
    while a majority can talk to each other, a lost leader is replaced, and leadership can be
    handed to a chosen server. Not raft: no log, state is pushed whole by the leader (see `state`).

    Each server polls its peers' `/internal/election` (served by the emulator, on its RPC port) and
    acts on what it sees. Terms only go up; a server follows the highest term it has heard of.
    """

    HEARTBEAT_S = 1.0
    LEADER_TIMEOUT_S = 3.0

    def __init__(
        self,
        me: Peer,
        peers: list[Peer],
        tls: Tls | None,
        url_of: Callable[[Peer], str],
        get_state: Callable[[], Any],
        put_state: Callable[[Any], None],
    ) -> None:
        self.me, self.peers, self.tls, self.url_of = me, [p for p in peers if p.id != me.id], tls, url_of
        self.get_state, self.put_state = get_state, put_state
        self.lock = threading.Lock()
        self.term = 0
        self.leader_id = ""
        self.last_heard = 0.0
        self.alive: dict[str, bool] = {}
        self.last_reply: dict[str, float] = {}
        self.handoff_to = ""
        self.leader_since = 0.0

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

    # --- the protocol, answered on the RPC port
    def on_message(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A peer tells us its term and leader (and, from a leader, the state)."""
        with self.lock:
            sender = self._peer(msg.get("from", ""))
            if (sender is not None and sender.id != self.me.id and msg.get("leader") == sender.id
                    and msg["term"] == self.term and self.leader_id == self.me.id and sender.name < self.me.name):
                # Two servers that stood at the same moment (each seeing a different majority) lead the same
                # term; as terms only go up, that would last: the lower-named one keeps the leadership.
                self.leader_id = sender.id
                self.last_heard = time.monotonic()
            newer = msg["term"] > self.term
            leads_this_term = msg["term"] == self.term and msg.get("leader") == msg["from"]
            if newer or (leads_this_term and (not self.leader_id or self.leader_id == msg["from"])):
                self.term = msg["term"]
                self.leader_id = msg.get("leader", "")
                if self.leader_id == msg["from"]:
                    self.last_heard = time.monotonic()
                    if "state" in msg:
                        self.put_state(msg["state"])
            if msg.get("handoff") == self.me.id and msg.get("leader") == msg["from"]:
                # The leader asks us to take over: a new term with us as leader.
                self.term = max(self.term, msg["term"]) + 1
                self.leader_id = self.me.id
                self.leader_since = time.time()
            return {"term": self.term, "leader": self.leader_id, "from": self.me.id}

    def transfer_to(self, target: Peer) -> bool:
        """Asks `target` to take over leadership; True once it has."""
        if not self.is_leader() or target.id == self.me.id:
            return target.id == self.me.id and self.is_leader()
        with self.lock:
            msg = {"term": self.term, "leader": self.me.id, "from": self.me.id, "handoff": target.id}
        status, reply = call(self.url_of(target), self.tls, "POST", msg)
        if status == 200 and reply and reply.get("leader") == target.id:
            with self.lock:
                self.term, self.leader_id = reply["term"], target.id
                self.last_heard = time.monotonic()
            return True
        return False

    def run(self) -> None:
        threading.Thread(target=self._loop, name="election", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self._tick()
            time.sleep(self.HEARTBEAT_S)

    def _tick(self) -> None:
        with self.lock:
            msg: dict[str, Any] = {"term": self.term, "leader": self.leader_id, "from": self.me.id}
            leading = self.leader_id == self.me.id
        if leading:
            msg["state"] = self.get_state()
        # Peers in parallel, each with up to 2 s: on a busy machine a TLS handshake alone can take a second.
        with ThreadPoolExecutor(max_workers=len(self.peers) or 1) as pool:
            futures = {p.id: pool.submit(call, self.url_of(p), self.tls, "POST", msg, None, 2.0) for p in self.peers}
            replies = {pid: f.result() for pid, f in futures.items()}
        now = time.monotonic()
        for pid, (status, _) in replies.items():
            if status == 200:
                self.last_reply[pid] = now
        # A peer is dead after LEADER_TIMEOUT_S of silence, not after one slow reply (a busy machine).
        alive = {pid: now - self.last_reply.get(pid, -1e9) < self.LEADER_TIMEOUT_S for pid in replies}
        quorum = 1 + sum(alive.values()) >= (len(self.peers) + 1) // 2 + 1
        with self.lock:
            self.alive = alive
            for status, reply in replies.values():
                if status == 200 and reply["term"] > self.term:
                    self.term, self.leader_id = reply["term"], reply["leader"]
                    self.last_heard = time.monotonic()
            if self.leader_id == self.me.id:
                if not quorum:
                    self.leader_id = ""  # a leader cut off from the majority steps down
                return
            stale = time.monotonic() - self.last_heard > self.LEADER_TIMEOUT_S
            if quorum and (not self.leader_id or stale):
                # Only the lowest-named live server stands, so that two never run at once.
                candidates = [self.me] + [p for p in self.peers if alive.get(p.id)]
                if self.leader_id:
                    candidates = [c for c in candidates if c.id != self.leader_id]
                if min(candidates, key=lambda p: p.name).id == self.me.id:
                    self.term += 1
                    self.leader_id = self.me.id
                    self.leader_since = time.time()
            elif not quorum:
                self.leader_id = ""


def load_json(path: str) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
