"""Consul server emulator: the HTTP API (catalog, health, agent services and TTL checks, KV, sessions,
status, operator raft, metrics) and the DNS interface, as `reference/api/consul/` documents them.

Test equipment for the lab (no Consul binary can be installed there): three of these run on the
masters, `python3 -m emulators.consul /etc/alicelab/node.json`, standard library only.

Model:
- `base.Election` elects a leader among the three servers only with a quorum. The leader owns the
  state (catalog, checks, KV, sessions, client members) and applies every write ("op"); followers forward
  writes to it over the RPC port (8300) and receive the state when it changed (pushes coalesced; a
  client's write waits for them, as a raft commit would). Reads default to Consul's `default`
  consistency: they need a known leader; `?stale` reads any server's copy (once it has heard from a
  leader), as does DNS. Without a leader, writes and non-stale reads (catalog, health, KV, sessions, raft
  configuration, autopilot health) are held RPC_HOLD_S (ALICELAB_CONSUL_RPC_HOLD_S, default 7 s, Consul's
  rpc_hold_timeout; a blocking query also its own wait) and answered as soon as a leader appears, else
  500 "No cluster leader"; /v1/status/leader answers "" at once, /v1/agent/* answer at once (their writes,
  which Consul keeps in the agent's local state, fail at once: a simplification). Autopilot (see
  base.Election) removes a dead server from the raft configuration while a quorum remains; it has then
  left the LAN pool and its node leaves the catalog; back, it rejoins. Right after an election, for
  AUTOPILOT_WARMUP_S (ALICELAB_CONSUL_AUTOPILOT_WARMUP_S, default 2 s: autopilot's update interval), the new
  leader has no autopilot state yet: /v1/operator/autopilot/health answers 429 {"Healthy": false,
  "FailureTolerance": 0, "Servers": null}, as does `?stale` on a follower (whose autopilot never runs).
- Serf, simplified: the servers' membership follows the election (alive, failed, left); client agents
  (the lab's Nomad clients, for their node) say they are alive on the RPC port (`/internal/member`) and
  are failed after ALICELAB_CONSUL_REFRESH_TIMEOUT_S (default 15) seconds without news, `leaving` then
  `left` when they leave. The catalog follows members as Consul's leader makes it: an alive or failed
  member is a node with serfHealth passing or critical ("Agent not live or unreachable"), one that left
  is deregistered. A catalog node outside the pool that nobody refreshes for that timeout turns critical.
- ACLs as node.json's `acl.consul` defines them (acl.py): agent, operator, key, session and write
  endpoints refuse (403, Consul's "Permission denied: token with AccessorID ... lacks permission ..."),
  lists are filtered by node:read/service:read/session:read/key:read, with
  `X-Consul-Results-Filtered-By-ACLs: true` when something was removed and a token was given.
  DNS answers with the agent's default token, node.json `acl.consul.dns_token` (absent: anonymous, which
  sees nothing; unknown: SERVFAIL): a node it may not read, or a service with no instance left once those
  it may not read are filtered out, is NXDOMAIN (with the SOA). Without `acl` in node.json DNS filters nothing.
- Lab fault rate-limit:consul: while `<fault_dir>/rate-limit-consul` (RATE_LIMIT_FLAG; fault_dir from node.json,
  default /run/alicelab) exists, this server's HTTP API rate-limits as Consul's request_limits do (see
  RateLimiter): catalog, health, KV and session requests beyond the file's rate (requests/s; empty or not a
  number: 1) answer 429 "rate limit exceeded, try again later or against a different server", or, for a write
  on the leader, 503 "rate limit exceeded for operation that can only be performed by the leader, try again
  later"; /v1/status/*, /v1/operator/* and /v1/agent/* are not limited, nor is DNS.
- Sessions expire after TTL x ALICELAB_CONSUL_SESSION_TTL_MULTIPLIER (default 2, as Consul does) and
  are invalidated when one of their node checks turns critical; timers (session TTLs, check refreshes,
  members' last news) are the leader's own and start afresh on a leader change.
- Agent services (OpenBao's registration) belong to the server node that received the call; their
  TTL checks expire on the leader's clock; TCP/HTTP checks are run by the owning server.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import os
import random
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from . import base
from .acl import SEGMENTED, ConsulACL, ConsulAuthz

VERSION = "1.20.5"
REVISION = "74efe419"
API_PORT, RPC_PORT, DNS_PORT, SERF_PORT = 8500, 8300, 8600, 8301
REFRESH_TIMEOUT_S = float(os.environ.get("ALICELAB_CONSUL_REFRESH_TIMEOUT_S", "15"))
SESSION_TTL_MULTIPLIER = float(os.environ.get("ALICELAB_CONSUL_SESSION_TTL_MULTIPLIER", "2"))
LEAVE_S = 1.0  # a leaving member is `leaving` this long, then `left`
SERF_STATUS = {"alive": 1, "leaving": 2, "left": 3, "failed": 4}  # serf.MemberStatus, as Consul reports it
STATES = ("passing", "warning", "critical")
UDP_ANSWER_LIMIT = 3  # Consul's dns_config.udp_answer_limit default
NO_LEADER = "No cluster leader"  # agent/structs/errors.go errNoLeader; agent/http.go answers it 500, as plain text
# agent/config/default.go: performance { rpc_hold_timeout = "7s" }: how long a server holds a request that needs the
# leader while there is none (agent/consul/rpc.go ForwardRPC / canRetry), re-checking after a random stagger of
# up to RPC_HOLD_S / JITTER_FRACTION (structs.JitterFraction = 16).
RPC_HOLD_S = float(os.environ.get("ALICELAB_CONSUL_RPC_HOLD_S", "7"))
JITTER_FRACTION = 16
# How long a new leader's autopilot has no state yet: raft-autopilot updates it every update interval, which
# Consul sets to ServerHealthInterval (agent/consul/autopilot.go initAutopilot: WithUpdateInterval; 2 s default).
AUTOPILOT_WARMUP_S = float(os.environ.get("ALICELAB_CONSUL_AUTOPILOT_WARMUP_S", "2"))
FAULT_DIR = "/run/alicelab"  # where lab faults leave flags (node.json "fault_dir")
RATE_LIMIT_FLAG = "rate-limit-consul"  # lab fault rate-limit:consul (see RateLimiter)
RATE_RECHECK_S = 1.0  # the flag is read again at most this often
# agent/consul/rate/handler.go: what a server's request_limits answer beyond their rate. ErrRetryElsewhere (a read,
# or a write on a follower) is HTTP 429, ErrRetryLater (a write on the leader, which only it can do) HTTP 503, with
# the error's text as the body (test/integration/consul-container/test/ratelimit/ratelimit_test.go).
RETRY_ELSEWHERE = "rate limit exceeded, try again later or against a different server"
RETRY_LATER = "rate limit exceeded for operation that can only be performed by the leader, try again later"
# The autopilot state raft-autopilot holds while it has not computed one (autopilot.go New: &State{}; run.go resets
# it when autopilot stops): agent/consul/operator_autopilot_endpoint.go ServerHealth turns it into this reply, and
# agent/operator_endpoint.go OperatorServerHealth answers 429 since it is not Healthy (Servers: a nil slice).
EMPTY_AUTOPILOT: dict[str, Any] = {"Healthy": False, "FailureTolerance": 0, "Servers": None}


def log(msg: str) -> None:
    print(f"consul-emulator: {msg}", file=sys.stderr, flush=True)


class OpError(Exception):
    """A write refused by the state machine: HTTP status and Consul's plain-text message."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


def stagger(limit: float) -> float:
    """lib.RandomStagger: a random duration in [0, limit) (never 0 here, so that a wait loop cannot spin)."""
    return max(0.01, random.uniform(0, limit))


class RateLimiter:
    """Lab fault rate-limit:consul. While `<fault_dir>/rate-limit-consul` exists, this server's HTTP API limits
    requests as Consul's `limits { request_limits { mode = "enforcing" } }` does (agent/consul/rate/handler.go):
    a token bucket for reads and one for writes (read_rate and write_rate: both the file's content as a float,
    1.0 when it is empty or unparsable), burst max(1, rate). (Consul's burst is 10 x the rate,
    agent/consul/server.go requestLimitsBurstMultiplier; the lab's is one second's worth, so that a fault shows
    at a low rate.) The flag is read lazily, at most once every RATE_RECHECK_S: no thread, no idle work."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.checked = -math.inf
        self.rate: float | None = None  # None: no flag, no limit
        self.buckets: dict[str, tuple[float, float]] = {}  # kind -> (tokens, when counted)

    def _reload(self) -> None:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                text = fh.read(64).strip()
        except OSError:
            rate = None
        else:
            try:
                rate = float(text)
            except ValueError:
                rate = 1.0
            if not math.isfinite(rate) or rate < 0:
                rate = 1.0
        if rate != self.rate:
            self.rate, self.buckets = rate, {}

    def allow(self, kind: str) -> bool:
        """Whether one more request of this kind ("read" or "write") may go through now."""
        now = time.monotonic()
        with self.lock:
            if now - self.checked >= RATE_RECHECK_S:
                self.checked = now
                self._reload()
            if self.rate is None:
                return True
            burst = max(1.0, self.rate)
            tokens, since = self.buckets.get(kind, (burst, now))
            tokens = min(burst, tokens + (now - since) * self.rate)
            allowed = tokens >= 1.0
            self.buckets[kind] = (tokens - 1.0 if allowed else tokens, now)
            return allowed


def rate_kind(method: str, path: str) -> str | None:
    """What request_limits count an HTTP request as: "read", "write", or None when it is not limited. Only RPCs
    are limited: agent/rpc/middleware/rate_limit_mappings.go makes Status.* and Operator.* exempt, and the
    /v1/agent/ endpoints answer from the agent's own state (no RPC). Catalog, Health, KVS and Session reads
    are reads, their writes writes."""
    if path.startswith(("/v1/status/", "/v1/operator/", "/v1/agent/")):
        return None
    return "read" if method in ("GET", "HEAD") else "write"


def parse_duration(text: Any, default: float = 0.0) -> float:
    """Go durations as Consul accepts them ("15s", "1m30s", "500ms"); a bare number is seconds
    (LockDelay also accepts nanoseconds as a number, see session_create)."""
    if text is None or text == "":
        return default
    if isinstance(text, (int, float)):
        return float(text)
    total, pos = 0.0, 0
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(f"time: invalid duration {text!r}")
    return total


def go_duration(seconds: float) -> str:
    """How Go prints a time.Duration (enough for TTLs and intervals)."""
    if seconds == int(seconds):
        s = int(seconds)
        h, rest = divmod(s, 3600)
        m, s = divmod(rest, 60)
        return (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{s}s"
    return f"{seconds}s"


# ---------------------------------------------------------------------------------------------
# The state machine: a plain JSON document, so that it can be pushed whole to followers.


def empty_state() -> dict[str, Any]:
    return {
        "Term": 0,
        "Index": 1,
        "Nodes": {},  # name -> node
        "Services": {},  # node -> service id -> service
        "Checks": {},  # node -> check id -> check
        "CheckMeta": {},  # "node/check" -> {source: catalog|agent|server, ttl, def, expired}
        "KV": {},  # key -> entry (Value base64 or None)
        "LockDelay": {},  # key -> wall-clock time until which acquire is refused
        "Sessions": {},  # id -> session
        "Members": {},  # client agents' LAN members: name -> {Name, Addr, ID, Tags, Status, Since}
    }


class Store:
    """The replicated state and the operations that change it. Every method named `op_*` runs on
    the leader only, under `lock`, and returns a JSON result or raises OpError; an operation that
    changes the state moves `Index` (the leader replicates the state when it moved).

    Timers are the leader's own, not replicated (as in Consul, where TTL checks time out on their agent,
    sessions on the leader, and serf detects failures): when a check was last refreshed, when a TTL
    session expires, when a client agent was last heard of. A new leader starts them afresh."""

    def __init__(self, datacenter: str) -> None:
        self.dc = datacenter
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # blocking queries wait on it
        self.s = empty_state()
        self.refreshed: dict[str, float] = {}  # "node/check" -> when the check was last registered or updated
        self.session_expiry: dict[str, float] = {}  # session id -> wall-clock expiry (TTL sessions only)
        self.member_seen: dict[str, float] = {}  # client agent -> when it was last heard of

    # --- replication
    def snapshot(self, term: int) -> bytes:
        with self.lock:
            self.s["Term"] = max(self.s["Term"], term)
            return json.dumps(self.s).encode()

    def install(self, state: dict[str, Any]) -> None:
        with self.lock:
            if (state.get("Term", 0), state.get("Index", 0)) >= (self.s["Term"], self.s["Index"]):
                self.s = dict(empty_state(), **state)
                self.changed.notify_all()

    def index(self) -> int:
        with self.lock:
            return int(self.s["Index"])

    def bump(self) -> int:
        self.s["Index"] += 1
        self.changed.notify_all()
        return int(self.s["Index"])

    def apply(self, op: dict[str, Any]) -> Any:
        with self.lock:
            fn: Callable[[dict[str, Any]], Any] = getattr(self, "op_" + op["op"])
            return fn(op)

    # --- catalog (a registration identical to what is there changes nothing, as in Consul's state store)
    def _node(self, name: str, node_id: str, address: str, meta: dict[str, str] | None, idx: int) -> bool:
        old = self.s["Nodes"].get(name)
        node = {
            "ID": node_id or (old or {}).get("ID", ""),
            "Node": name,
            "Address": address,
            "Datacenter": self.dc,
            "TaggedAddresses": {"lan": address, "lan_ipv4": address, "wan": address, "wan_ipv4": address},
            "Meta": meta if meta is not None else (old or {}).get("Meta", {}),
            "CreateIndex": (old or {}).get("CreateIndex", idx),
            "ModifyIndex": idx,
        }
        self.s["Services"].setdefault(name, {})
        self.s["Checks"].setdefault(name, {})
        if old and all(old[k] == node[k] for k in ("ID", "Address", "Meta")):
            return False  # an unchanged node keeps its ModifyIndex
        self.s["Nodes"][name] = node
        return True

    def _service(self, node: str, svc: dict[str, Any], idx: int) -> tuple[str, bool]:
        name = svc.get("Service") or svc.get("Name") or ""
        if not name:
            raise OpError(400, "Must provide service name (Service.Service) with the registration")
        sid = svc.get("ID") or name
        old = self.s["Services"].get(node, {}).get(sid)
        addr = svc.get("Address") or ""
        port = int(svc.get("Port") or 0)
        tagged = {}
        if addr:
            tagged = {k: {"address": addr, "port": port} for k in ("lan", "lan_ipv4", "wan", "wan_ipv4")}
        weights = svc.get("Weights") or {"Passing": 1, "Warning": 1}
        entry = {
            "Kind": svc.get("Kind") or "",
            "ID": sid,
            "Service": name,
            "Tags": list(svc.get("Tags") or []),
            "Address": addr,
            "TaggedAddresses": tagged,
            "Meta": dict(svc.get("Meta") or {}),
            "Port": port,
            "Weights": weights,
            "EnableTagOverride": bool(svc.get("EnableTagOverride", False)),
            "Datacenter": self.dc,
            "CreateIndex": (old or {}).get("CreateIndex", idx),
            "ModifyIndex": idx,
        }
        if old and all(old[k] == entry[k] for k in entry if k not in ("CreateIndex", "ModifyIndex")):
            return sid, False
        self.s["Services"].setdefault(node, {})[sid] = entry
        return sid, True

    def _check(self, node: str, chk: dict[str, Any], idx: int, source: str, now: float) -> tuple[str, bool]:
        cid = chk.get("CheckID") or chk.get("ID") or chk.get("Name") or ""
        if not cid:
            raise OpError(400, "Missing check ID")
        sid = chk.get("ServiceID") or ""
        svc = self.s["Services"].get(node, {}).get(sid) if sid else None
        if sid and svc is None:
            raise OpError(500, f'Unknown service ID "{sid}" for check ID "{cid}"')
        status = chk.get("Status") or "critical"
        if status not in STATES:
            raise OpError(400, f"Invalid check status: {status!r}")
        ttl = parse_duration(chk.get("TTL"))
        old = self.s["Checks"].get(node, {}).get(cid)
        entry = {
            "Node": node,
            "CheckID": cid,
            "Name": chk.get("Name") or cid,
            "Status": status,
            "Notes": chk.get("Notes") or "",
            "Output": chk.get("Output") or "",
            "ServiceID": sid,
            "ServiceName": svc["Service"] if svc else "",
            "ServiceTags": list(svc["Tags"]) if svc else [],
            "Type": "ttl" if ttl else ("http" if chk.get("HTTP") else ("tcp" if chk.get("TCP") else "")),
            "Interval": chk.get("Interval") or "",
            "Timeout": chk.get("Timeout") or "",
            "ExposedPort": 0,
            "Definition": {},
            "CreateIndex": (old or {}).get("CreateIndex", idx),
            "ModifyIndex": idx,
        }
        key = f"{node}/{cid}"
        meta = {
            "source": source,
            "ttl": ttl,
            "def": {k: chk[k] for k in ("HTTP", "TCP", "Interval", "Timeout", "Method", "Header") if k in chk},
        }
        self.refreshed[key] = now
        old_meta = {k: v for k, v in self.s["CheckMeta"].get(key, {}).items() if k != "expired"}
        if (old and old_meta == meta
                and all(old[k] == entry[k] for k in entry if k not in ("CreateIndex", "ModifyIndex"))):
            self.s["CheckMeta"][key].pop("expired", None)
            return cid, False
        self.s["Checks"].setdefault(node, {})[cid] = entry
        self.s["CheckMeta"][key] = meta
        return cid, True

    def _drop_check(self, node: str, cid: str) -> None:
        self.s["Checks"].get(node, {}).pop(cid, None)
        self.s["CheckMeta"].pop(f"{node}/{cid}", None)
        self.refreshed.pop(f"{node}/{cid}", None)

    def _drop_service(self, node: str, sid: str) -> None:
        self.s["Services"].get(node, {}).pop(sid, None)
        for cid, chk in list(self.s["Checks"].get(node, {}).items()):
            if chk["ServiceID"] == sid:
                self._drop_check(node, cid)

    def _drop_node(self, node: str) -> None:
        for cid in list(self.s["Checks"].get(node, {})):
            self._drop_check(node, cid)
        for table in ("Nodes", "Services", "Checks"):
            self.s[table].pop(node, None)
        self._invalidate_sessions(lambda sess: sess["Node"] == node)

    def _set_status(self, node: str, cid: str, status: str, output: str, idx: int) -> bool:
        chk = self.s["Checks"].get(node, {}).get(cid)
        if chk is None or (chk["Status"] == status and chk["Output"] == output):
            return False
        chk["Status"], chk["Output"], chk["ModifyIndex"] = status, output, idx
        return True

    def op_catalog_register(self, op: dict[str, Any]) -> Any:
        body, now = op["body"], op["now"]
        node = body.get("Node") or ""
        if not node:
            raise OpError(400, "Must supply node")
        if not body.get("Address"):
            raise OpError(400, "Must supply address")
        idx = self.s["Index"] + 1
        changed = False
        if not body.get("SkipNodeUpdate") or node not in self.s["Nodes"]:
            changed |= self._node(node, body.get("ID") or "", body["Address"], body.get("NodeMeta"), idx)
        if body.get("Service"):
            changed |= self._service(node, body["Service"], idx)[1]
        checks = list(body.get("Checks") or []) + ([body["Check"]] if body.get("Check") else [])
        for chk in checks:
            changed |= self._check(node, chk, idx, "catalog", now)[1]
        if changed:
            self.bump()
        return True

    def op_catalog_deregister(self, op: dict[str, Any]) -> Any:
        body = op["body"]
        node = body.get("Node") or ""
        if not node:
            raise OpError(400, "Must supply node")
        self.bump()
        if body.get("ServiceID"):
            self._drop_service(node, body["ServiceID"])
        elif body.get("CheckID"):
            self._drop_check(node, body["CheckID"])
        else:
            self._drop_node(node)
        return True

    # --- agent API (services and checks owned by the server node that received the call)
    def op_agent_service_register(self, op: dict[str, Any]) -> Any:
        node, body, now = op["node"], op["body"], op["now"]
        if node not in self.s["Nodes"]:
            raise OpError(500, f"Unknown node {node!r}: the server has not joined the catalog yet")
        idx = self.s["Index"] + 1
        sid, changed = self._service(node, {**body, "Service": body.get("Name") or body.get("Service")}, idx)
        name = self.s["Services"][node][sid]["Service"]
        defs = list(body.get("Checks") or []) + ([body["Check"]] if body.get("Check") else [])
        for i, chk in enumerate(defs):
            default_id = f"service:{sid}" if len(defs) == 1 else f"service:{sid}:{i + 1}"
            chk = {**chk, "ServiceID": sid, "CheckID": chk.get("CheckID") or chk.get("ID") or default_id}
            chk.setdefault("Name", f"Service '{name}' check")
            old = self.s["Checks"].get(node, {}).get(chk["CheckID"])
            if old is not None and "Status" not in chk:
                chk["Status"] = old["Status"]  # re-registering without a status keeps the check's status
                chk.setdefault("Output", old["Output"])
            changed |= self._check(node, chk, idx, "agent", now)[1]
        if changed:
            self.bump()
        return None

    def op_agent_service_deregister(self, op: dict[str, Any]) -> Any:
        node, sid = op["node"], op["id"]
        if sid not in self.s["Services"].get(node, {}):
            raise OpError(404, f'Unknown service ID "{sid}". Ensure that the service ID is passed, '
                               "not the service name.")
        self.bump()
        self._drop_service(node, sid)
        return None

    def op_agent_check_register(self, op: dict[str, Any]) -> Any:
        if self._check(op["node"], op["body"], self.s["Index"] + 1, "agent", op["now"])[1]:
            self.bump()
        return None

    def op_agent_check_deregister(self, op: dict[str, Any]) -> Any:
        if op["id"] not in self.s["Checks"].get(op["node"], {}):
            raise OpError(404, f'Unknown check ID "{op["id"]}". Ensure that the check ID is passed, '
                               "not the check name.")
        self.bump()
        self._drop_check(op["node"], op["id"])
        return None

    def op_agent_check_update(self, op: dict[str, Any]) -> Any:
        node, cid = op["node"], op["id"]
        chk = self.s["Checks"].get(node, {}).get(cid)
        meta = self.s["CheckMeta"].get(f"{node}/{cid}")
        if chk is None or meta is None:
            raise OpError(404, f'Unknown check ID "{cid}". Ensure that the check ID is passed, not the check name.')
        if op.get("ttl_only", True) and not meta["ttl"]:
            raise OpError(500, f'CheckID "{cid}" does not have associated TTL')
        if op["status"] not in STATES:
            raise OpError(400, f"Invalid check status: \"{op['status']}\"")
        self.refreshed[f"{node}/{cid}"] = op["now"]
        meta.pop("expired", None)
        if self._set_status(node, cid, op["status"], op.get("output") or "", self.s["Index"] + 1):
            self.bump()
        return None

    # --- sessions
    def op_session_create(self, op: dict[str, Any]) -> Any:
        body, node, now = op["body"] or {}, op["node"], op["now"]
        node = body.get("Node") or node
        if node not in self.s["Nodes"]:
            raise OpError(500, f"Missing node registration: {node!r}")
        behavior = body.get("Behavior") or "release"
        if behavior not in ("release", "delete"):
            raise OpError(400, f"Invalid Behavior setting '{behavior}'")
        ttl_text = body.get("TTL") or ""
        ttl = parse_duration(ttl_text)
        if ttl and not 10 <= ttl <= 86400:
            raise OpError(400, f"Invalid Session TTL '{ttl_text}', must be between [10s=24h0m0s]")
        lock_delay = body.get("LockDelay", "15s")
        # A number is nanoseconds (Go's time.Duration), a string a Go duration.
        delay = lock_delay / 1e9 if isinstance(lock_delay, (int, float)) else parse_duration(lock_delay)
        node_checks = body.get("NodeChecks", body.get("Checks"))
        if node_checks is None:
            node_checks = ["serfHealth"]
        for cid in node_checks:
            chk = self.s["Checks"].get(node, {}).get(cid)
            if chk is None:
                raise OpError(500, f"Missing check '{cid}' registration")
            if chk["Status"] == "critical":
                raise OpError(500, f"Check '{cid}' is in critical state")
        idx = self.bump()
        sid = str(uuid.uuid4())
        self.s["Sessions"][sid] = {
            "ID": sid,
            "Name": body.get("Name") or "",
            "Node": node,
            "LockDelay": int(delay * 1e9),
            "Behavior": behavior,
            "TTL": ttl_text,
            "Checks": list(node_checks),
            "NodeChecks": list(node_checks),
            "ServiceChecks": body.get("ServiceChecks"),
            "CreateIndex": idx,
            "ModifyIndex": idx,
        }
        if ttl:
            self.session_expiry[sid] = now + ttl * SESSION_TTL_MULTIPLIER
        return {"ID": sid}

    def op_session_destroy(self, op: dict[str, Any]) -> Any:
        if op["id"] in self.s["Sessions"]:
            self.bump()
            self._invalidate(op["id"], op["now"], lock_delay=False)
        return True

    def op_session_renew(self, op: dict[str, Any]) -> Any:
        sess = self.s["Sessions"].get(op["id"])
        if sess is None:
            raise OpError(404, f"Session id '{op['id']}' not found")
        ttl = parse_duration(sess["TTL"])
        if ttl:
            self.session_expiry[op["id"]] = op["now"] + ttl * SESSION_TTL_MULTIPLIER
        return [sess]

    def _invalidate(self, sid: str, now: float, lock_delay: bool = True) -> None:
        sess = self.s["Sessions"].pop(sid, None)
        self.session_expiry.pop(sid, None)
        if sess is None:
            return
        idx = self.s["Index"]
        for key, ent in list(self.s["KV"].items()):
            if ent["Session"] != sid:
                continue
            if sess["Behavior"] == "delete":
                del self.s["KV"][key]
            else:
                ent["Session"], ent["ModifyIndex"] = "", idx
            if lock_delay and sess["LockDelay"]:
                self.s["LockDelay"][key] = now + sess["LockDelay"] / 1e9

    def _invalidate_sessions(self, pred: Callable[[dict[str, Any]], bool], now: float | None = None) -> bool:
        victims = [sid for sid, sess in self.s["Sessions"].items() if pred(sess)]
        for sid in victims:
            self._invalidate(sid, now if now is not None else time.time())
        return bool(victims)

    # --- KV
    def op_kv_put(self, op: dict[str, Any]) -> Any:
        key, now = op["key"], op["now"]
        ent = self.s["KV"].get(key)
        if op.get("cas") is not None:
            cas = int(op["cas"])
            if (cas == 0 and ent is not None) or (cas != 0 and (ent is None or ent["ModifyIndex"] != cas)):
                return False
        acquire, release = op.get("acquire"), op.get("release")
        held_by = ent["Session"] if ent else ""
        lock_index = ent["LockIndex"] if ent else 0
        if acquire:
            if acquire not in self.s["Sessions"]:
                raise OpError(500, f'invalid session "{acquire}"')
            if held_by and held_by != acquire:
                return False
            if not held_by and self.s["LockDelay"].get(key, 0) > now:
                return False  # lock-delay after an invalidation, as Consul enforces
            if not held_by:
                lock_index += 1
            held_by = acquire
        elif release:
            if held_by != release:
                return False
            held_by = ""
        idx = self.bump()
        self.s["KV"][key] = {
            "LockIndex": lock_index,
            "Key": key,
            "Flags": int(op["flags"] if op.get("flags") is not None else (ent or {}).get("Flags", 0)),
            "Value": op.get("value"),
            "Session": held_by,
            "CreateIndex": (ent or {}).get("CreateIndex", idx),
            "ModifyIndex": idx,
        }
        return True

    def op_kv_delete(self, op: dict[str, Any]) -> Any:
        key = op["key"]
        if op.get("recurse"):
            victims = [k for k in self.s["KV"] if k.startswith(key)]
        else:
            ent = self.s["KV"].get(key)
            if op.get("cas") is not None and (ent is None or ent["ModifyIndex"] != int(op["cas"])):
                return False
            victims = [key] if ent else []
        self.bump()
        for k in victims:
            self.s["KV"].pop(k, None)
        return True

    # --- LAN members (client agents; the servers' own membership comes from the election)
    def op_member(self, op: dict[str, Any]) -> Any:
        """A client agent says it is alive (or leaving): gossip, as far as the servers need it."""
        body, now = op["body"], op["now"]
        name = str(body["Node"])
        status = "leaving" if body.get("Status") == "leaving" else "alive"
        old = self.s["Members"].get(name)
        if status == "alive":
            self.member_seen[name] = now
        member = {"Name": name, "Addr": str(body["Address"]), "ID": str(body.get("ID") or ""),
                  "Tags": dict(body.get("Tags") or {}), "Status": status,
                  "Since": old["Since"] if old and old["Status"] == status else now}
        changed = member != old
        self.s["Members"][name] = member
        if status == "alive":  # the leader registers a joining member at once (handleAliveMember)
            changed |= self._member_node(name, member["Addr"], member["ID"], "alive", False, now)
        if changed:
            self.bump()
        return {"Known": name in self.s["Nodes"]}

    def op_force_leave(self, op: dict[str, Any]) -> Any:
        """`consul force-leave [-prune] NODE`: a failed client agent goes `left` (and out of the catalog), with
        prune out of the member list too (agent/agent.go ForceLeave / ForceLeaveWithPrune: serf's
        RemoveFailedNode(Prune)). An alive member is left alone: it would rejoin by gossip at once."""
        name, prune, now = str(op["name"]), bool(op.get("prune")), op["now"]
        member = self.s["Members"].get(name)
        if member is None:
            raise OpError(500, f"agent: No node found with name '{name}'")
        if member["Status"] == "alive":
            return False
        if prune:
            del self.s["Members"][name]
            self.member_seen.pop(name, None)
        else:
            member["Status"], member["Since"] = "left", now
        self._member_node(name, member["Addr"], member["ID"], "left", False, now)
        self.bump()
        return True

    def _member_node(self, name: str, ip: str, node_id: str, status: str, server: bool, now: float) -> bool:
        """The catalog follows a LAN member as Consul's leader makes it: an alive or failed member is a
        node with a serfHealth check (passing or critical), a member that left is deregistered."""
        idx = self.s["Index"] + 1
        if status == "left":
            if name in self.s["Nodes"]:
                self._drop_node(name)
                return True
            return False
        dirty = False
        if name not in self.s["Nodes"] or self.s["Nodes"][name]["Address"] != ip:
            meta = {"consul-network-segment": "", "consul-version": VERSION}
            dirty |= self._node(name, node_id, ip, meta, idx)
        if server and "consul" not in self.s["Services"].get(name, {}):
            dirty |= self._service(name, {"ID": "consul", "Service": "consul", "Port": RPC_PORT}, idx)[1]
        if "serfHealth" not in self.s["Checks"].get(name, {}):
            chk = {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
                   "Output": "Agent alive and reachable"}
            dirty |= self._check(name, chk, idx, "serf", now)[1]
        ok = status == "alive"
        output = "Agent alive and reachable" if ok else "Agent not live or unreachable"
        dirty |= self._set_status(name, "serfHealth", "passing" if ok else "critical", output, idx)
        return dirty

    # --- the leader's housekeeping (serf health, check refresh/TTL expiry, session expiry)
    def op_reap(self, op: dict[str, Any]) -> Any:
        """`servers`: [{name, ip, id, status}] with the election's view of each server (alive, failed, or
        left once autopilot removed it); client agents fail when not heard of for REFRESH_TIMEOUT_S and
        have left LEAVE_S after they said they were leaving."""
        now = op["now"]
        dirty = False
        for name, m in self.s["Members"].items():
            if m["Status"] == "alive" and now - self.member_seen.setdefault(name, now) > REFRESH_TIMEOUT_S:
                m["Status"], m["Since"] = "failed", now
                dirty = True
            elif m["Status"] == "leaving" and now - m["Since"] >= LEAVE_S:
                m["Status"], m["Since"] = "left", now
                dirty = True
        members = [(srv["name"], srv["ip"], srv["id"], srv["status"], True) for srv in op["servers"]]
        members += [(m["Name"], m["Addr"], m["ID"], m["Status"], False) for m in self.s["Members"].values()
                    if m["Name"] not in {srv["name"] for srv in op["servers"]}]
        for name, ip, node_id, status, server in members:
            dirty |= self._member_node(name, ip, node_id, "alive" if status == "leaving" else status, server, now)
        in_pool = {name for name, *_ in members}
        idx = self.s["Index"] + 1
        for key, meta in self.s["CheckMeta"].items():
            node, cid = key.split("/", 1)
            refreshed = self.refreshed.setdefault(key, now)
            if meta["source"] == "catalog" and node not in in_pool and now - refreshed > REFRESH_TIMEOUT_S:
                # A node outside the LAN pool that nobody refreshes: treated as an agent that stopped gossiping.
                dirty |= self._set_status(node, cid, "critical", "Agent not live or unreachable", idx)
            elif meta["ttl"] and not meta.get("expired") and now - refreshed > meta["ttl"]:
                meta["expired"] = True
                dirty |= self._set_status(node, cid, "critical", "TTL expired", idx)
        expired = {sid for sid, t in self.session_expiry.items() if t < now}

        def doomed(sess: dict[str, Any]) -> bool:
            checks = self.s["Checks"].get(sess["Node"], {})
            failed = any(checks.get(c, {}).get("Status", "critical") == "critical" for c in sess["NodeChecks"])
            return sess["ID"] in expired or failed

        dirty |= self._invalidate_sessions(doomed, now)
        for key in [k for k, t in self.s["LockDelay"].items() if t < now]:
            del self.s["LockDelay"][key]
        if dirty:
            self.bump()
        return dirty

    def op_reset_timers(self, op: dict[str, Any]) -> Any:
        """A new leader starts every timer afresh: TTL sessions get a full TTL again (as Consul's leader
        does), checks and client agents a full timeout."""
        now = op["now"]
        self.session_expiry = {sid: now + parse_duration(sess["TTL"]) * SESSION_TTL_MULTIPLIER
                               for sid, sess in self.s["Sessions"].items() if parse_duration(sess["TTL"])}
        self.refreshed = {key: now for key in self.s["CheckMeta"]}
        self.member_seen = {name: now for name in self.s["Members"]}
        return None

    # --- read helpers (callers hold the lock)
    def instances(self, name: str, tag: str = "") -> list[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]]:
        """(node, service, checks) of every instance of a service, checks including the node's."""
        out = []
        for node_name, services in sorted(self.s["Services"].items()):
            node = self.s["Nodes"].get(node_name)
            if node is None:
                continue
            for svc in services.values():
                if svc["Service"].lower() != name.lower() or (tag and tag.lower() not in map(str.lower, svc["Tags"])):
                    continue
                checks = [
                    c for c in self.s["Checks"].get(node_name, {}).values() if c["ServiceID"] in ("", svc["ID"])
                ]
                out.append((node, svc, sorted(checks, key=lambda c: c["CheckID"])))
        return out

    def all_checks(self) -> list[dict[str, Any]]:
        return [c for node in sorted(self.s["Checks"]) for _, c in sorted(self.s["Checks"][node].items())]


FIELDS = [
    "Address", "Behavior", "Check", "CheckID", "Checks", "Datacenter", "DeregisterCriticalServiceAfter",
    "EnableTagOverride", "Header", "HTTP", "ID", "Interval", "Kind", "LockDelay", "Meta", "Method", "Name", "Node",
    "NodeChecks", "NodeMeta", "Notes", "Output", "Passing", "Port", "Service", "ServiceChecks", "ServiceID",
    "SkipNodeUpdate", "Status", "Tags", "TaggedAddresses", "TCP", "Timeout", "TLSSkipVerify", "TTL", "Warning",
    "Weights",
]
_CANON = {f.lower(): f for f in FIELDS}
USER_MAPS = {"Meta", "NodeMeta", "Header", "TaggedAddresses"}  # keyed by user data: left as they are


def canon(body: Any) -> Any:
    """Request keys as Consul's decoder reads them: Go's JSON matching is case-insensitive and the agent
    endpoints also accept snake_case (`service_id`, `tagged_addresses`), which py-consul sends."""
    if isinstance(body, list):
        return [canon(v) for v in body]
    if not isinstance(body, dict):
        return body
    out: dict[str, Any] = {}
    for k, v in body.items():
        key: str = _CANON.get(str(k).replace("_", "").lower(), str(k))
        out[key] = v if key in USER_MAPS else canon(v)
    return out


def guarded(fn: base.Handler) -> base.Handler:
    """A handler that answers 500 (and logs) on any unexpected exception instead of dropping the
    connection; base._safe already turns KeyError/ValueError/TypeError into 400."""

    def run(req: base.Request) -> base.Response:
        try:
            return fn(req)
        except (KeyError, ValueError, TypeError):
            raise
        except Exception as exc:
            log(f"{req.method} {req.path}: " + traceback.format_exc())
            return base.error(500, f"internal error: {exc}")

    return run


def _kv_public(ent: dict[str, Any]) -> dict[str, Any]:
    """A KV entry as Consul shows it: `Session` only while a session holds the key."""
    return {k: v for k, v in ent.items() if k != "Session" or v}


def public_check(chk: dict[str, Any]) -> dict[str, Any]:
    return dict(chk)


# ---------------------------------------------------------------------------------------------
# The server: HTTP API, RPC, housekeeping, DNS.


class ConsulServer:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.name: str = cfg["name"]
        self.ip: str = cfg["ip"]
        self.dc: str = cfg.get("datacenter") or "dc1"
        self.token: str = cfg["tokens"]["consul"]  # the internal (management) token
        acl_cfg = (cfg.get("acl") or {}).get("consul") or {}
        self.acl = ConsulACL(acl_cfg, self.token)
        # DNS answers with the agent's default token (acl.tokens.default; none: anonymous), as Consul's does;
        # without `acl` in node.json at all, the lab runs without ACLs and DNS filters nothing.
        self.dns_acl = cfg.get("acl") is not None
        self.dns_token = str(acl_cfg.get("dns_token") or "")
        self.fault_dir: str = cfg.get("fault_dir") or FAULT_DIR
        self.rate_limit = RateLimiter(os.path.join(self.fault_dir, RATE_LIMIT_FLAG))
        self.tls = base.Tls.from_config(cfg["tls"])
        self.masters: list[dict[str, Any]] = cfg["masters"]
        me = next(m for m in self.masters if m["name"] == self.name)
        self.node_id: str = me["consul_id"]
        peers = [base.Peer(m["consul_id"], m["name"], f"{m['ip']}:{RPC_PORT}") for m in self.masters]
        self.store = Store(self.dc)
        self.election = base.Election(
            next(p for p in peers if p.id == self.node_id),
            peers,
            self.tls,
            lambda p: f"https://{p.address}",
            snapshot=lambda: self.store.snapshot(self._term()),
            install=self._install,
            local_index=self.store.index,
        )
        self.election.fault_dir = self.fault_dir  # the Election's own lab faults read the same flags
        self.started = time.time()
        self.last_contact = time.monotonic()
        self.contacted = False  # whether a leader ever sent us its state (raft's LastContact is not zero)
        self.applied = 0  # raft apply counter, for metrics
        self.check_runs: dict[str, float] = {}
        self.api = base.Router()
        self.rpc = base.Router()
        self._routes()
        self.api.wrap(guarded)
        self.rpc.wrap(guarded)

    # --- election glue
    def _term(self) -> int:
        with self.election.lock:
            return self.election.term

    def _install(self, state: Any) -> None:
        self.last_contact = time.monotonic()
        self.contacted = True
        if isinstance(state, dict):
            self.store.install(state)

    def _rpc_url(self, peer: base.Peer, path: str) -> str:
        return f"https://{peer.address}{path}"

    def _had_contact(self) -> bool:
        """Whether this server ever heard from a leader (or led): raft's LastContact is not zero."""
        return self.contacted or self.election.leader_since > 0

    def wait_leader(self, hold: float) -> base.Peer | None:
        """The leader; while there is none, the request is held up to `hold` seconds, looking again after a
        random stagger (agent/consul/rpc.go ForwardRPC: CHECK_LEADER, canRetry while within RPCHoldTimeout,
        lib.RandomStagger(RPCHoldTimeout / structs.JitterFraction)); None when the hold ran out."""
        deadline = time.monotonic() + hold
        while True:
            leader = self.election.leader()
            left = deadline - time.monotonic()
            if leader is not None or left <= 0:
                return leader
            time.sleep(min(left, stagger(RPC_HOLD_S / JITTER_FRACTION)))

    def submit(self, op: dict[str, Any], hold: bool = True) -> base.Response:
        """A write: applied here when leading, else forwarded to the leader. Without a leader it is held up to
        RPC_HOLD_S, as are the leader's "No cluster leader" answers (agent/consul/rpc.go canRetry:
        structs.IsErrNoLeader is always safe to retry), then 500 "No cluster leader". `hold=False` (the agent
        endpoints and the server's own checks) answers at once."""
        fresh = "now" not in op
        deadline = time.monotonic() + (RPC_HOLD_S if hold else 0.0)
        while True:
            if fresh:
                op["now"] = time.time()
            leader = self.wait_leader(max(0.0, deadline - time.monotonic()))
            if leader is None:
                return base.error(500, NO_LEADER)
            if leader.id == self.node_id:
                try:
                    return self._result(self.apply_local(op))
                except OpError as exc:
                    return base.error(exc.status, exc.text)
            status, reply = base.call(self._rpc_url(leader, "/internal/apply"), self.tls, "POST", op, timeout=3.0)
            if status == 200 and isinstance(reply, dict):
                return self._result(reply.get("result"))
            if status == 0:
                return base.error(500, f"rpc error making call: failed to reach leader {leader.address}")
            text = str(reply).rstrip("\n")
            left = deadline - time.monotonic()
            if status == 500 and text == NO_LEADER and left > 0:
                time.sleep(min(left, stagger(RPC_HOLD_S / JITTER_FRACTION)))
                continue
            return base.error(status, text)

    def apply_local(self, op: dict[str, Any], wait: bool = True) -> Any:
        """Applies an operation on the leader; when it changed the state, the followers get it (the
        pushes of writes close together are coalesced) and a client's write waits for them, as a raft
        commit does, so that it survives a change of leader."""
        before = self.store.index()
        result = self.store.apply(op)
        self.applied += 1
        if self.store.index() != before:
            version = self.election.notify_changed()
            if wait:
                self.election.wait_replicated(version, 1.0)
        return result

    def _result(self, result: Any) -> base.Response:
        if result is None:
            return base.Response(200, raw=b"", headers={"Content-Type": "text/plain"})
        return base.Response(200, result)

    # --- reads
    def meta_headers(self) -> dict[str, str]:
        leader = self.election.leader()
        leading = leader is not None and leader.id == self.node_id
        contact = 0 if leading else int((time.monotonic() - self.last_contact) * 1000)
        return {
            "X-Consul-Index": str(self.store.index()),
            "X-Consul-Knownleader": "true" if leader else "false",
            "X-Consul-Lastcontact": str(contact),
            "X-Consul-Effective-Consistency": "stale" if not leading else "leader",
            "X-Consul-Default-Acl-Policy": "deny",
        }

    def _blocking_wait(self, req: base.Request) -> float:
        """How long a blocking query (`?index`) may wait: ?wait (default 5 min, at most 10), plus up to 1/16 of it
        (agent/consul/rpc.go blockingQuery; structs.QueryOptions.BlockingTimeout allows the whole 1/16)."""
        if "index" not in req.query:
            return 0.0
        wait = min(parse_duration(req.query.get("wait"), 300.0) or 300.0, 600.0)
        return wait + wait / JITTER_FRACTION

    def read(self, req: base.Request, fn: Callable[[], Any], consistent: bool = True) -> base.Response:
        """A catalog read, honouring blocking queries (`?index`). Consul's default consistency needs the leader:
        without one the read is held up to RPC_HOLD_S (plus a blocking query's own wait, as
        structs.QueryOptions.HasTimedOut allows), then 500 "No cluster leader". `?stale` reads this server's copy
        at once, if it ever heard from a leader (agent/consul/rpc.go ForwardRPC: AllowStaleRead and
        !raft.LastContact().IsZero(); otherwise the read is forwarded like any other)."""
        held = consistent and not (req.flag("stale") and self._had_contact())
        if held and self.wait_leader(RPC_HOLD_S + self._blocking_wait(req)) is None:
            return base.error(500, NO_LEADER)
        if "index" in req.query:
            min_index = int(req.query["index"] or 0)
            wait = min(parse_duration(req.query.get("wait"), 300.0) or 300.0, 600.0)
            wait += random.uniform(0, wait / 16)  # Consul adds jitter too
            deadline = time.monotonic() + wait
            with self.store.changed:
                while self.store.s["Index"] <= min_index and time.monotonic() < deadline:
                    self.store.changed.wait(min(1.0, deadline - time.monotonic()))
        with self.store.lock:
            body = fn()
        resp = body if isinstance(body, base.Response) else base.Response(200, body)
        resp.headers.update(self.meta_headers())
        resp.headers.update(self._filtered_header(req))
        return resp

    # --- ACL
    def token_check(self, req: base.Request, need: str) -> base.Response | None:
        """Resolves the token (X-Consul-Token, Bearer or ?token=; none is the anonymous token) and checks
        the right a route needs ("agent:read", "operator:read", "operator:write"); the handlers check
        and filter by node, service, key and session themselves. The lab fault rate-limit:consul comes first:
        Consul's rate limiter stands before the RPC handler, where the token is resolved
        (agent/rpc/middleware/interceptors.go GetNetRPCRateLimitingInterceptor: a PreBodyInterceptor)."""
        limited = self.rate_limited(req.method, req.path)
        if limited is not None:
            return limited
        authz = self.acl.resolve(base.bearer_token(req, "x-consul-token"))
        if authz is None:
            return base.error(403, "ACL not found")
        req.authz = authz
        if need:
            resource, _, level = need.partition(":")
            name = self.name if resource in SEGMENTED else None
            if not authz.allows(resource, name or "", level):
                return base.error(403, authz.denied(resource, level, name))
        return None

    def rate_limited(self, method: str, path: str) -> base.Response | None:
        """The answer of a request over the rate of the lab fault rate-limit:consul, else None (see RateLimiter).
        agent/consul/rate/handler.go Allow: ErrRetryLater for a write on the leader (503), else ErrRetryElsewhere
        (429)."""
        kind = rate_kind(method, path)
        if kind is None or self.rate_limit.allow(kind):
            return None
        if kind == "write" and self.election.is_leader():
            return base.error(503, RETRY_LATER)
        return base.error(429, RETRY_ELSEWHERE)

    @staticmethod
    def _authz(req: base.Request) -> ConsulAuthz:
        authz: ConsulAuthz = req.authz
        return authz

    def _deny(self, req: base.Request, resource: str, name: str, level: str) -> base.Response | None:
        authz = self._authz(req)
        return None if authz.allows(resource, name, level) else base.error(403, authz.denied(resource, level, name))

    def _keep(self, req: base.Request, items: list[Any], allowed: Callable[[ConsulAuthz, Any], bool]) -> list[Any]:
        """The items the token may read; the rest are filtered out, as Consul filters lists by ACL."""
        authz = self._authz(req)
        kept = [x for x in items if allowed(authz, x)]
        if len(kept) != len(items):
            req.filtered = True
        return kept

    @staticmethod
    def _filtered_header(req: base.Request) -> dict[str, str]:
        # Only for a request that carried a token (Consul's maskResultsFilteredByACLs).
        if req.filtered and base.bearer_token(req, "x-consul-token"):
            return {"X-Consul-Results-Filtered-By-ACLs": "true"}
        return {}

    @staticmethod
    def _node_ok(authz: ConsulAuthz, node: str) -> bool:
        return authz.allows("node", node, "read")

    @staticmethod
    def _service_ok(authz: ConsulAuthz, service: str) -> bool:
        return not service or authz.allows("service", service, "read")

    def _instance_ok(self, authz: ConsulAuthz, inst: tuple[dict[str, Any], dict[str, Any], Any]) -> bool:
        return self._node_ok(authz, inst[0]["Node"]) and self._service_ok(authz, inst[1]["Service"])

    def _check_ok(self, authz: ConsulAuthz, chk: dict[str, Any]) -> bool:
        return self._node_ok(authz, chk["Node"]) and self._service_ok(authz, chk["ServiceName"])

    def _check_write(self, req: base.Request, node: str, service_id: str) -> base.Response | None:
        """A check is written with service:write on its service, or node:write on its node."""
        if service_id:
            with self.store.lock:
                svc = self.store.s["Services"].get(node, {}).get(service_id)
            return self._deny(req, "service", svc["Service"] if svc else service_id, "write")
        return self._deny(req, "node", node, "write")

    # --- views
    def _serf_member(self, name: str, addr: str, tags: dict[str, str], status: str) -> dict[str, Any]:
        return {"Name": name, "Addr": addr, "Port": SERF_PORT, "Tags": tags, "Status": SERF_STATUS[status],
                "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2, "DelegateMin": 2, "DelegateMax": 5,
                "DelegateCur": 4}

    def _member(self, m: dict[str, Any], status: str) -> dict[str, Any]:
        tags = {"acls": "1", "build": f"{VERSION}:{REVISION}", "dc": self.dc, "expect": str(len(self.masters)),
                "ft_fs": "1", "ft_si": "1", "grpc_tls_port": "8503", "id": m["consul_id"], "port": str(RPC_PORT),
                "raft_vsn": "3", "role": "consul", "segment": "", "use_tls": "1", "vsn": "2", "vsn_max": "3",
                "vsn_min": "2", "wan_join_port": "8302"}
        return self._serf_member(m["name"], m["ip"], tags, status)

    def members(self) -> list[dict[str, Any]]:
        """The LAN pool: the servers (their status from the election and autopilot), then the client agents."""
        out = [self._member(m, self.election.member_status(m["consul_id"])) for m in self.masters]
        servers = {m["name"] for m in self.masters}
        with self.store.lock:
            clients = [dict(c) for _, c in sorted(self.store.s["Members"].items()) if c["Name"] not in servers]
        out += [self._serf_member(c["Name"], c["Addr"], c["Tags"], c["Status"]) for c in clients]
        return out

    def _alive(self, m: dict[str, Any]) -> bool:
        return self.election.member_status(m["consul_id"]) == "alive"

    def _catalog_service_entry(self, node: dict[str, Any], svc: dict[str, Any]) -> dict[str, Any]:
        return {
            "ID": node["ID"],
            "Node": node["Node"],
            "Address": node["Address"],
            "Datacenter": node["Datacenter"],
            "TaggedAddresses": node["TaggedAddresses"],
            "NodeMeta": node["Meta"],
            "ServiceKind": svc["Kind"],
            "ServiceID": svc["ID"],
            "ServiceName": svc["Service"],
            "ServiceTags": svc["Tags"],
            "ServiceAddress": svc["Address"],
            "ServiceTaggedAddresses": svc["TaggedAddresses"],
            "ServiceWeights": svc["Weights"],
            "ServiceMeta": svc["Meta"],
            "ServicePort": svc["Port"],
            "ServiceEnableTagOverride": svc["EnableTagOverride"],
            "ServiceProxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
            "ServiceConnect": {},
            "CreateIndex": svc["CreateIndex"],
            "ModifyIndex": svc["ModifyIndex"],
        }

    @staticmethod
    def _public_service(svc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in svc.items() if k != "Datacenter"}

    def autopilot_ready(self) -> bool:
        """Whether this server's autopilot has a state: it is the leader and its first round is done. Right after
        an election Consul's leader answers from raft-autopilot's empty State (its Start computes the first one
        only once establishLeadership gets there, or at the first update tick when a previous run still held
        the lock), for about one update interval: AUTOPILOT_WARMUP_S."""
        with self.election.lock:
            since = self.election.leader_since if self.election.leader_id == self.node_id else 0.0
        return since > 0 and time.time() - since >= AUTOPILOT_WARMUP_S

    def autopilot_health(self) -> dict[str, Any]:
        """GET /v1/operator/autopilot/health's body, as the leader computes it (EMPTY_AUTOPILOT before its
        first autopilot round)."""
        if not self.autopilot_ready():
            return dict(EMPTY_AUTOPILOT)
        h = self.election.health()
        servers = [{"ID": s["peer"].id, "Name": s["peer"].name, "Address": s["peer"].address,
                    "SerfStatus": s["status"], "Version": VERSION, "Leader": s["leader"],
                    "LastContact": readable_duration(s["last_contact"]), "LastTerm": s["term"],
                    "LastIndex": s["index"], "Healthy": s["healthy"], "Voter": s["voter"],
                    "StableSince": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s["stable_since"]))}
                   for s in h["servers"]]
        return {"Healthy": h["healthy"], "FailureTolerance": h["failure_tolerance"], "Servers": servers}

    def metrics_gauges(self) -> list[tuple[str, str, float, str]]:
        """(name, type, value, help) of the metrics Prometheus scrapes."""
        leader = self.election.leader()
        leading = leader is not None and leader.id == self.node_id
        alive = sum(self._alive(m) for m in self.masters)
        with self.store.lock:
            st = self.store.s
            services = {s["Service"] for svcs in st["Services"].values() for s in svcs.values()}
            instances = sum(len(svcs) for svcs in st["Services"].values())
            crit = sum(c["Status"] == "critical" for c in self.store.all_checks())
            counts = (len(st["Nodes"]), len(services), instances, len(st["KV"]), len(st["Sessions"]), crit)
            lan = alive + sum(m["Status"] == "alive" for m in st["Members"].values())
        raft = self.election.raft_servers()
        if leading:
            health = self.election.health()
            healthy, tolerance = float(health["healthy"]), float(health["failure_tolerance"])
        else:
            healthy = 1.0 if leader is not None and alive == len(self.masters) else 0.0
            tolerance = float(max(0, alive - (len(self.masters) // 2 + 1)) if leader is not None else 0)
        return [
            ("consul_server_isLeader", "gauge", float(leading), "Tracks if the server is a leader."),
            ("consul_raft_leader", "gauge", float(leader is not None), "1 when this server knows a raft leader."),
            ("consul_raft_peers", "gauge", float(len(raft)), "Number of raft peers."),
            ("consul_autopilot_healthy", "gauge", healthy, "Tracks the overall health of the local server cluster."),
            ("consul_autopilot_failure_tolerance", "gauge", tolerance,
             "Tracks the number of voting servers that the cluster can lose while continuing to function."),
            ("consul_serf_lan_members", "gauge", float(lan), "Number of alive LAN serf members."),
            ("consul_state_nodes", "gauge", float(counts[0]), "Number of nodes in the catalog."),
            ("consul_catalog_services", "gauge", float(counts[1]), "Number of services in the catalog."),
            ("consul_state_services", "gauge", float(counts[1]), "Number of unique services in the state store."),
            ("consul_state_service_instances", "gauge", float(counts[2]), "Number of service instances."),
            ("consul_state_kv_entries", "gauge", float(counts[3]), "Number of KV entries."),
            ("consul_session_ttl_active", "gauge", float(counts[4]), "Number of active sessions."),
            ("consul_health_checks_critical", "gauge", float(counts[5]), "Number of critical health checks."),
            ("consul_raft_apply", "counter", float(self.applied), "Number of raft transactions applied."),
            ("consul_runtime_num_goroutines", "gauge", float(threading.active_count()), "Number of goroutines."),
        ]

    # --- routes
    def _routes(self) -> None:
        api, rpc = self.api, self.rpc

        @rpc.route("POST", "/internal/election", acl=False)
        def _election(req: base.Request) -> base.Response:
            return base.Response(200, self.election.on_message(req.json()))

        @rpc.route("POST", "/internal/replicate", acl=False)
        def _replicate(req: base.Request) -> base.Response:
            return base.Response(200, self.election.on_replicate(req.json()))

        @rpc.route("POST", "/internal/apply", acl=False)
        def _apply(req: base.Request) -> base.Response:
            if not self.election.is_leader():
                return base.error(500, NO_LEADER)
            # A write forwarded by a follower meets the leader's limit too (agent/consul/rate/handler.go: the
            # global limits apply to RPCs from servers, applyOnServer).
            limited = self.rate_limited("PUT", "/internal/apply")
            if limited is not None:
                return limited
            try:
                return base.Response(200, {"result": self.apply_local(req.json())})
            except OpError as exc:
                return base.error(exc.status, exc.text)

        @rpc.route("POST", "/internal/member", acl=False)
        def _member_rpc(req: base.Request) -> base.Response:
            leader = self.election.leader()
            if leader is None:
                return base.error(500, NO_LEADER)
            if leader.id != self.node_id:
                status, reply = base.call(self._rpc_url(leader, "/internal/member"), self.tls, "POST",
                                          raw_body=req.body, timeout=2.0)
                return base.Response(200, reply) if status == 200 else base.error(500, NO_LEADER)
            return base.Response(200, self.apply_local({"op": "member", "body": req.json(), "now": time.time()},
                                                       wait=False))

        @rpc.route("GET", "/internal/autopilot", acl=False)
        def _autopilot_rpc(req: base.Request) -> base.Response:
            if not self.election.is_leader():
                return base.error(500, NO_LEADER)
            return base.Response(200, self.autopilot_health())

        @rpc.route("POST", "/internal/transfer-leader", acl=False)
        def _transfer(req: base.Request) -> base.Response:
            return self._transfer_leader(req.json().get("id", ""))

        # status: no ACL, as in Consul
        @api.route("GET", "/v1/status/leader", acl=False)
        def _leader(req: base.Request) -> base.Response:
            leader = self.election.leader()
            return base.Response(200, leader.address if leader else "", headers=self.meta_headers())

        @api.route("GET", "/v1/status/peers", acl=False)
        def _peers(req: base.Request) -> base.Response:
            return base.Response(200, [p.address for p, _ in self.election.raft_servers()])

        # agent
        @api.route("GET", "/v1/agent/members")
        def _members(req: base.Request) -> base.Response:
            # filtered by node:read (agent-local: the header is set here, only for a request with a token)
            kept = self._keep(req, self.members(), lambda a, m: self._node_ok(a, m["Name"]))
            return base.Response(200, kept, headers=self._filtered_header(req))

        # agent/agent_endpoint.go AgentForceLeave: operator:write; ?prune also drops it from the member list
        @api.route("PUT", "/v1/agent/force-leave/{node}", need="operator:write")
        def _force_leave(req: base.Request) -> base.Response:
            return self.submit({"op": "force_leave", "name": req.params["node"], "prune": req.flag("prune"),
                                "now": time.time()})

        @api.route("GET", "/v1/agent/self", need="agent:read")
        def _self(req: base.Request) -> base.Response:
            me = next(m for m in self.masters if m["name"] == self.name)
            leader = self.election.leader()
            return base.Response(200, {
                "Config": {
                    "Datacenter": self.dc,
                    "PrimaryDatacenter": self.dc,
                    "NodeName": self.name,
                    "NodeID": self.node_id,
                    "Partition": "",
                    "Server": True,
                    "Revision": REVISION,
                    "Version": VERSION,
                    "BuildDate": "2025-03-11T11:54:42Z",
                },
                "DebugConfig": {"ACLsEnabled": True, "BootstrapExpect": len(self.masters), "DNSPort": DNS_PORT,
                                "HTTPSPort": API_PORT, "ServerPort": RPC_PORT, "DataDir": "/build/consul"},
                "Coord": {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05},
                "Member": self._member(me, "alive"),
                "Stats": {
                    "consul": {
                        "server": "true",
                        "leader": str(leader is not None and leader.id == self.node_id).lower(),
                        "leader_addr": leader.address if leader else "",
                        "bootstrap": "false",
                        "known_datacenters": "1",
                        "acl": "enabled",
                    },
                    "raft": {"state": "Leader" if self.election.is_leader() else "Follower",
                             "num_peers": str(len(self.election.raft_servers()) - 1), "protocol_version": "3",
                             "term": str(self._term()), "applied_index": str(self.store.index())},
                    "runtime": {"arch": "amd64", "os": "linux", "version": "go1.22.12",
                                "goroutines": str(threading.active_count())},
                },
                "Meta": {"consul-network-segment": "", "consul-version": VERSION},
            })

        @api.route("GET", "/v1/agent/services")
        def _agent_services(req: base.Request) -> base.Response:
            with self.store.lock:
                svcs = self.store.s["Services"].get(self.name, {})
                # The leader-managed "consul" service and serfHealth are not the agent's local state.
                mine = [(sid, self._public_service(s)) for sid, s in sorted(svcs.items()) if sid != "consul"]
            kept = self._keep(req, mine, lambda a, x: self._service_ok(a, x[1]["Service"]))
            return base.Response(200, dict(kept), headers=self._filtered_header(req))

        @api.route("GET", "/v1/agent/service/{sid}")
        def _agent_service(req: base.Request) -> base.Response:
            with self.store.lock:
                svc = self.store.s["Services"].get(self.name, {}).get(req.params["sid"])
                svc = self._public_service(svc) if svc else None
            if svc is None:
                return base.error(404, f"unknown service ID: {req.params['sid']}")
            return self._deny(req, "service", svc["Service"], "read") or base.Response(200, svc)

        @api.route("GET", "/v1/agent/checks")
        def _agent_checks(req: base.Request) -> base.Response:
            with self.store.lock:
                checks = [(cid, public_check(c)) for cid, c in sorted(self.store.s["Checks"].get(self.name, {}).items())
                          if cid != "serfHealth"]
            kept = self._keep(req, checks, lambda a, x: self._check_ok(a, x[1]))
            return base.Response(200, dict(kept), headers=self._filtered_header(req))

        @api.route("PUT", "/v1/agent/service/register")
        def _svc_register(req: base.Request) -> base.Response:
            body = canon(req.json() or {})
            return (self._deny(req, "service", str(body.get("Name") or body.get("Service") or ""), "write")
                    or self.submit({"op": "agent_service_register", "node": self.name, "body": body}, hold=False))

        @api.route("PUT", "/v1/agent/service/deregister/{sid}")
        def _svc_deregister(req: base.Request) -> base.Response:
            with self.store.lock:
                svc = self.store.s["Services"].get(self.name, {}).get(req.params["sid"])
            return ((self._deny(req, "service", svc["Service"], "write") if svc else None)
                    or self.submit({"op": "agent_service_deregister", "node": self.name, "id": req.params["sid"]},
                               hold=False))

        @api.route("PUT", "/v1/agent/check/register")
        def _chk_register(req: base.Request) -> base.Response:
            body = canon(req.json() or {})
            return (self._check_write(req, self.name, str(body.get("ServiceID") or ""))
                    or self.submit({"op": "agent_check_register", "node": self.name, "body": body}, hold=False))

        def _existing_check_write(req: base.Request) -> base.Response | None:
            with self.store.lock:
                chk = self.store.s["Checks"].get(self.name, {}).get(req.params["cid"])
            return self._check_write(req, self.name, chk["ServiceID"]) if chk else None

        @api.route("PUT", "/v1/agent/check/deregister/{cid}")
        def _chk_deregister(req: base.Request) -> base.Response:
            return _existing_check_write(req) or self.submit(
                {"op": "agent_check_deregister", "node": self.name, "id": req.params["cid"]}, hold=False)

        @api.route("PUT", "/v1/agent/check/update/{cid}")
        def _chk_update(req: base.Request) -> base.Response:
            body = canon(req.json() or {})
            return _existing_check_write(req) or self.submit(
                {"op": "agent_check_update", "node": self.name, "id": req.params["cid"],
                 "status": body.get("Status", ""), "output": body.get("Output", "")}, hold=False)

        for verb, status in (("pass", "passing"), ("warn", "warning"), ("fail", "critical")):

            def _chk_verb(req: base.Request, status: str = status) -> base.Response:
                return _existing_check_write(req) or self.submit(
                    {"op": "agent_check_update", "node": self.name, "id": req.params["cid"], "status": status,
                     "output": req.query.get("note", "")}, hold=False)

            api.route("PUT", f"/v1/agent/check/{verb}/{{cid}}")(_chk_verb)

        @api.route("GET", "/v1/agent/metrics", need="agent:read")
        def _metrics(req: base.Request) -> base.Response:
            gauges = self.metrics_gauges()
            if req.query.get("format") == "prometheus":
                lines = []
                for name, kind, value, text in gauges:
                    lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
                raw = ("\n".join(lines) + "\n").encode()
                return base.Response(200, raw=raw, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
            stamp = time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime())
            return base.Response(200, {
                "Timestamp": stamp,
                "Gauges": [{"Name": n.replace("_", "."), "Value": v, "Labels": {}} for n, k, v, _ in gauges
                           if k == "gauge"],
                "Points": [],
                "Counters": [{"Name": n.replace("_", "."), "Count": int(v), "Rate": 0.0, "Sum": v, "Min": 1,
                              "Max": 1, "Mean": 1, "Stddev": 0, "Labels": {}}
                             for n, k, v, _ in gauges if k == "counter"],
                "Samples": [],
            })

        # catalog
        @api.route("PUT", "/v1/catalog/register")
        def _cat_register(req: base.Request) -> base.Response:
            body = canon(req.json() or {})
            node = str(body.get("Node") or "")
            denied = None
            if not body.get("SkipNodeUpdate"):
                denied = self._deny(req, "node", node, "write")
            if denied is None and body.get("Service"):
                svc = body["Service"]
                denied = self._deny(req, "service", str(svc.get("Service") or svc.get("Name") or ""), "write")
            for chk in list(body.get("Checks") or []) + ([body["Check"]] if body.get("Check") else []):
                if denied is None and not chk.get("ServiceID"):
                    denied = self._deny(req, "node", node, "write")
            return denied or self.submit({"op": "catalog_register", "body": body})

        @api.route("PUT", "/v1/catalog/deregister")
        def _cat_deregister(req: base.Request) -> base.Response:
            body = canon(req.json() or {})
            node = str(body.get("Node") or "")
            if body.get("ServiceID"):
                with self.store.lock:
                    svc = self.store.s["Services"].get(node, {}).get(body["ServiceID"])
                denied = self._deny(req, "service", svc["Service"], "write") if svc else None
            elif body.get("CheckID"):
                with self.store.lock:
                    chk = self.store.s["Checks"].get(node, {}).get(body["CheckID"])
                denied = self._check_write(req, node, chk["ServiceID"]) if chk else None
            else:
                denied = self._deny(req, "node", node, "write")
            return denied or self.submit({"op": "catalog_deregister", "body": body})

        @api.route("GET", "/v1/catalog/nodes")
        def _cat_nodes(req: base.Request) -> base.Response:
            return self.read(req, lambda: self._keep(req, [dict(n) for _, n in sorted(self.store.s["Nodes"].items())],
                                                     lambda a, n: self._node_ok(a, n["Node"])))

        @api.route("GET", "/v1/catalog/node/{node}")
        def _cat_node(req: base.Request) -> base.Response:
            def view() -> Any:
                node = self.store.s["Nodes"].get(req.params["node"])
                if node is not None and not self._node_ok(self._authz(req), node["Node"]):
                    req.filtered, node = True, None
                if node is None:
                    return base.Response(200, raw=b"null")
                svcs = self._keep(req, list(self.store.s["Services"].get(node["Node"], {}).items()),
                                  lambda a, x: self._service_ok(a, x[1]["Service"]))
                return {"Node": node, "Services": {k: self._public_service(v) for k, v in svcs}}

            return self.read(req, view)

        @api.route("GET", "/v1/catalog/services")
        def _cat_services(req: base.Request) -> base.Response:
            def view() -> Any:
                out: dict[str, list[str]] = {}
                for svcs in self.store.s["Services"].values():
                    for svc in svcs.values():
                        tags = out.setdefault(svc["Service"], [])
                        tags += [t for t in svc["Tags"] if t not in tags]
                kept = self._keep(req, sorted(out), lambda a, name: self._service_ok(a, name))
                return {k: sorted(out[k]) for k in kept}

            return self.read(req, view)

        @api.route("GET", "/v1/catalog/service/{service}")
        def _cat_service(req: base.Request) -> base.Response:
            return self.read(req, lambda: [
                self._catalog_service_entry(node, svc) for node, svc, _ in self._keep(
                    req, self.store.instances(req.params["service"], req.query.get("tag", "")),
                    self._instance_ok)
            ])

        # health
        @api.route("GET", "/v1/health/service/{service}")
        def _health_service(req: base.Request) -> base.Response:
            def view() -> Any:
                out = []
                instances = self._keep(req, self.store.instances(req.params["service"], req.query.get("tag", "")),
                                       self._instance_ok)
                for node, svc, checks in instances:
                    if req.flag("passing") and any(c["Status"] != "passing" for c in checks):
                        continue
                    out.append({"Node": node, "Service": self._public_service(svc),
                                "Checks": [public_check(c) for c in checks]})
                return out

            return self.read(req, view)

        def _checks_view(req: base.Request, checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [public_check(c) for c in self._keep(req, checks, self._check_ok)]

        @api.route("GET", "/v1/health/state/{state}")
        def _health_state(req: base.Request) -> base.Response:
            state = req.params["state"]
            if state not in ("any", *STATES):
                return base.error(400, "Bad request: invalid state")
            return self.read(req, lambda: _checks_view(req, [c for c in self.store.all_checks()
                                                             if state == "any" or c["Status"] == state]))

        @api.route("GET", "/v1/health/checks/{service}")
        def _health_checks(req: base.Request) -> base.Response:
            name = req.params["service"]
            return self.read(req, lambda: _checks_view(req, [c for c in self.store.all_checks()
                                                             if c["ServiceName"] == name]))

        @api.route("GET", "/v1/health/node/{node}")
        def _health_node(req: base.Request) -> base.Response:
            node = req.params["node"]
            return self.read(req, lambda: _checks_view(req, [c for _, c in
                                                             sorted(self.store.s["Checks"].get(node, {}).items())]))

        # operator
        @api.route("GET", "/v1/operator/raft/configuration", need="operator:read")
        def _raft_config(req: base.Request) -> base.Response:
            leader = self.election.leader()

            def view() -> Any:
                servers = [{"ID": p.id, "Node": p.name, "Address": p.address,
                            "Leader": leader is not None and p.id == leader.id, "ProtocolVersion": "3",
                            "Voter": voter}
                           for p, voter in self.election.raft_servers()]
                return {"Servers": servers, "Index": self.store.s["Index"]}

            return self.read(req, view)

        @api.route("GET", "/v1/operator/autopilot/health", need="operator:read")
        def _autopilot_health(req: base.Request) -> base.Response:
            # agent/consul/operator_autopilot_endpoint.go ServerHealth: ForwardRPC to the leader (held without
            # one, as any read), or, with ?stale, this server's own autopilot state, which on a follower is
            # raft-autopilot's empty State (autopilot only runs on the leader; run.go resets it when it stops).
            if req.flag("stale") and self._had_contact() and not self.election.is_leader():
                body: Any = dict(EMPTY_AUTOPILOT)
            else:
                deadline = time.monotonic() + RPC_HOLD_S
                while True:
                    leader = self.wait_leader(max(0.0, deadline - time.monotonic()))
                    if leader is None:
                        return base.error(500, NO_LEADER)
                    if leader.id == self.node_id:
                        body = self.autopilot_health()
                        break
                    status, body = base.call(self._rpc_url(leader, "/internal/autopilot"), self.tls, timeout=3.0)
                    if status == 200 and isinstance(body, dict):
                        break
                    left = deadline - time.monotonic()
                    if status != 500 or left <= 0:
                        return base.error(500, NO_LEADER)
                    time.sleep(min(left, stagger(RPC_HOLD_S / JITTER_FRACTION)))  # it lost the leadership
            # agent/operator_endpoint.go OperatorServerHealth: 429 when the reply is not Healthy
            return base.Response(200 if body["Healthy"] else 429, body)

        @api.route("POST|PUT", "/v1/operator/raft/transfer-leader", need="operator:write")
        def _raft_transfer(req: base.Request) -> base.Response:
            leader = self.election.leader()
            if leader is None:
                return base.error(500, NO_LEADER)
            if leader.id == self.node_id:
                return self._transfer_leader(req.query.get("id", ""))
            status, reply = base.call(self._rpc_url(leader, "/internal/transfer-leader"), self.tls, "POST",
                                      {"id": req.query.get("id", "")}, timeout=5.0)
            if status == 200:
                return base.Response(200, reply)
            return base.error(status or 500, str(reply).rstrip("\n") if status else "rpc error: leader unreachable")

        # sessions
        def _session_node(sid: str) -> str | None:
            with self.store.lock:
                sess = self.store.s["Sessions"].get(sid)
                return str(sess["Node"]) if sess else None

        def _session_ok(authz: ConsulAuthz, sess: dict[str, Any]) -> bool:
            return authz.allows("session", sess["Node"], "read")

        @api.route("PUT", "/v1/session/create")
        def _session_create(req: base.Request) -> base.Response:
            body = canon(req.json() or {})
            return (self._deny(req, "session", str(body.get("Node") or self.name), "write")
                    or self.submit({"op": "session_create", "node": self.name, "body": body}))

        @api.route("PUT", "/v1/session/destroy/{sid}")
        def _session_destroy(req: base.Request) -> base.Response:
            node = _session_node(req.params["sid"])
            return ((self._deny(req, "session", node, "write") if node is not None else None)
                    or self.submit({"op": "session_destroy", "id": req.params["sid"]}))

        @api.route("PUT", "/v1/session/renew/{sid}")
        def _session_renew(req: base.Request) -> base.Response:
            node = _session_node(req.params["sid"])
            return ((self._deny(req, "session", node, "write") if node is not None else None)
                    or self.submit({"op": "session_renew", "id": req.params["sid"]}))

        @api.route("GET", "/v1/session/info/{sid}")
        def _session_info(req: base.Request) -> base.Response:
            sid = req.params["sid"]
            return self.read(req, lambda: self._keep(
                req, [dict(s) for s in [self.store.s["Sessions"].get(sid)] if s], _session_ok))

        @api.route("GET", "/v1/session/list")
        def _session_list(req: base.Request) -> base.Response:
            return self.read(req, lambda: self._keep(
                req, [dict(s) for _, s in sorted(self.store.s["Sessions"].items())], _session_ok))

        @api.route("GET", "/v1/session/node/{node}")
        def _session_node_list(req: base.Request) -> base.Response:
            node = req.params["node"]
            return self.read(req, lambda: self._keep(
                req, [dict(s) for _, s in sorted(self.store.s["Sessions"].items()) if s["Node"] == node],
                _session_ok))

        # KV
        @api.route("GET", "/v1/kv/{key*}")
        def _kv_get(req: base.Request) -> base.Response:
            if not (req.flag("recurse") or req.flag("keys")):
                denied = self._deny(req, "key", req.params["key"], "read")
                if denied:
                    return denied
            return self.read(req, lambda: self._kv_view(req))

        @api.route("PUT", "/v1/kv/{key*}")
        def _kv_put(req: base.Request) -> base.Response:
            key = req.params["key"]
            if not key:
                return base.error(400, "Missing key name")
            if len(req.body) > 512 * 1024:
                return base.error(413, f"Request body({len(req.body)} bytes) too large, max size: 524288 bytes")
            if req.query.get("acquire") and req.query.get("release"):
                return base.error(400, "Conflicting flags: acquire=&release=")
            denied = self._deny(req, "key", key, "write")
            if denied:
                return denied
            op = {"op": "kv_put", "key": key,
                  "value": base64.b64encode(req.body).decode() if req.body else None,
                  "flags": int(req.query["flags"]) if req.query.get("flags") else None,
                  "cas": int(req.query["cas"]) if req.query.get("cas") else None,
                  "acquire": req.query.get("acquire") or None, "release": req.query.get("release") or None}
            return self.submit(op)

        @api.route("DELETE", "/v1/kv/{key*}")
        def _kv_delete(req: base.Request) -> base.Response:
            key, authz = req.params["key"], self._authz(req)
            if req.flag("recurse"):
                if not authz.key_write_prefix(key):
                    return base.error(403, authz.denied("key", "write", key))
            elif not authz.allows("key", key, "write"):
                return base.error(403, authz.denied("key", "write", key))
            return self.submit({"op": "kv_delete", "key": key, "recurse": req.flag("recurse"),
                                "cas": int(req.query["cas"]) if req.query.get("cas") else None})

    def _kv_view(self, req: base.Request) -> Any:
        key = req.params["key"]
        kv = self.store.s["KV"]
        authz = self._authz(req)
        if req.flag("keys"):
            sep = req.query.get("separator", "")
            readable = self._keep(req, [k for k in sorted(kv) if k.startswith(key)],
                                  lambda a, k: a.allows("key", k, "read") or a.allows("key", k, "list"))
            keys: list[str] = []
            for k in readable:
                if sep and sep in k[len(key):]:
                    k = k[: len(key) + k[len(key):].index(sep) + len(sep)]
                if k not in keys:
                    keys.append(k)
            return keys if keys else base.Response(404, raw=b"")
        if req.flag("recurse"):
            found = [_kv_public(kv[k]) for k in self._keep(req, [k for k in sorted(kv) if k.startswith(key)],
                                                           lambda a, k: a.allows("key", k, "read"))]
        else:
            found = [_kv_public(kv[key])] if key in kv and authz.allows("key", key, "read") else []
        if not found:
            return base.Response(404, raw=b"")
        if req.flag("raw"):
            value = found[0]["Value"]
            return base.Response(200, raw=base64.b64decode(value) if value else b"",
                                 headers={"Content-Type": "text/plain; charset=utf-8"})
        return found

    def _transfer_leader(self, target_id: str) -> base.Response:
        if not self.election.is_leader():
            return base.error(500, NO_LEADER)
        raft = [p for p, voter in self.election.raft_servers() if voter]
        if target_id:
            target = next((p for p in raft if p.id == target_id), None)
            if target is None:
                return base.error(500, f"Failed to transfer Leader: cannot find peer with ID {target_id!r}")
            if target.id == self.node_id:
                return base.error(500, "Failed to transfer Leader: cannot transfer leadership to itself")
        else:
            live = [p for p in raft if p.id != self.node_id and self.election.member_status(p.id) == "alive"]
            if not live:
                return base.error(404, "Failed to transfer Leader: no live server to transfer to")
            target = random.choice(live)
        self.election.wait_replicated(self.election.notify_changed(), 1.0)  # the new leader starts from our state
        if self.election.transfer_to(target):
            return base.Response(200, {"Success": True})
        return base.error(404, f"Failed to transfer Leader: {target.name} did not take over")

    # --- background work
    def housekeeping(self) -> None:
        term_led = -1
        while True:
            try:
                time.sleep(0.25)
                if self.election.is_leader():
                    now = time.time()
                    term = self._term()
                    if term != term_led:
                        term_led = term
                        self.store.apply({"op": "reset_timers", "now": now})
                    servers = [{"name": m["name"], "ip": m["ip"], "id": m["consul_id"],
                                "status": self.election.member_status(m["consul_id"])} for m in self.masters]
                    self.apply_local({"op": "reap", "now": now, "servers": servers}, wait=False)
                else:
                    term_led = -1
                self.run_checks()
            except Exception:
                log("housekeeping: " + traceback.format_exc())

    def run_checks(self) -> None:
        """TCP and HTTP checks of services registered on this server (script checks are not run)."""
        with self.store.lock:
            due = []
            for cid, chk in self.store.s["Checks"].get(self.name, {}).items():
                d = self.store.s["CheckMeta"].get(f"{self.name}/{cid}", {}).get("def", {})
                if ("TCP" in d or "HTTP" in d) and time.monotonic() >= self.check_runs.get(cid, 0):
                    due.append((cid, dict(d), chk["Status"]))
        for cid, d, old in due:
            self.check_runs[cid] = time.monotonic() + (parse_duration(d.get("Interval"), 10.0) or 10.0)
            timeout = parse_duration(d.get("Timeout"), 10.0) or 10.0
            status, output = probe(d, timeout, self.tls)
            if status != old:
                self.submit({"op": "agent_check_update", "node": self.name, "id": cid, "status": status,
                             "output": output, "ttl_only": False}, hold=False)

    def run(self) -> None:
        base.serve(self.ip, RPC_PORT, self.rpc, self.tls, name="consul-rpc")
        base.serve(self.ip, API_PORT, self.api, self.tls, self.token_check, name="consul")
        self.election.run()
        threading.Thread(target=self.housekeeping, name="housekeeping", daemon=True).start()
        DnsServer(self).start()
        log(f"{self.name} serving https://{self.ip}:{API_PORT}, dns {self.ip}:{DNS_PORT}")


def readable_duration(seconds: float) -> str:
    """A duration as Go prints it (api.ReadableDuration): "0s", "27.291304ms", "1.5s"."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:.6f}".rstrip("0").rstrip(".") + "ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.6f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def probe(d: dict[str, Any], timeout: float, tls: base.Tls) -> tuple[str, str]:
    """One TCP or HTTP check, with Consul's status mapping (2xx passing, 429 warning)."""
    if "TCP" in d:
        host, _, port = str(d["TCP"]).rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return "passing", f"TCP connect {d['TCP']}: Success"
        except OSError as exc:
            return "critical", f"dial tcp {d['TCP']}: {exc}"
    url = str(d["HTTP"])
    try:
        req = urllib.request.Request(url, method=d.get("Method") or "GET")
        ctx = ssl.create_default_context(cafile=tls.ca)
        ctx.check_hostname = False
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return "passing", f"HTTP {req.method} {url}: {r.status} OK Output: {r.read(4096).decode(errors='replace')}"
    except urllib.error.HTTPError as exc:
        return ("warning" if exc.code == 429 else "critical"), f"HTTP {req.method} {url}: {exc.code}"
    except (OSError, ValueError) as exc:
        return "critical", f"Get {url!r}: {exc}"


# ---------------------------------------------------------------------------------------------
# DNS (RFC 1035 by hand): A, SRV, SOA; UDP and TCP.

T_A, T_NS, T_SOA, T_PTR, T_TXT, T_AAAA, T_SRV, T_ANY = 1, 2, 6, 12, 16, 28, 33, 255
RCODE_OK, RCODE_FORMERR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_NOTIMP, RCODE_REFUSED = 0, 1, 2, 3, 4, 5
Record = tuple[str, int, bytes]  # owner name, type, rdata


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("idna") if not label.isascii() else label.encode()
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


def decode_name(msg: bytes, pos: int) -> tuple[str, int]:
    labels: list[str] = []
    end = -1
    for _ in range(128):  # bounded: no compression loops
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            if end < 0:
                end = pos + 2
            pos = ((length & 0x3F) << 8) | msg[pos + 1]
            continue
        pos += 1
        if length == 0:
            return ".".join(labels) + ".", (end if end >= 0 else pos)
        labels.append(msg[pos:pos + length].decode("ascii", errors="replace"))
        pos += length
    raise ValueError("name too long")


def soa_rdata(dc: str) -> bytes:
    # consul. 0 IN SOA ns.consul. postmaster.consul. <serial> 3600 600 86400 0 (dns_interface.json)
    return encode_name("ns.consul.") + encode_name("postmaster.consul.") + struct.pack(
        ">IIIII", int(time.time()), 3600, 600, 86400, 0
    )


class DnsServer:
    def __init__(self, server: ConsulServer) -> None:
        self.server = server

    def start(self) -> None:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.bind((self.server.ip, DNS_PORT))
        udp.settimeout(1.0)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((self.server.ip, DNS_PORT))
        tcp.listen(64)
        tcp.settimeout(1.0)
        threading.Thread(target=self._udp_loop, args=(udp,), name="dns-udp", daemon=True).start()
        threading.Thread(target=self._tcp_loop, args=(tcp,), name="dns-tcp", daemon=True).start()

    def _udp_loop(self, sock: socket.socket) -> None:
        while True:
            try:
                data, addr = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                log("dns udp: " + traceback.format_exc())
                time.sleep(0.1)
                continue
            try:
                reply = self.answer(data, udp=True)
                if reply:
                    sock.sendto(reply, addr)
            except Exception:
                log("dns udp: " + traceback.format_exc())

    def _tcp_loop(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                log("dns tcp: " + traceback.format_exc())
                time.sleep(0.1)
                continue
            threading.Thread(target=self._tcp_conn, args=(conn,), name="dns-tcp-conn", daemon=True).start()

    def _tcp_conn(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5.0)
            with conn:
                while True:
                    head = _recv_exact(conn, 2)
                    if head is None:
                        return
                    data = _recv_exact(conn, struct.unpack(">H", head)[0])
                    if data is None:
                        return
                    reply = self.answer(data, udp=False)
                    if reply:
                        conn.sendall(struct.pack(">H", len(reply)) + reply)
        except (OSError, TimeoutError):
            return
        except Exception:
            log("dns tcp: " + traceback.format_exc())

    # --- the resolver
    def answer(self, data: bytes, udp: bool) -> bytes:
        if len(data) < 12:
            return b""
        qid, flags, qd = struct.unpack(">HHH", data[:6])
        if flags & 0x8000:
            return b""  # a response, not a query
        rd = flags & 0x0100
        try:
            if qd != 1:
                raise ValueError("one question expected")
            qname, pos = decode_name(data, 12)
            qtype, _qclass = struct.unpack(">HH", data[pos:pos + 4])
            question = data[12:pos + 4]
        except (ValueError, IndexError, struct.error):
            return struct.pack(">HHHHHH", qid, 0x8000 | rd | RCODE_FORMERR, 0, 0, 0, 0)
        answers: list[Record]
        extra: list[Record]
        authority: list[Record]
        if (flags >> 11) & 0xF:
            rcode, answers, extra, authority = RCODE_NOTIMP, [], [], []
        else:
            rcode, answers, extra, authority = self.resolve(qname, qtype)
        if udp and len(answers) > UDP_ANSWER_LIMIT:
            keep = answers[:UDP_ANSWER_LIMIT]
            names = {decode_name(rdata, 6)[0].lower() for _, t, rdata in keep if t == T_SRV}
            extra = [r for r in extra if r[0].lower() in names]
            answers = keep
        aa = 0x0400 if rcode in (RCODE_OK, RCODE_NXDOMAIN) else 0
        body = b"".join(self._rr(r) for r in answers + authority + extra)
        header = struct.pack(">HHHHHH", qid, 0x8000 | aa | rd | rcode, 1, len(answers), len(authority), len(extra))
        reply = header + question + body
        if udp and len(reply) > 512:
            reply = struct.pack(">HHHHHH", qid, 0x8000 | aa | rd | 0x0200 | rcode, 1, 0, 0, 0) + question
        return reply

    @staticmethod
    def _rr(rec: Record) -> bytes:
        name, rtype, rdata = rec
        return encode_name(name) + struct.pack(">HHIH", rtype, 1, 0, len(rdata)) + rdata  # TTL 0

    def _visible(self) -> tuple[bool, ConsulAuthz | None]:
        """(answerable, token) for this query: DNS reads with the agent's default token (agent/dns.go: every
        lookup's QueryOptions.Token is d.agent.tokens.UserToken(), acl.tokens.default, else anonymous) and the
        catalog filters what that token may not read (Catalog.NodeServices and Health.ServiceNodes filterACL).
        An unknown token makes the RPC fail ("ACL not found"): not answerable (SERVFAIL, rCodeFromError).
        No ACLs in node.json: no token, nothing filtered."""
        if not self.server.dns_acl:
            return True, None
        authz = self.server.acl.resolve(self.server.dns_token)
        return authz is not None, authz

    def resolve(self, qname: str, qtype: int) -> tuple[int, list[Record], list[Record], list[Record]]:
        """(rcode, answers, additional, authority) for a name, from this server's copy of the state (DNS reads
        are stale: dns_config.allow_stale), as the DNS token may read it: a node it may not read (node:read), or
        a service of which no instance is left once those it may not read (service:read on the service,
        node:read on its node) are filtered out, is NXDOMAIN with the SOA in the authority section, as a name
        that does not exist (agent/dns.go nodeLookup / serviceLookup: errNameNotFound; handleQuery adds the SOA)."""
        labels = qname.rstrip(".").lower().split(".")
        dc = self.server.dc.lower()
        soa = [("consul.", T_SOA, soa_rdata(dc))]
        if labels[-1:] != ["consul"]:
            return RCODE_REFUSED, [], [], []  # no recursors configured
        labels = labels[:-1]
        if len(labels) >= 2 and labels[-1] == "dc":
            if labels[-2] != dc:
                return RCODE_NXDOMAIN, [], [], soa
            labels = labels[:-2]
        if labels == [] and qtype in (T_SOA, T_ANY):
            return RCODE_OK, soa, [], []
        answerable, authz = self._visible()
        if not answerable:
            return RCODE_SERVFAIL, [], [], []

        def may_read(node: dict[str, Any], svc: dict[str, Any] | None = None) -> bool:
            if authz is None:
                return True
            return authz.allows("node", node["Node"], "read") and (
                svc is None or authz.allows("service", svc["Service"], "read"))

        def healthy(name: str, tag: str = "") -> list[tuple[dict[str, Any], dict[str, Any]]]:
            """The instances the token may read; Consul's default (dns_config.only_passing = false) then drops
            only those with a critical check. Callers hold the store's lock."""
            return [(n, s) for n, s, checks in self.server.store.instances(name, tag)
                    if may_read(n, s) and all(c["Status"] != "critical" for c in checks)]

        if labels == [] and qtype == T_NS:
            # agent/dns.go nameservers: up to three servers of the "consul" service, as the token sees them
            with self.server.store.lock:
                servers = healthy("consul")
            random.shuffle(servers)
            ns: list[Record] = []
            glue: list[Record] = []
            for node, _ in servers[:3]:
                fqdn = f"{node['Node'].lower()}.node.{dc}.consul."
                ns.append(("consul.", T_NS, encode_name(fqdn)))
                glue.append((fqdn, T_A, _ip(node["Address"])))
            return RCODE_OK, ns, glue, []
        if len(labels) >= 3 and labels[-1] == dc and labels[-2] in ("service", "node"):
            labels = labels[:-1]  # legacy <name>.service.<dc>.consul
        name, tag = "", ""
        if len(labels) == 2 and all(x.startswith("_") for x in labels):
            labels = [*labels, "service"]  # RFC 2782 form without ".service"
        if labels[-1:] == ["service"] and len(labels) in (2, 3):
            rest = labels[:-1]
            if len(rest) == 2 and all(x.startswith("_") for x in rest):
                name, tag = rest[0][1:], ("" if rest[1] in ("_tcp", "_udp") else rest[1][1:])
            else:
                name, tag = rest[-1], (rest[0] if len(rest) == 2 else "")
        with self.server.store.lock:
            state = self.server.store.s
            if len(labels) == 2 and labels[1] == "node":
                found: dict[str, Any] | None = next(
                    (n for n in state["Nodes"].values() if n["Node"].lower() == labels[0]), None)
                if found is None or not may_read(found):
                    return RCODE_NXDOMAIN, [], [], soa
                if qtype in (T_A, T_ANY):
                    return RCODE_OK, [(qname, T_A, _ip(found["Address"]))], [], []
                return RCODE_OK, [], [], soa
            if not name:
                return RCODE_NXDOMAIN, [], [], soa
            instances = healthy(name, tag)
        if not instances:
            return RCODE_NXDOMAIN, [], [], soa
        random.shuffle(instances)
        answers: list[Record] = []
        extra: list[Record] = []
        for node, svc in instances:
            addr = svc["Address"] or node["Address"]
            if qtype == T_SRV:
                if svc["Address"] and svc["Address"] != node["Address"]:
                    target = f"{_ip(addr).hex()}.addr.{dc}.consul."
                else:
                    target = f"{node['Node']}.node.{dc}.consul."
                answers.append((qname, T_SRV, struct.pack(">HHH", 1, 1, svc["Port"]) + encode_name(target)))
                extra.append((target, T_A, _ip(addr)))
            elif qtype in (T_A, T_ANY):
                answers.append((qname, T_A, _ip(addr)))
        return RCODE_OK, answers, extra, ([] if answers else soa)


def _ip(address: str) -> bytes:
    try:
        return ipaddress.IPv4Address(address).packed
    except ValueError:
        return b"\x00\x00\x00\x00"


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python3 -m emulators.consul /etc/alicelab/node.json", file=sys.stderr)
        return 2
    try:
        cfg = base.load_json(argv[1])
        server = ConsulServer(cfg)
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        print(f"{argv[1]}: cannot start the Consul emulator: {exc!r}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        server.run()
    except OSError as exc:
        print(f"{server.name}: cannot listen on {server.ip} (ports {RPC_PORT}, {API_PORT}, {DNS_PORT}): {exc}",
              file=sys.stderr)
        return 1
    while not stop.wait(0.2):
        pass
    log("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
