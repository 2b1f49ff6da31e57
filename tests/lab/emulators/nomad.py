"""Nomad emulator for the lab: servers (role `master`) and clients (role `agent`), HTTP API on 4646.

Test equipment only: it runs in the lab's nodes with Debian's python3 (3.11), standard library only:
    PYTHONPATH=/opt/alicelab python3 -m emulators.nomad /etc/alicelab/node.json

Servers elect a leader with `base.Election` (only with a quorum; autopilot removes a dead server from the
raft configuration and it rejoins when back); the leader owns the state (nodes, jobs, allocations), places
allocations and replicates the state to the followers when it changed; followers forward writes, and reads
unless ?stale, to it. Without a leader a request that needs one is held RPC_HOLD_S (5 s) and then fails
with 500 "No cluster leader". ACLs as node.json's `acl.nomad` defines them (see acl.py): each endpoint
needs what real Nomad requires (node:read, namespace capabilities, operator:read, management...).
Refusals as Nomad 1.9 words them (`refusal`): an unknown, expired or malformed secret gets the same 403
"Permission denied" as a token that lacks the right on every endpoint backed by an RPC (nomad/auth/auth.go
Authenticate), after the RPC's forwarding to the leader (so held, then "No cluster leader", without one);
only the endpoints an agent answers itself (agent/self) resolve the token locally: on a server 403 "ACL
token not found" (500 for an expired one), on a client what the servers' ACL.WhoAmI says. GET
/v1/acl/token/self (ACL.ResolveToken, no authentication) tells them apart: 200 and the token object for a
token the state holds (an expired one until it is garbage-collected), 404 "ACL token not found" for an
unknown secret, 500 "acl token lookup failed: missing secret id" without one. A node.json token may carry
"ExpirationTime" or "ExpirationTTL", "CreateTime", "Global" (see `Tokens`). Error bodies are plain text
without a newline, as Nomad writes them.

Clients register their node `initializing` and make it `ready` with their first heartbeat, which waits a
random stagger of up to INITIAL_HEARTBEAT_STAGGER_S (1 s) and comes at the next tick (1 to 2 s after the
registration), then heartbeat every 1 s, over the servers' RPC port 4647 (nothing is placed on a node
until it is ready); the leader marks a node `down` after 6 s without a heartbeat, or `disconnected` when
one of its allocations' groups has a disconnect block (those allocations are `unknown` for LostAfter, then
lost; back, the node is `initializing` for one heartbeat, then ready). A client also reports failed
allocations, which the leader reschedules by the job's policy. A client is also its node's Consul agent:
a LAN member of Consul's servers (RPC port 8300) that syncs the node's services into the catalog. Lab
faults reach a client through flags in node.json's `fault_dir` (default /run/alicelab):
`nomad-fail-allocations` (empty: fail the CI allocations running here once; "job:ID[,ID]": fail every
allocation of those jobs while it is there) and `nomad-disconnected` (stop heartbeating). A server watches
`nomad-version` (the build it reports) and `rate-limit-nomad` (RATE_LIMIT_FLAG: its HTTP API serves at most
that many requests a second, a float, 1 when empty, burst max(1, rate), and answers the others 429 "Your IP
is issuing too many concurrent connections, please rate limit your calls" with Connection: close, as
Nomad's connection limiter does; see `RateLimit`); its RPC port, which the clients' forwarded requests
use, is not limited.

Jobs are given in node.json (masters only), key `jobs`, a list of:
    {
      "ID": "ci-mesosci-slc9",          # job ID and name (required; unique across namespaces in the lab)
      "Namespace": "default",           # optional
      "Type": "service",                # "service" (kept running) or "batch" (runs RunSeconds, then complete);
                                        # "system" is placed as a service, and a drain stops it last, or never
                                        # with IgnoreSystemJobs
      "Count": 2,                       # allocations wanted (default 1)
      "Constraints": [                  # Nomad constraints; LTarget ${attr.*}, ${meta.*}, ${node.unique.id},
        {"LTarget": "${attr.kernel.name}", "RTarget": "linux", "Operand": "="},   # ${node.unique.name},
        {"LTarget": "${meta.allow_compilation}", "RTarget": "true", "Operand": "="}  # ${node.datacenter},
      ],                                # ${node.class}, ${node.pool}; operands =, ==, is, !=, not, regexp,
                                        # is_set, is_not_set, distinct_hosts
      "RunSeconds": 30,                 # batch only: how long an allocation runs (default 60)
      "Group": "ci", "Task": "ci",      # optional; default "ci" for ci-* jobs, else the job ID
      "Image": "registry.cern.ch/alisw/slc9-builder:latest",  # optional, the docker task's image
      "Priority": 50, "Datacenters": ["cern"],                 # optional
      "Reschedule": {"Attempts": 1, "Interval": "1h", "Delay": "5s", "DelayFunction": "constant",
                     "MaxDelay": "1h", "Unlimited": false},    # optional; Nomad's defaults per job type
      "Disconnect": {"LostAfter": "5m", "Replace": true}       # optional, the group's disconnect block
    }
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from . import base
from .acl import NomadACL, NomadAuthz

VERSION = "1.9.7"
REVISION = "f869597f5dd7ca5a3e2d3d9e8ec7b5fcd8b7a3d2"
HTTP_PORT, RPC_PORT, SERF_PORT = 4646, 4647, 4648
HEARTBEAT_S = 1.0
HEARTBEAT_TTL_S = 6.0
CONSUL_SYNC_S = 5.0
CONSUL_ANTI_ENTROPY_S = 60.0  # a full re-registration of the node's services in Consul
LEADER_LOOP_S = 0.25
MAX_TERMINAL_ALLOCS_PER_JOB = 20
ZERO_TIME = "0001-01-01T00:00:00Z"
NO_LEADER = "No cluster leader"
# nomad/structs/errors.go: errPermissionDenied, errTokenNotFound, errTokenExpired
PERMISSION_DENIED = "Permission denied"
TOKEN_NOT_FOUND = "ACL token not found"
TOKEN_EXPIRED = "ACL token expired"
# command/agent/http.go ResolveToken wraps what an agent endpoint's token resolution returns with this
RESOLVE_FAILED = "failed to resolve ACL token: "
# nomad/encrypter.go VerifyClaim (go-jose v3's jwt.ParseSigned): a secret that is no UUID is tried as a JWT
NOT_A_JWT = "failed to parse signed token: go-jose/go-jose: compact JWS format must have three parts"
# nomad/state/state_store.go ACLTokenBySecretID with an empty secret (GET /v1/acl/token/self without a token)
MISSING_SECRET = "acl token lookup failed: missing secret id"
# nomad/config.go ACLTokenExpirationGCThreshold: an expired token stays in the state until it is this old
ACL_TOKEN_GC_THRESHOLD_S = 3600.0
# helper/funcs.go validUUID: nomad/auth/auth.go tries a secret that is no UUID as a workload identity (JWT)
UUID_RE = re.compile(r"(?i)^[\da-f]{8}-[\da-f]{4}-[\da-f]{4}-[\da-f]{4}-[\da-f]{12}$")
AGENT_LOCAL = "agent:read"  # the right of the endpoints an agent answers itself (agent/self, agent/servers)
HOPS_HEADER = "x-alicelab-hops"
# How long a server holds a request that needs the leader while there is none (Nomad's RPCHoldTimeout).
RPC_HOLD_S = float(os.environ.get("ALICELAB_NOMAD_RPC_HOLD_S", "5"))
RPC_HOLD_JITTER_S = RPC_HOLD_S / 16  # structs.JitterFraction
FAULT_DIR = "/run/alicelab"  # where lab faults leave flags for a client (node.json "fault_dir")
VERSION_FLAG = "nomad-version"  # a server: the build it reports instead of VERSION
RATE_LIMIT_FLAG = "rate-limit-nomad"  # a server: its HTTP API answers at most this many requests a second
RATE_LIMIT_RECHECK_S = 1.0  # how often a server looks at RATE_LIMIT_FLAG (a stat; the file is read when it changed)
# command/agent/http.go connLimiter: what a Nomad agent's HTTP listener answers a client over its limit
# (limits.http_max_conns_per_client), and how many such answers it writes (10 a second, a burst of 100;
# beyond, it closes the connection without a word)
TOO_MANY_CONNS = "Your IP is issuing too many concurrent connections, please rate limit your calls\n"
TOO_MANY_REPLIES_PER_S, TOO_MANY_REPLIES_BURST = 10.0, 100.0
# client/client.go registerAndHeartbeat: a client's first heartbeat (Node.UpdateStatus "ready") comes a random
# stagger after its registration (initialHeartbeatStagger, 10 s upstream, shorter in the lab); the node is
# `initializing` meanwhile
INITIAL_HEARTBEAT_STAGGER_S = float(os.environ.get("ALICELAB_NOMAD_INITIAL_HEARTBEAT_STAGGER_S", "1"))
FAIL_FLAG, DISCONNECT_FLAG = "nomad-fail-allocations", "nomad-disconnected"
ALLOC_RESCHEDULED = "alloc was rescheduled because it failed"
ALLOC_LOST = "alloc is lost since its node is down"
ALLOC_UNKNOWN = "alloc is unknown since its node is disconnected"
ALLOC_RECONNECTED = "alloc not needed due to disconnected client reconnect"


# --------------------------------------------------------------------------- helpers

def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} nomad: {msg}", file=sys.stderr, flush=True)


def rfc3339(ns: int) -> str:
    if not ns:
        return ZERO_TIME
    dt = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def every(name: str, interval: float, fn: Callable[[], None]) -> None:
    """Runs fn every `interval` seconds in a daemon thread that survives any exception."""

    def run() -> None:
        while True:
            started = time.monotonic()
            try:
                fn()
            except Exception:  # test equipment must keep going
                log(f"{name}: {traceback.format_exc()}")
            time.sleep(max(0.05, interval - (time.monotonic() - started)))

    threading.Thread(target=run, name=name, daemon=True).start()


def namespace_of(req: base.Request) -> str:
    return req.query.get("namespace") or "default"


def error(status: int, text: str) -> base.Response:
    """An error as Nomad's HTTP layer writes it (command/agent/http.go wrap): the message as plain text,
    no trailing newline."""
    return base.Response(status=status, raw=text.encode(), headers={"Content-Type": "text/plain; charset=utf-8"})


def parse_time(text: Any) -> int | None:
    """An RFC 3339 time (Go's, up to nanoseconds) in ns since the epoch; None when absent or unreadable."""
    if not text or not isinstance(text, str):
        return None
    m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if not m:
        return None
    try:
        whole = datetime.datetime.fromisoformat(m.group(1) + m.group(3).replace("Z", "+00:00"))
    except ValueError:
        return None
    frac = int((m.group(2) or "0")[:9].ljust(9, "0"))
    return int(whole.timestamp()) * 10**9 + frac


class Tokens:
    """The ACL tokens as Nomad's state holds them (node.json `acl.nomad.tokens` and the internal management
    token), for resolving a secret (`lookup`) and for GET /v1/acl/token/self (`stored`).

    Besides AccessorID, SecretID, Name, Type and Policies, a token of node.json may give "Global",
    "CreateTime" and "ExpirationTime" (RFC 3339) or "ExpirationTTL" (a Go duration; the expiry is then
    CreateTime + TTL, as nomad/acl_endpoint.go UpsertTokens sets it). CreateTime defaults to when the
    emulator started, the indexes to 10, 11, ... in node.json's order (the internal token first)."""

    def __init__(self, cfg: dict[str, Any] | None, acl: NomadACL, started_ns: int | None = None) -> None:
        self.acl = acl
        raw = {str(t["SecretID"]): t for t in (cfg or {}).get("tokens") or [] if t.get("SecretID")}
        started = started_ns or time.time_ns()
        self.views: dict[str, dict[str, Any]] = {}
        self.created: dict[str, int] = {}
        self.expires: dict[str, int | None] = {}
        for n, (secret, authz) in enumerate(acl.by_secret.items()):
            tok = raw.get(secret, {})
            created = parse_time(tok.get("CreateTime")) or started
            ttl = int(parse_duration(tok.get("ExpirationTTL"), 0.0) * 1e9)
            expires = parse_time(tok.get("ExpirationTime")) or (created + ttl if ttl else None)
            kind = "management" if authz.management else "client"
            policies = [str(p) for p in tok.get("Policies") or []] or None
            roles = list(tok.get("Roles") or []) or None
            is_global = bool(tok.get("Global", False))
            digest = hashlib.blake2b(json.dumps([authz.name, kind, policies, is_global, roles]).encode(),
                                     digest_size=32).digest()
            # nomad/structs/structs.go ACLToken, as the HTTP API encodes it (Hash: []byte, in base64)
            self.views[secret] = {
                "AccessorID": authz.accessor, "SecretID": secret, "Name": authz.name, "Type": kind,
                "Policies": policies, "Roles": roles, "Global": is_global,
                "Hash": base64.b64encode(digest).decode(), "CreateTime": rfc3339(created),
                "ExpirationTime": rfc3339(expires) if expires else None, "ExpirationTTL": ttl,
                "CreateIndex": 10 + n, "ModifyIndex": 10 + n,
            }
            self.created[secret], self.expires[secret] = created, expires

    def lookup(self, secret: str) -> tuple[str, NomadAuthz | None]:
        """("anonymous"|"ok", rights) or ("not-found"|"invalid"|"expired", None): "invalid" is an unknown
        secret that is no UUID (nomad/auth/auth.go resolveSecretToken: ErrTokenInvalid)."""
        if not secret:
            return "anonymous", self.acl.anonymous
        authz = self.acl.resolve(secret)
        if authz is None:
            return ("not-found" if UUID_RE.match(secret) else "invalid"), None
        expires = self.expires.get(secret)
        if expires is not None and expires < time.time_ns():  # ACLToken.IsExpired
            return "expired", None
        return "ok", authz

    def expired(self) -> list[str]:
        """The accessors of the tokens that have expired."""
        now = time.time_ns()
        return [self.views[s]["AccessorID"] for s, e in self.expires.items() if e is not None and e < now]

    def stored(self, secret: str, collected: set[str]) -> dict[str, Any] | None:
        """The token the state holds for this secret: an expired one too, until the garbage collector
        removes it (nomad/core_sched.go expiredACLTokenGC: expired and created ACL_TOKEN_GC_THRESHOLD_S
        ago; the periodic sweep's 5 minutes are not waited; `nomad system gc` takes them all at once)."""
        view = self.views.get(secret)
        if view is None or view["AccessorID"] in collected:
            return None
        expires = self.expires.get(secret)
        if expires is not None and time.time_ns() >= max(expires, self.created[secret] +
                                                          int(ACL_TOKEN_GC_THRESHOLD_S * 1e9)):
            return None
        return view


def refusal(state: str, agent: str) -> base.Response:
    """What Nomad answers a secret it cannot use (state "not-found", "invalid", "expired"), by where it is
    resolved (agent "" an RPC endpoint, "server" / "client" an endpoint the agent answers itself)."""
    if agent == "server":
        # nomad/auth/auth.go ResolveToken (resolveTokenFromSnapshotCache): ErrTokenNotFound for any unknown
        # secret, ErrTokenExpired; command/agent/http.go wrap turns "...: ACL token not found" into a 403
        # and leaves "...: ACL token expired" a 500.
        if state == "expired":
            return error(500, RESOLVE_FAILED + TOKEN_EXPIRED)
        return error(403, TOKEN_NOT_FOUND)
    if agent == "client":
        # client/acl.go resolveTokenValue asks the servers (ACL.WhoAmI, nomad/acl_endpoint.go), which return
        # Authenticate's error as is: ErrPermissionDenied for an unknown UUID, ErrTokenExpired, or the JWT
        # parser's error for a secret that is no UUID; only the first ends in a known error (403).
        if state == "expired":
            return error(500, RESOLVE_FAILED + TOKEN_EXPIRED)
        if state == "invalid":
            return error(500, RESOLVE_FAILED + NOT_A_JWT)
        return error(403, PERMISSION_DENIED)
    # nomad/auth/auth.go Authenticate: an unknown secret is ErrPermissionDenied (expired: ErrTokenExpired, no
    # UUID: the JWT error), and every RPC endpoint answers any authentication error with ErrPermissionDenied
    # (e.g. nomad/node_endpoint.go List: `if authErr != nil { return structs.ErrPermissionDenied }`): 403
    # "Permission denied", as for a known token that lacks the right.
    return error(403, PERMISSION_DENIED)


def token_check(tokens: Tokens, agent: str,
                hold: Callable[[base.Request], base.Response | None] | None = None) -> base.TokenCheck:
    """Resolves the request's token (X-Nomad-Token or Bearer) and checks the right the route needs:
    "node:read", "agent:read", "operator:read", "node:write", "management", or "" (any known token;
    the handler checks namespace capabilities itself). `agent`: "server" or "client", who answers the
    agent:read endpoints itself. `hold`: before refusing a request to an RPC endpoint, what a server
    does first (forward to the leader: without one, the leaderless hold)."""

    def check(req: base.Request, need: str) -> base.Response | None:
        state, authz = tokens.lookup(base.bearer_token(req, "x-nomad-token"))
        if authz is not None:
            req.authz = authz
            if need == "management":
                ok = authz.management
            elif need:
                resource, _, level = need.partition(":")
                ok = authz.allows(resource, level)
            else:
                ok = True
            if ok:
                return None
            denied = error(403, PERMISSION_DENIED)
        else:
            denied = refusal(state, agent if need == AGENT_LOCAL else "")
        if hold is not None and need != AGENT_LOCAL:
            return hold(req) or denied
        return denied

    return check


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateLimit:
    """The lab fault rate-limit-nomad: while `<fault_dir>/rate-limit-nomad` exists, a server's HTTP API
    answers at most its content (requests a second, a float; empty or unreadable: 1) with a burst of
    max(1, rate), over every caller; beyond, 429 as Nomad's HTTP listener answers a client over
    `limits.http_max_conns_per_client` (command/agent/http.go connLimiter: the only 429 an overloaded Nomad
    agent writes), and the connection is closed. The flag is looked at (a stat) at most every
    RATE_LIMIT_RECHECK_S, and read only when it changed."""

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.clock = path, clock
        self.lock = threading.Lock()
        self.checked = float("-inf")
        self.seen: tuple[int, int, int] | None = None
        self.bucket: TokenBucket | None = None  # None: no limit
        self.replies = TokenBucket(TOO_MANY_REPLIES_PER_S, TOO_MANY_REPLIES_BURST, clock())

    @staticmethod
    def parse(text: str) -> float:
        try:
            rate = float(text.strip())
        except ValueError:
            return 1.0
        return rate if math.isfinite(rate) and rate > 0 else 1.0

    def _recheck(self, now: float) -> None:
        self.checked = now
        try:
            st = os.stat(self.path)
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
            if seen == self.seen:
                return
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                rate = self.parse(fh.read())
        except OSError:
            self.seen, self.bucket = None, None
            return
        self.seen, self.bucket = seen, TokenBucket(rate, max(1.0, rate), now)

    def admit(self) -> str:
        """"ok", "429" (answer Nomad's 429) or "drop" (close the connection without an answer)."""
        with self.lock:
            now = self.clock()
            if now - self.checked >= RATE_LIMIT_RECHECK_S:
                self._recheck(now)
            if self.bucket is None or self.bucket.take(now):
                return "ok"
            return "429" if self.replies.take(now) else "drop"


def too_many_requests() -> base.Response:
    """command/agent/http.go connLimiter's answer, written as is: `HTTP/1.1 429 Too Many Requests`,
    Content-Type text/plain, Connection: close."""
    return base.Response(status=429, raw=TOO_MANY_CONNS.encode(),
                         headers={"Content-Type": "text/plain", "Connection": "close"})


def authz_of(req: base.Request) -> NomadAuthz:
    authz: NomadAuthz = req.authz
    return authz


def request_to_json(req: base.Request, hops: int) -> dict[str, Any]:
    headers = {k: v for k, v in req.headers.items() if k in ("x-nomad-token", "authorization")}
    headers[HOPS_HEADER] = str(hops)
    return {"method": req.method, "path": req.path, "query": req.query, "headers": headers,
            "body": req.body.decode(errors="replace")}


def request_from_json(d: dict[str, Any]) -> base.Request:
    return base.Request(d["method"], d["path"], dict(d.get("query") or {}), dict(d.get("headers") or {}),
                        str(d.get("body") or "").encode())


def response_to_json(resp: base.Response) -> dict[str, Any]:
    return {"status": resp.status, "headers": resp.headers, "body": resp.encode().decode(errors="replace")}


def response_from_json(d: dict[str, Any]) -> base.Response:
    return base.Response(status=int(d["status"]), raw=str(d.get("body", "")).encode(), headers=dict(d["headers"]))


def parse_duration(text: Any, default: float) -> float:
    """A Go duration ("5s", "1h30m", "500ms") or a number of seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    total, found = 0.0, False
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text or ""):
        found = True
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total if found else default


def prometheus_text(gauges: list[tuple[str, dict[str, str], float]]) -> bytes:
    lines: list[str] = []
    seen: set[str] = set()
    for name, labels, value in gauges:
        if name not in seen:
            seen.add(name)
            lines.append(f"# HELP {name} {name}")
            lines.append(f"# TYPE {name} gauge")
        lab = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        lines.append(f"{name}{{{lab}}} {value:g}" if lab else f"{name} {value:g}")
    return ("\n".join(lines) + "\n").encode()


def metrics_response(req: base.Request, gauges: list[tuple[str, dict[str, str], float]]) -> base.Response:
    if req.query.get("format") == "prometheus":
        return base.Response(raw=prometheus_text(gauges), headers={"Content-Type": "text/plain; version=0.0.4"})
    body = {
        "Timestamp": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
        "Gauges": [{"Name": n.replace("_", "."), "Labels": labels, "Value": v} for n, labels, v in gauges],
        "Counters": [], "Samples": [], "Points": [],
    }
    return base.Response(body=body)


def runtime_stats() -> dict[str, str]:
    return {"arch": _arch(), "cpu_count": str(os.cpu_count() or 1), "goroutines": str(threading.active_count()),
            "kernel.name": os.uname().sysname.lower(), "max_procs": str(os.cpu_count() or 1), "version": "go1.22.12"}


def _arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def agent_config(cfg: dict[str, Any], server: bool) -> dict[str, Any]:
    """The agent configuration as /v1/agent/self shows it (the subset the lab's nodes would set)."""
    ip = cfg["ip"]
    masters = cfg.get("masters", [])
    tls = cfg.get("tls", {})
    return {
        "Addresses": {"HTTP": ip, "RPC": ip, "Serf": ip},
        "AdvertiseAddrs": {"HTTP": f"{ip}:{HTTP_PORT}", "RPC": f"{ip}:{RPC_PORT}", "Serf": f"{ip}:{SERF_PORT}"},
        "BindAddr": "0.0.0.0",
        "Client": {
            "AllocDir": "", "ChrootEnv": {}, "ClientMaxPort": 14512, "ClientMinPort": 14000,
            "DisableRemoteExec": False, "Enabled": not server, "GCDiskUsageThreshold": 80,
            "GCInodeUsageThreshold": 70, "GCInterval": 60000000000, "MaxKillTimeout": "30s",
            "Meta": {} if server else {"allow_compilation": "true"}, "NetworkInterface": "eth0", "NetworkSpeed": 0,
            "NodeClass": "", "NodePool": "default", "Options": {"driver.docker.volumes": "true"},
            "Reserved": {"CPU": 0, "DiskMB": 0, "MemoryMB": 0, "ParsedReservedPorts": None, "ReservedPorts": ""},
            "Servers": None if server else [f"{m['ip']}:{RPC_PORT}" for m in masters],
            "StateDir": "" if server else os.path.join(cfg.get("build_dir", "/build"), "nomad", "client"),
        },
        "Consul": {
            "Addr": "127.0.0.1:8500", "Auth": "", "AutoAdvertise": True, "CAFile": tls.get("ca", ""),
            "CertFile": tls.get("cert", ""), "ChecksUseAdvertise": False, "ClientAutoJoin": True,
            "ClientServiceName": "nomad-client", "EnableSSL": True, "KeyFile": tls.get("key", ""),
            "ServerAutoJoin": True, "ServerServiceName": "nomad", "Timeout": 5000000000, "Token": "<redacted>",
            "VerifySSL": True,
        },
        "DataDir": os.path.join(cfg.get("build_dir", "/build"), "nomad"),
        "Datacenter": cfg.get("datacenter", "cern"), "DevMode": False, "DisableAnonymousSignature": True,
        "DisableUpdateCheck": True, "EnableDebug": False, "EnableSyslog": False, "Files": ["/etc/nomad.d/nomad.hcl"],
        "HTTPAPIResponseHeaders": {}, "LeaveOnInt": False, "LeaveOnTerm": False, "LogLevel": "INFO",
        "NodeName": cfg["name"], "Ports": {"HTTP": HTTP_PORT, "RPC": RPC_PORT, "Serf": SERF_PORT},
        "Region": cfg.get("region", "global"), "Revision": REVISION,
        "Server": {
            "BootstrapExpect": len(masters) if server else 0, "DataDir": "", "Enabled": server,
            "EnabledSchedulers": None, "HeartbeatGrace": "", "NodeGCThreshold": "", "NumSchedulers": 0,
            "ProtocolVersion": 0, "RaftProtocol": 3, "RejoinAfterLeave": False, "RetryInterval": "30s",
            "RetryJoin": [m["ip"] for m in masters] if server else [], "RetryMaxAttempts": 0, "StartJoin": [],
        },
        "SyslogFacility": "LOCAL0",
        "TLSConfig": {"CAFile": tls.get("ca", ""), "CertFile": tls.get("cert", ""), "EnableHTTP": True,
                      "EnableRPC": True, "KeyFile": tls.get("key", ""), "VerifyHTTPSClient": True,
                      "VerifyServerHostname": True},
        "Telemetry": {"CollectionInterval": "1s", "DisableHostname": False, "PrometheusMetrics": True,
                      "PublishAllocationMetrics": True, "PublishNodeMetrics": True, "UseNodeName": False},
        "Vault": {"Addr": "https://vault.service.consul:8200", "AllowUnauthenticated": True,
                  "ConnectionRetryIntv": 30000000000, "Enabled": server, "Role": "", "TLSCaFile": tls.get("ca", ""),
                  "TLSSkipVerify": False, "TaskTokenTTL": "", "Token": "<redacted>"},
        "Version": {"Revision": REVISION, "Version": VERSION, "VersionMetadata": "", "VersionPrerelease": ""},
    }


# --------------------------------------------------------------------------- jobs and allocations

# Nomad's defaults (structs.DefaultServiceJobReschedulePolicy / DefaultBatchJobReschedulePolicy), in seconds.
RESCHEDULE_DEFAULTS = {
    "service": {"Attempts": 0, "Interval": 0.0, "Delay": 30.0, "DelayFunction": "exponential", "MaxDelay": 3600.0,
                "Unlimited": True},
    "batch": {"Attempts": 1, "Interval": 86400.0, "Delay": 5.0, "DelayFunction": "constant", "MaxDelay": 3600.0,
              "Unlimited": False},
}


def reschedule_policy(spec: dict[str, Any]) -> dict[str, Any]:
    """A job's reschedule policy (a spec persisted by an older emulator has none: Nomad's default)."""
    default = RESCHEDULE_DEFAULTS.get(spec["Type"], RESCHEDULE_DEFAULTS["service"])
    policy: dict[str, Any] = spec.get("Reschedule") or default
    return policy


def job_spec(raw: dict[str, Any], datacenter: str) -> dict[str, Any]:
    jid = str(raw["ID"])
    default_name = "ci" if jid.startswith("ci-") else jid
    kind = raw.get("Type", "service")
    policy = dict(RESCHEDULE_DEFAULTS.get(kind, RESCHEDULE_DEFAULTS["service"]))
    for key, value in (raw.get("Reschedule") or {}).items():
        policy[key] = parse_duration(value, 0.0) if key in ("Interval", "Delay", "MaxDelay") else value
    disconnect = raw.get("Disconnect")
    return {
        "ID": jid,
        "Namespace": raw.get("Namespace", "default"),
        "Type": kind,
        "Count": int(raw.get("Count", 1)),
        "Constraints": list(raw.get("Constraints") or []),
        "RunSeconds": float(raw.get("RunSeconds", 60)),
        "Group": raw.get("Group", default_name),
        "Task": raw.get("Task", default_name),
        "Image": raw.get("Image", "registry.cern.ch/alisw/slc9-builder:latest"),
        "Priority": int(raw.get("Priority", 50)),
        "Datacenters": list(raw.get("Datacenters") or [datacenter]),
        "Reschedule": policy,
        # The group's disconnect block (Nomad >= 1.8; max_client_disconnect before): while its node is
        # disconnected an allocation is `unknown` for LostAfter seconds instead of `lost` at once.
        "Disconnect": None if not disconnect else {
            "LostAfter": parse_duration(disconnect.get("LostAfter"), 0.0),
            "Replace": bool(disconnect.get("Replace", True)),
            "Reconcile": disconnect.get("Reconcile", "best_score"),
        },
    }


def _target(expr: str, node: dict[str, Any]) -> str | None:
    m = re.fullmatch(r"\$\{(attr|meta)\.(.+)\}", expr or "")
    if m:
        values: dict[str, str] = node.get("Attributes" if m.group(1) == "attr" else "Meta") or {}
        return values.get(m.group(2))
    fixed = {"${node.unique.id}": node["ID"], "${node.unique.name}": node["Name"],
             "${node.datacenter}": node["Datacenter"], "${node.class}": node.get("NodeClass", ""),
             "${node.pool}": node.get("NodePool", "default")}
    return str(fixed.get(expr, expr))


def satisfies(node: dict[str, Any], constraints: list[dict[str, Any]]) -> bool:
    for c in constraints:
        op = c.get("Operand", "=")
        left, right = _target(c.get("LTarget", ""), node), c.get("RTarget", "")
        if op == "distinct_hosts":
            continue  # checked by the placement
        if op in ("=", "==", "is"):
            ok = left == right
        elif op in ("!=", "not"):
            ok = left != right
        elif op == "regexp":
            ok = left is not None and re.search(right, left) is not None
        elif op == "is_set":
            ok = left is not None
        elif op == "is_not_set":
            ok = left is None
        else:
            ok = False  # an operand the lab does not know never matches, rather than matching silently
        if not ok:
            return False
    return True


def task_event(kind: str, ns: int, message: str = "", details: dict[str, str] | None = None,
               exit_code: int = 0) -> dict[str, Any]:
    display = {"Received": "Task received by client", "Task Setup": "Building Task Directory",
               "Driver": "Downloading image", "Started": "Task started by client",
               "Terminated": f"Exit Code: {exit_code}", "Killing": "Sent interrupt. Waiting 5s before force killing",
               "Killed": "Task successfully killed"}.get(kind, message)
    return {
        "Details": details or {}, "DiskLimit": 0, "DisplayMessage": display, "DownloadError": "", "DriverError": "",
        "DriverMessage": "", "ExitCode": exit_code, "FailedSibling": "", "FailsTask": kind == "Not Restarting",
        "GenericSource": "", "KillError": "", "KillReason": "", "KillTimeout": 0, "Message": message,
        "RestartReason": message if kind == "Not Restarting" else "", "SetupError": "", "Signal": 0, "StartDelay": 0,
        "TaskSignal": "", "TaskSignalReason": "", "Time": ns, "Type": kind, "ValidationError": "", "VaultError": "",
    }


def empty_state() -> dict[str, Any]:
    # acl_gc: the accessors of expired ACL tokens that `nomad system gc` removed from the state
    return {"index": 1, "nodes": {}, "jobs": {}, "allocs": {}, "drains": {}, "disconnects": {}, "acl_gc": []}


ACTIVE = ("pending", "running")


def is_active(a: dict[str, Any]) -> bool:
    return bool(a["DesiredStatus"] == "run" and a["ClientStatus"] in ACTIVE)


def is_unknown(a: dict[str, Any]) -> bool:
    """Running on a disconnected node, as far as the servers know."""
    return bool(a["DesiredStatus"] == "run" and a["ClientStatus"] == "unknown")


def finished_ok(a: dict[str, Any]) -> bool:
    """A batch allocation that ran to its end (not one stopped by a drain or a lost node)."""
    return bool(a["ClientStatus"] == "complete" and a["DesiredStatus"] == "run")


def ns_time() -> int:
    return time.time_ns()


class Cluster:
    """The state the leader owns, and the rules it applies to it (the scheduler's, simplified): placement,
    node heartbeats (down / disconnected), drains, failed allocations and their rescheduling.
    Callers hold the server's lock."""

    def __init__(self, state: dict[str, Any], jobs: list[dict[str, Any]], region: str) -> None:
        self.state, self.jobs, self.region = state, jobs, region
        state.setdefault("disconnects", {})

    def bump(self) -> int:
        self.state["index"] += 1
        return int(self.state["index"])

    def job_of(self, a: dict[str, Any]) -> dict[str, Any] | None:
        job: dict[str, Any] | None = self.state["jobs"].get(a["JobID"])
        return job

    def lost_after(self, a: dict[str, Any]) -> float:
        """Seconds an allocation may stay `unknown` on a disconnected node (0: lost at once)."""
        job = self.job_of(a)
        disconnect = job["Spec"].get("Disconnect") if job else None
        return float(disconnect["LostAfter"]) if disconnect else 0.0

    # --- nodes
    def node_event(self, node: dict[str, Any], message: str, subsystem: str, idx: int) -> None:
        event = {"CreateIndex": idx, "Details": None, "Message": message, "Subsystem": subsystem,
                 "Timestamp": rfc3339(time.time_ns())}
        node["Events"] = [*(node.get("Events") or [])[-9:], event]

    def set_status(self, node: dict[str, Any], status: str, message: str | None) -> None:
        """A new status, with an event when Nomad records one (message None: none)."""
        idx = self.bump()
        node["Status"], node["StatusUpdatedAt"], node["ModifyIndex"] = status, int(time.time()), idx
        if message is not None:
            self.node_event(node, message, "Cluster", idx)

    def upsert_node(self, info: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Registers or updates a node from its client's fingerprint; (node, whether anything changed)."""
        nodes = self.state["nodes"]
        node: dict[str, Any] | None = nodes.get(info["ID"])
        if node is None:
            # client/client.go setupNode: a client registers its node `initializing` (nomad/node_endpoint.go
            # Register keeps it); the client's first heartbeat (`heartbeat`) makes it ready.
            idx = self.bump()
            node = dict(info, Status="initializing", StatusDescription="", StatusUpdatedAt=int(time.time()),
                        SchedulingEligibility="eligible", Drain=False, DrainStrategy=None, LastDrain=None,
                        Events=[], CreateIndex=idx, ModifyIndex=idx, SecretID="")
            self.node_event(node, "Node registered", "Cluster", idx)
            nodes[info["ID"]] = node
            return node, True
        fingerprint = ("Name", "Datacenter", "NodeClass", "NodePool", "HTTPAddr", "Meta", "Drivers")
        if any(node.get(k) != info.get(k) for k in fingerprint):
            node["ModifyIndex"] = self.bump()
        changed = any(node.get(k) != v for k, v in info.items())
        node.update(info)  # attributes (free disk space) change all the time: no new index for them
        return node, changed

    def heartbeat(self, node: dict[str, Any]) -> None:
        """A client's heartbeat (Node.UpdateStatus "ready"), by nomad/node_endpoint.go UpdateStatus: an
        `initializing` node becomes ready (no event); a `disconnected` one comes back `initializing` (and
        ready at its next heartbeat, once its allocations are updated); a `down` one is ready again, with
        the event "Node reregistered by heartbeat"."""
        status = node["Status"]
        if status == "disconnected":
            self.reconnect(node)
        elif status == "initializing":
            self.set_status(node, "ready", None)
        elif status != "ready":
            self.set_status(node, "ready", "Node reregistered by heartbeat")

    def reconnect(self, node: dict[str, Any]) -> None:
        """A disconnected node is back before its allocations were lost: they run on (the client reports
        them running), and the replacements placed meanwhile are stopped (the `best_score` reconcile,
        preferring the original). The node is `initializing` until its next heartbeat."""
        self.state["disconnects"].pop(node["ID"], None)
        self.set_status(node, "initializing", None)
        allocs = self.state["allocs"]
        for a in [a for a in allocs.values() if a["NodeID"] == node["ID"] and is_unknown(a)]:
            a["ClientStatus"], a["ClientDescription"], a["NextAllocation"] = "running", "Tasks are running", ""
            self.touch(a)
            for r in allocs.values():  # the whole chain of replacements in its slot, failed ones too
                if (r["JobID"], r["Slot"]) == (a["JobID"], a["Slot"]) and r is not a and r["DesiredStatus"] == "run":
                    self.stop_alloc(r, "complete", ALLOC_RECONNECTED)

    # --- allocations
    def touch(self, a: dict[str, Any]) -> None:
        a["ModifyIndex"] = a["AllocModifyIndex"] = self.bump()
        a["ModifyTime"] = time.time_ns()

    def stop_alloc(self, a: dict[str, Any], client: str, desired_desc: str, migrate: bool = False) -> None:
        now = time.time_ns()
        a["DesiredStatus"], a["DesiredDescription"] = "stop", desired_desc
        if a["ClientStatus"] in (*ACTIVE, "unknown"):
            a["ClientStatus"] = client
            a["ClientDescription"] = "All tasks have completed" if client == "complete" else ""
            a["FinishedAt"] = now
            if client == "complete":
                a["Events"] += [task_event("Killing", now), task_event("Killed", now)]
        if migrate:
            a["DesiredTransition"]["Migrate"] = True
        self.touch(a)

    def fail_alloc(self, a: dict[str, Any], exit_code: int = 1) -> None:
        """The client reports that the allocation's task failed (and its restarts are used up)."""
        if not is_active(a):
            return
        now = time.time_ns()
        reason = 'Exceeded allowed attempts 2 in interval 30m0s and mode is "fail"'
        a["ClientStatus"], a["ClientDescription"], a["FinishedAt"] = "failed", "Failed tasks", now
        a["TaskFailed"], a["Restarts"] = True, 2
        a["FollowupEvalID"] = str(uuid.uuid4())
        a["Events"] += [task_event("Terminated", now, "", {"exit_code": str(exit_code), "signal": "0"}, exit_code),
                        task_event("Not Restarting", now, reason, {"fails_task": "true", "restart_reason": reason})]
        self.touch(a)

    def place(self, job: dict[str, Any], slot: int, node: dict[str, Any], prev: dict[str, Any] | None,
              tracker: dict[str, Any] | None = None) -> None:
        spec = job["Spec"]
        now = time.time_ns()
        idx = self.bump()
        aid = str(uuid.uuid4())
        self.state["allocs"][aid] = {
            "ID": aid, "EvalID": str(uuid.uuid4()), "Name": f"{spec['ID']}.{spec['Group']}[{slot}]", "Slot": slot,
            "Namespace": spec.get("Namespace", "default"), "NodeID": node["ID"], "NodeName": node["Name"],
            "JobID": spec["ID"], "JobType": spec["Type"], "JobVersion": job["Version"], "TaskGroup": spec["Group"],
            "Task": spec["Task"], "DesiredStatus": "run", "DesiredDescription": "", "ClientStatus": "running",
            "ClientDescription": "Tasks are running",
            "DesiredTransition": {"ForceReschedule": None, "Migrate": None, "Reschedule": None},
            "CreateIndex": idx, "ModifyIndex": idx, "AllocModifyIndex": idx, "CreateTime": now, "ModifyTime": now,
            "StartedAt": now, "FinishedAt": 0, "PreviousAllocation": prev["ID"] if prev else "",
            "NextAllocation": "", "RescheduleTracker": tracker, "FollowupEvalID": "",
            "Events": [task_event("Received", now), task_event("Task Setup", now, "Building Task Directory",
                                                               {"message": "Building Task Directory"}),
                       task_event("Driver", now, "", {"image": spec["Image"]}), task_event("Started", now)],
        }
        if prev:
            prev["NextAllocation"] = aid
            if tracker is not None:  # a reschedule: the failed allocation is stopped
                prev["DesiredStatus"], prev["DesiredDescription"] = "stop", ALLOC_RESCHEDULED
            self.touch(prev)

    def feasible(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        return [n for n in self.state["nodes"].values()
                if n["Status"] == "ready" and n["SchedulingEligibility"] == "eligible" and not n["Drain"]
                and n["Datacenter"] in spec["Datacenters"] and satisfies(n, spec["Constraints"])]

    def reschedule(self, a: dict[str, Any]) -> tuple[int, int] | None:
        """When a failed allocation may be replaced and with which delay (ns), by its job's reschedule
        policy; None when it has no attempts left (or rescheduling is off)."""
        job = self.job_of(a)
        if job is None:
            return None
        policy = reschedule_policy(job["Spec"])
        if not policy["Unlimited"] and int(policy["Attempts"]) <= 0:
            return None
        events = (a.get("RescheduleTracker") or {}).get("Events") or []
        failed_at = int(a["FinishedAt"] or a["ModifyTime"])
        if not policy["Unlimited"]:
            window_start = failed_at - int(float(policy["Interval"]) * 1e9)
            if sum(1 for e in events if e["RescheduleTime"] >= window_start) >= int(policy["Attempts"]):
                return None
        delay = float(policy["Delay"])
        if policy["DelayFunction"] != "constant" and events:
            delay = min(float(policy["MaxDelay"]), delay * 2 ** len(events))
        return failed_at + int(delay * 1e9), int(delay * 1e9)

    def reconcile(self, heartbeats: dict[str, float]) -> None:
        st = self.state
        now, mono = time.time_ns(), time.monotonic()
        allocs = st["allocs"]
        # Jobs come from the configuration; a changed spec is a new job version.
        for spec in self.jobs:
            job = st["jobs"].get(spec["ID"])
            if job is None:
                idx = self.bump()
                st["jobs"][spec["ID"]] = {"Spec": spec, "CreateIndex": idx, "ModifyIndex": idx, "JobModifyIndex": idx,
                                          "SubmitTime": now, "Version": 0}
            elif job["Spec"] != spec:
                idx = self.bump()
                job.update(Spec=spec, ModifyIndex=idx, JobModifyIndex=idx, SubmitTime=now, Version=job["Version"] + 1)
        # Missed heartbeats: the node is down and what ran there is lost, or, when some of its allocations
        # may outlive a disconnection, it is disconnected and those are unknown until their window closes.
        # (nomad/heartbeat.go: every node with a heartbeat timer, an `initializing` one too)
        for node in st["nodes"].values():
            if node["Status"] not in ("ready", "initializing", "disconnected"):
                continue
            if mono - heartbeats.get(node["ID"], 0.0) <= HEARTBEAT_TTL_S:
                continue
            mine = [a for a in allocs.values() if a["NodeID"] == node["ID"]]
            if node["Status"] != "disconnected":
                running = [a for a in mine if is_active(a)]
                if any(self.lost_after(a) > 0 for a in running):
                    self.set_status(node, "disconnected", "Node heartbeat missed")
                    st["disconnects"][node["ID"]] = now
                    for a in running:
                        if self.lost_after(a) > 0:
                            a["ClientStatus"], a["ClientDescription"] = "unknown", ALLOC_UNKNOWN
                            a["UnknownSince"], a["FollowupEvalID"] = now, str(uuid.uuid4())
                            self.touch(a)
                        else:
                            self.stop_alloc(a, "lost", ALLOC_LOST)
                else:
                    self.set_status(node, "down", "Node heartbeat missed")
                    for a in running:
                        self.stop_alloc(a, "lost", ALLOC_LOST)
            else:
                unknown = [a for a in mine if is_unknown(a)]
                for a in unknown:
                    if now >= int(a.get("UnknownSince") or now) + int(self.lost_after(a) * 1e9):
                        self.stop_alloc(a, "lost", ALLOC_LOST)
                if not any(is_unknown(a) for a in unknown):
                    st["disconnects"].pop(node["ID"], None)
                    self.set_status(node, "down", "Node heartbeat missed")
        # Batch allocations finish after their run time.
        for a in allocs.values():
            job = st["jobs"].get(a["JobID"])
            if (a["JobType"] == "batch" and a["ClientStatus"] == "running" and a["DesiredStatus"] == "run" and job
                    and now >= a["StartedAt"] + int(job["Spec"]["RunSeconds"] * 1e9)):
                a["ClientStatus"], a["ClientDescription"], a["FinishedAt"] = "complete", "All tasks have completed", now
                a["Events"].append(task_event("Terminated", now, "", {"exit_code": "0", "signal": "0"}))
                self.touch(a)
        # Drains: service allocations migrate now, batch ones at the deadline; then the drain is complete.
        # System allocations wait for the rest and are stopped last, unless the drain ignores system jobs
        # (nomad/drainer/draining_node.go IsDone skips them, RemainingAllocs drops them with IgnoreSystemJobs).
        for node_id, drain in list(st["drains"].items()):
            node = st["nodes"].get(node_id)
            if node is None:
                del st["drains"][node_id]
                continue
            forced = drain["force_ns"] is not None and now >= drain["force_ns"]
            left, system = 0, []
            for a in allocs.values():
                if a["NodeID"] == node_id and is_active(a):
                    if a["JobType"] == "system":
                        system.append(a)
                    elif a["JobType"] == "service" or forced:
                        self.stop_alloc(a, "complete", "alloc is being migrated", migrate=True)
                    else:
                        left += 1
            if not left:
                if not (node.get("DrainStrategy") or {}).get("IgnoreSystemJobs"):
                    for a in system:
                        self.stop_alloc(a, "complete", "alloc is being migrated", migrate=True)
                idx = self.bump()
                node.update(Drain=False, DrainStrategy=None, ModifyIndex=idx)
                if node.get("LastDrain"):
                    node["LastDrain"].update(Status="complete", UpdatedAt=rfc3339(now))
                self.node_event(node, "Node drain complete", "Drain", idx)
                del st["drains"][node_id]
        # Placement: keep Count allocations per job, spread over the feasible nodes.
        for job in st["jobs"].values():
            self.place_job(job)
        self.gc()

    def slots(self, job: dict[str, Any]) -> dict[int, tuple[str, dict[str, Any] | None]]:
        """What each of a job's slots holds: "active", "unknown" (kept while its node is disconnected),
        "done" (batch), "waiting" (failed, rescheduled after a delay), "exhausted" (failed, no attempts
        left), or "free" (to place, with the allocation it replaces, if any)."""
        spec = job["Spec"]
        mine = [a for a in self.state["allocs"].values() if a["JobID"] == spec["ID"]]
        now = time.time_ns()
        out: dict[int, tuple[str, dict[str, Any] | None]] = {}
        for slot in range(spec["Count"]):
            here = [a for a in mine if a["Slot"] == slot]
            replace = bool((spec.get("Disconnect") or {}).get("Replace", True))
            if any(is_active(a) for a in here):
                out[slot] = ("active", None)
                continue
            if not replace and any(is_unknown(a) for a in here):
                out[slot] = ("unknown", None)
                continue
            if spec["Type"] == "batch" and any(finished_ok(a) for a in here):
                out[slot] = ("done", None)
                continue
            prev = max((a for a in here if not a["NextAllocation"]), key=lambda a: a["CreateIndex"], default=None)
            if prev is not None and prev["ClientStatus"] == "failed" and not prev["DesiredTransition"].get(
                    "ForceReschedule"):
                when = self.reschedule(prev)
                if when is None:
                    out[slot] = ("exhausted", prev)
                    continue
                if now < when[0]:
                    out[slot] = ("waiting", prev)
                    continue
            out[slot] = ("free", prev)
        return out

    def place_job(self, job: dict[str, Any]) -> None:
        spec = job["Spec"]
        for a in self.state["allocs"].values():
            if a["JobID"] == spec["ID"] and is_active(a) and a["Slot"] >= spec["Count"]:
                self.stop_alloc(a, "complete", "alloc not needed due to job update")
        free = [(slot, prev) for slot, (what, prev) in sorted(self.slots(job).items()) if what == "free"]
        if not free:
            return
        nodes = self.feasible(spec)
        distinct = any(c.get("Operand") == "distinct_hosts" for c in spec["Constraints"])
        load: dict[str, int] = {n["ID"]: 0 for n in nodes}
        own: dict[str, int] = {n["ID"]: 0 for n in nodes}
        for a in self.state["allocs"].values():
            if is_active(a) and a["NodeID"] in load:
                load[a["NodeID"]] += 1
                own[a["NodeID"]] += a["JobID"] == spec["ID"]
        for slot, prev in free:
            tracker = None
            avoid: set[str] = set()
            if prev is not None and prev["ClientStatus"] == "failed":
                when = self.reschedule(prev)
                old = (prev.get("RescheduleTracker") or {}).get("Events") or []
                event = {"PrevAllocID": prev["ID"], "PrevNodeID": prev["NodeID"], "RescheduleTime": time.time_ns(),
                         "Delay": when[1] if when else 0}
                tracker = {"Events": [*old, event], "LastReschedule": "ok"}
                avoid = {prev["NodeID"], *(e["PrevNodeID"] for e in old)}  # Nomad penalises previous nodes
            choices = [n for n in nodes if not (distinct and own[n["ID"]])]
            if not choices:
                return  # stays queued until a node fits
            node = min(choices, key=lambda n: (n["ID"] in avoid, own[n["ID"]], load[n["ID"]], n["Name"]))
            self.place(job, slot, node, prev, tracker)
            own[node["ID"]] += 1
            load[node["ID"]] += 1

    def gc(self, force: bool = False) -> None:
        """Keeps the newest terminal allocations of each job (all of them go with force, as
        `nomad system gc` does, except those a job still stands on: a finished batch slot, a failed
        allocation with no attempts left)."""
        by_job: dict[str, list[dict[str, Any]]] = {}
        for a in self.state["allocs"].values():
            if not is_active(a) and not is_unknown(a) and not finished_ok(a):
                by_job.setdefault(a["JobID"], []).append(a)
        for terminal in by_job.values():
            terminal.sort(key=lambda a: a["ModifyIndex"])
            doomed = terminal if force else terminal[:-MAX_TERMINAL_ALLOCS_PER_JOB]
            for a in doomed:
                if force and a["ClientStatus"] == "failed" and a["DesiredStatus"] == "run" and not any(
                        is_active(o) and (o["JobID"], o["Slot"]) == (a["JobID"], a["Slot"])
                        for o in self.state["allocs"].values()):
                    continue  # its job stands on it: nothing else runs in its slot
                del self.state["allocs"][a["ID"]]

    # --- views
    def summary(self, job: dict[str, Any]) -> dict[str, Any]:
        spec = job["Spec"]
        mine = [a for a in self.state["allocs"].values() if a["JobID"] == spec["ID"]]
        count = {s: sum(1 for a in mine if a["ClientStatus"] == s) for s in ("pending", "running", "complete",
                                                                               "failed", "lost", "unknown")}
        queued = sum(1 for what, _ in self.slots(job).values() if what == "free")
        return {
            "JobID": spec["ID"], "Namespace": spec.get("Namespace", "default"),
            "Summary": {spec["Group"]: {"Queued": queued, "Complete": count["complete"], "Failed": count["failed"],
                                        "Running": count["running"], "Starting": count["pending"],
                                        "Lost": count["lost"], "Unknown": count["unknown"]}},
            "Children": {"Pending": 0, "Running": 0, "Dead": 0},
            "CreateIndex": job["CreateIndex"],
            "ModifyIndex": max([job["ModifyIndex"], *(a["ModifyIndex"] for a in mine)]),
        }

    def job_status(self, job: dict[str, Any]) -> str:
        mine = [a for a in self.state["allocs"].values() if a["JobID"] == job["Spec"]["ID"]]
        if any(is_active(a) or is_unknown(a) for a in mine):
            return "running"
        if all(what in ("done", "exhausted") for what, _ in self.slots(job).values()):
            return "dead"
        return "pending"

    def job_stub(self, job: dict[str, Any]) -> dict[str, Any]:
        spec = job["Spec"]
        return {
            "ID": spec["ID"], "ParentID": "", "Name": spec["ID"], "Namespace": spec.get("Namespace", "default"),
            "Datacenters": spec["Datacenters"], "NodePool": "default", "Multiregion": None, "Type": spec["Type"],
            "Priority": spec["Priority"], "Periodic": False, "ParameterizedJob": False, "Stop": False,
            "Status": self.job_status(job), "StatusDescription": "", "JobSummary": self.summary(job),
            "CreateIndex": job["CreateIndex"], "ModifyIndex": job["ModifyIndex"],
            "JobModifyIndex": job["JobModifyIndex"], "SubmitTime": job["SubmitTime"], "Meta": None,
        }

    def job_full(self, job: dict[str, Any]) -> dict[str, Any]:
        spec = job["Spec"]
        task = {
            "Artifacts": None, "Config": {"image": spec["Image"], "args": [], "privileged": False},
            "Constraints": None, "DispatchPayload": None, "Driver": "docker", "Env": None, "KillSignal": "",
            "KillTimeout": 5000000000, "Leader": False, "LogConfig": {"MaxFileSizeMB": 10, "MaxFiles": 10},
            "Meta": None, "Name": spec["Task"],
            "Resources": {"CPU": 4000, "DiskMB": 0, "MemoryMB": 8192, "Networks": [
                {"CIDR": "", "Device": "", "DynamicPorts": [{"Label": "http", "Value": 0}], "IP": "", "MBits": 10,
                 "Mode": "", "ReservedPorts": None}]},
            "Services": [{"AddressMode": "auto", "Checks": [
                {"AddressMode": "", "Args": None, "CheckRestart": None, "Command": "", "Header": None,
                 "InitialStatus": "", "Interval": 30000000000, "Method": "", "Name": "alive", "Path": "",
                 "PortLabel": "http", "Protocol": "", "TLSSkipVerify": False, "Timeout": 2000000000, "Type": "tcp"}],
                "Name": spec["ID"], "PortLabel": "http", "Tags": [spec["Group"]], "Provider": "consul"}],
            "ShutdownDelay": 0, "Templates": None, "User": "", "Vault": {"Policies": ["nomad"]},
        }
        policy = reschedule_policy(spec)
        disconnect = spec.get("Disconnect")
        group = {
            "Constraints": None, "Count": spec["Count"],
            "Disconnect": None if not disconnect else {
                "LostAfter": int(disconnect["LostAfter"] * 1e9), "Replace": disconnect["Replace"],
                "Reconcile": disconnect["Reconcile"], "StopOnClientAfter": None},
            "EphemeralDisk": {"Migrate": False, "SizeMB": 300, "Sticky": True}, "MaxClientDisconnect": None,
            "Meta": None,
            "Migrate": {"HealthCheck": "checks", "HealthyDeadline": 300000000000, "MaxParallel": 1,
                        "MinHealthyTime": 10000000000},
            "Name": spec["Group"],
            "ReschedulePolicy": {"Attempts": int(policy["Attempts"]), "Delay": int(policy["Delay"] * 1e9),
                                 "DelayFunction": policy["DelayFunction"], "Interval": int(policy["Interval"] * 1e9),
                                 "MaxDelay": int(policy["MaxDelay"] * 1e9), "Unlimited": bool(policy["Unlimited"])},
            "RestartPolicy": {"Attempts": 2, "Delay": 15000000000, "Interval": 1800000000000, "Mode": "fail"},
            "Tasks": [task], "Update": None,
        }
        return {
            "AllAtOnce": False, "Constraints": [dict(c) for c in spec["Constraints"]] or None,
            "CreateIndex": job["CreateIndex"], "Datacenters": spec["Datacenters"], "ID": spec["ID"],
            "JobModifyIndex": job["JobModifyIndex"], "Meta": None, "ModifyIndex": job["ModifyIndex"],
            "Name": spec["ID"], "Namespace": spec.get("Namespace", "default"), "NodePool": "default",
            "ParameterizedJob": None, "ParentID": "", "Payload": None, "Periodic": None, "Priority": spec["Priority"],
            "Region": self.region, "Stable": True, "Status": self.job_status(job), "StatusDescription": "",
            "Stop": False, "SubmitTime": job["SubmitTime"], "TaskGroups": [group], "Type": spec["Type"],
            "Update": {"AutoRevert": False, "Canary": 0, "HealthCheck": "", "HealthyDeadline": 0, "MaxParallel": 0,
                       "MinHealthyTime": 0, "Stagger": 0},
            "VaultToken": "", "Version": job["Version"],
        }

    def task_state(self, a: dict[str, Any]) -> dict[str, Any]:
        client = a["ClientStatus"]
        state = "running" if client in ("running", "unknown") else "pending" if client == "pending" else "dead"
        return {"Events": a["Events"], "Failed": bool(a.get("TaskFailed")),
                "FinishedAt": rfc3339(a["FinishedAt"]), "LastRestart": ZERO_TIME, "Restarts": int(a.get("Restarts", 0)),
                "StartedAt": rfc3339(a["StartedAt"]), "State": state, "TaskHandle": None}

    def alloc_stub(self, a: dict[str, Any]) -> dict[str, Any]:
        return {
            "ClientDescription": a["ClientDescription"], "ClientStatus": a["ClientStatus"],
            "CreateIndex": a["CreateIndex"], "CreateTime": a["CreateTime"],
            "DeploymentStatus": {"Canary": False, "Healthy": a["ClientStatus"] == "running",
                                 "ModifyIndex": a["ModifyIndex"], "Timestamp": rfc3339(a["StartedAt"])},
            "DesiredDescription": a["DesiredDescription"], "DesiredStatus": a["DesiredStatus"],
            "DesiredTransition": dict(a["DesiredTransition"]), "EvalID": a["EvalID"],
            "FollowupEvalID": a.get("FollowupEvalID", ""),
            "ID": a["ID"], "JobID": a["JobID"], "JobType": a["JobType"], "JobVersion": a["JobVersion"],
            "ModifyIndex": a["ModifyIndex"], "ModifyTime": a["ModifyTime"], "Name": a["Name"],
            "Namespace": a["Namespace"], "NextAllocation": a["NextAllocation"], "NodeID": a["NodeID"],
            "NodeName": a["NodeName"], "PreemptedAllocations": None, "PreemptedByAllocation": "",
            "PreviousAllocation": a["PreviousAllocation"], "RescheduleTracker": a.get("RescheduleTracker"),
            "TaskGroup": a["TaskGroup"], "TaskStates": {a["Task"]: self.task_state(a)},
        }

    def alloc_full(self, a: dict[str, Any]) -> dict[str, Any]:
        job = self.state["jobs"].get(a["JobID"])
        node = self.state["nodes"].get(a["NodeID"]) or {}
        ip = (node.get("Attributes") or {}).get("unique.network.ip-address", "")
        net = [{"CIDR": "", "Device": "eth0", "DynamicPorts": [{"Label": "http", "Value": 20000 + a["Slot"]}],
                "IP": ip, "MBits": 10, "Mode": "host", "ReservedPorts": None}]
        res = {"CPU": 4000, "DiskMB": 300, "MemoryMB": 8192, "Networks": net}
        full = self.alloc_stub(a)
        full.update({
            "AllocModifyIndex": a["AllocModifyIndex"], "DeploymentID": "",
            "Job": self.job_full(job) if job else None,
            "Metrics": {"AllocationTime": 81234, "ClassExhausted": None, "ClassFiltered": None,
                        "CoalescedFailures": 0, "ConstraintFiltered": None, "DimensionExhausted": None,
                        "NodesAvailable": {node.get("Datacenter", ""): len(self.state["nodes"])},
                        "NodesEvaluated": len(self.state["nodes"]), "NodesExhausted": 0, "NodesFiltered": 0,
                        "NodesInPool": len(self.state["nodes"]), "QuotaExhausted": None,
                        "Scores": {f"{a['NodeID']}.binpack": 0.5}},
            "Resources": res, "SharedResources": {"CPU": 0, "DiskMB": 300, "MemoryMB": 0, "Networks": None},
            "TaskResources": {a["Task"]: dict(res, DiskMB=0)},
        })
        return full

    def node_stub(self, n: dict[str, Any], with_os: bool) -> dict[str, Any]:
        attrs = n.get("Attributes") or {}
        stub = {
            "Address": attrs.get("unique.network.ip-address", ""), "CreateIndex": n["CreateIndex"],
            "Datacenter": n["Datacenter"], "Drain": n["Drain"], "Drivers": n["Drivers"], "ID": n["ID"],
            "LastDrain": n["LastDrain"], "ModifyIndex": n["ModifyIndex"], "Name": n["Name"],
            "NodeClass": n["NodeClass"], "NodePool": n.get("NodePool", "default"),
            "SchedulingEligibility": n["SchedulingEligibility"], "Status": n["Status"],
            "StatusDescription": n["StatusDescription"], "Version": attrs.get("nomad.version", VERSION),
        }
        if with_os:
            stub["Attributes"] = {"os.name": attrs.get("os.name", "")}
        return stub


# --------------------------------------------------------------------------- server

class Server:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.name, self.ip = cfg["name"], cfg["ip"]
        self.region, self.dc = cfg.get("region", "global"), cfg.get("datacenter", "cern")
        self.token = cfg["tokens"]["nomad"]  # the internal (management) token
        self.tls = base.Tls.from_config(cfg["tls"])
        acl_cfg = (cfg.get("acl") or {}).get("nomad")
        self.acl = NomadACL(acl_cfg, self.token)
        self.tokens = Tokens(acl_cfg, self.acl)
        self.check = token_check(self.tokens, "server", hold=self._hold)
        self.peers = [base.Peer(id=m["nomad_id"], name=m["name"], address=f"{m['ip']}:{RPC_PORT}")
                      for m in cfg["masters"]]
        self.me = next(p for p in self.peers if p.name == self.name)
        self.jobs = [job_spec(j, self.dc) for j in cfg.get("jobs") or []]
        self.data_dir = cfg.get("data_dir") or os.path.join(cfg.get("build_dir", "/build"), "nomad", "server")
        self.fault_dir = cfg.get("fault_dir") or FAULT_DIR
        self.lock = threading.RLock()
        self.sync_lock = threading.Lock()
        self.state = self._load()
        self.persisted_index = self.state["index"]
        self.rev = 0  # changes that move no index (node attributes), for replication
        self.pushed: tuple[int, int, int] = (-1, -1, -1)
        self.heartbeats: dict[str, float] = {}  # the leader's timers: node ID -> time of the last heartbeat
        self.synced_term = -1
        self.times_leader = 0
        self.election = base.Election(self.me, self.peers, self.tls, lambda p: f"https://{p.address}",
                                      snapshot=self._raw_state, install=self._adopt, local_index=self._index,
                                      build=self.version)
        self.election.fault_dir = self.fault_dir  # the lab fault lag-server's flag (base.LAG_FLAG) is there too
        self.rate_limit = RateLimit(os.path.join(self.fault_dir, RATE_LIMIT_FLAG))
        self.api = base.Router()
        self.rpc = base.Router()
        self.http = base.Router()  # what the HTTP listener serves: the API, behind the rate-limit fault
        self._routes()

    def version(self) -> str:
        """This server's build: the lab fault old-nomad leaves another one in fault_dir (an upgrade half done)."""
        try:
            with open(os.path.join(self.fault_dir, VERSION_FLAG), encoding="utf-8") as fh:
                return fh.read().strip() or VERSION
        except OSError:
            return VERSION

    # --- state, election, persistence
    def _load(self) -> dict[str, Any]:
        try:
            state = base.load_json(os.path.join(self.data_dir, "state.json"))
            if isinstance(state, dict) and "index" in state:
                return dict(empty_state(), **state)
        except (OSError, ValueError):
            pass
        return empty_state()

    def _persist(self) -> None:
        with self.lock:
            if self.state["index"] == self.persisted_index:
                return
            text, index = json.dumps(self.state), self.state["index"]
        os.makedirs(self.data_dir, exist_ok=True)
        tmp = os.path.join(self.data_dir, "state.json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, os.path.join(self.data_dir, "state.json"))
        self.persisted_index = index

    def _index(self) -> int:
        with self.lock:
            return int(self.state["index"])

    def _raw_state(self) -> bytes:
        with self.lock:
            return json.dumps(self.state).encode()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            copy: dict[str, Any] = json.loads(json.dumps(self.state))
            return copy

    def _adopt(self, state: Any) -> None:
        if isinstance(state, dict) and "index" in state:
            with self.lock:
                self.state = dict(empty_state(), **state)

    def ensure_synced(self) -> None:
        """On taking leadership, start from the most recent state any reachable server holds, as raft
        only elects a server whose log is up to date; and give every node a fresh heartbeat timer."""
        with self.sync_lock:
            term = self.election.term
            if self.synced_term == term or self.election.leader_id != self.me.id:
                return
            best: dict[str, Any] | None = None
            for p in self.election.peers:
                status, reply = base.call(f"https://{p.address}/internal/state", self.tls, timeout=1.0)
                if status == 200 and isinstance(reply, dict) and reply.get("index", 0) > (best or {}).get("index", 0):
                    best = reply
            with self.lock:
                if best is not None and best["index"] > self.state["index"]:
                    self.state = dict(empty_state(), **best)
                now = time.monotonic()
                self.heartbeats = {nid: now for nid in self.state["nodes"]}
            self.synced_term = term
            self.times_leader += 1
            self.election.notify_changed()
            log(f"{self.name} is the leader (term {term})")

    def cluster(self) -> Cluster:
        return Cluster(self.state, self.jobs, self.region)

    def _leader_tick(self) -> None:
        if self.election.is_leader():
            self.ensure_synced()
            with self.lock:
                self.cluster().reconcile(self.heartbeats)
                marker = (self.election.term, self.state["index"], self.rev)
            if marker != self.pushed:  # followers get the state when it changed, not on every tick
                self.pushed = marker
                self.election.notify_changed()

    def start(self) -> None:
        base.serve(self.ip, HTTP_PORT, self.http, self.tls, name="nomad")
        base.serve(self.ip, RPC_PORT, self.rpc, self.tls, self.check, name="nomad-rpc")
        self.election.run()
        every("leader", LEADER_LOOP_S, self._leader_tick)
        every("persist", 1.0, self._persist)
        log(f"server {self.name} on {self.ip}:{HTTP_PORT}/{RPC_PORT}")

    # --- request plumbing
    def _headers(self, index: int, leader: base.Peer | None) -> dict[str, str]:
        if leader is None or leader.id == self.me.id:
            contact = "0"
        else:
            contact = str(int(max(0.0, time.monotonic() - self.election.last_heard) * 1000))
        return {"X-Nomad-Index": str(index), "X-Nomad-KnownLeader": "true" if leader else "false",
                "X-Nomad-LastContact": contact}

    def _block(self, req: base.Request) -> None:
        """Blocking queries: wait until the state moves past ?index= (or ?wait= elapses)."""
        if "index" not in req.query:
            return
        target = int(req.query["index"] or 0)
        deadline = time.monotonic() + min(parse_duration(req.query.get("wait", ""), 300.0), 600.0)
        while time.monotonic() < deadline:
            with self.lock:
                if self.state["index"] > target:
                    return
            time.sleep(0.05)

    def wait_leader(self) -> base.Peer | None:
        """The leader; without one, the request is held for up to RPC_HOLD_S, re-checking after a jitter
        (Nomad's getLeaderForRPC), and None at the end."""
        deadline = time.monotonic() + RPC_HOLD_S
        while True:
            leader = self.election.leader()
            left = deadline - time.monotonic()
            if leader is not None or left <= 0:
                return leader
            time.sleep(min(left, 0.01 + base.jitter(RPC_HOLD_JITTER_S)))

    def to_leader(self, req: base.Request) -> base.Response | None:
        """A read that needs the leader: the leader's answer when it is another server, 500 "No cluster leader"
        after the hold without one, None when this server answers (it leads, or ?stale)."""
        if req.flag("stale"):
            return None
        leader = self.wait_leader()
        if leader is None:
            return error(500, NO_LEADER)
        return self.forward(req) if leader.id != self.me.id else None

    def query(self, req: base.Request, produce: Callable[[Cluster], Any]) -> base.Response:
        """A read: as in Nomad, a follower forwards it to the leader (held while there is none) unless
        ?stale, which reads this server's own copy of the state."""
        elsewhere = self.to_leader(req)
        if elsewhere is not None:
            return elsewhere
        leader = self.election.leader()
        self._block(req)
        with self.lock:
            body = produce(self.cluster())
            index = self.state["index"]
            if isinstance(body, base.Response):
                return body
            raw = json.dumps(body).encode()  # serialised under the lock: the state moves on meanwhile
        return base.Response(raw=raw, headers=self._headers(index, leader))

    def write(self, req: base.Request, apply: Callable[[Cluster], base.Response]) -> base.Response:
        """A write: applied by the leader; a follower forwards it there."""
        if not self.election.is_leader():
            return self.forward(req)
        self.ensure_synced()
        with self.lock:
            resp = apply(self.cluster())
            index = self.state["index"]
        self.election.notify_changed()
        resp.headers.update(self._headers(index, self.me))
        return resp

    def forward(self, req: base.Request, path: str = "/internal/forward") -> base.Response:
        leader = self.wait_leader()
        hops = int(req.headers.get(HOPS_HEADER, "0") or 0)
        if leader is None or leader.id == self.me.id or hops >= 3:
            return error(500, NO_LEADER)
        status, reply = base.call(f"https://{leader.address}{path}", self.tls, "POST", request_to_json(req, hops + 1),
                                  timeout=RPC_HOLD_S + 3)
        if status == 200 and isinstance(reply, dict) and "status" in reply:
            return response_from_json(reply)
        return error(500, f"rpc error: {NO_LEADER}")

    def _hold(self, req: base.Request) -> base.Response | None:
        """What an RPC endpoint does before it looks at the token: it forwards the request to the leader
        (e.g. nomad/node_endpoint.go List: Authenticate, then forward, then `if authErr != nil`), so without
        a leader a refused request is held too and answers 500 "No cluster leader" (None: a leader is there;
        a ?stale read is answered here, but never autopilot's health)."""
        if req.method == "GET" and req.flag("stale") and req.path != "/v1/operator/autopilot/health":
            return None
        if req.path == "/v1/agent/members":
            return None  # nomad/status_endpoint.go Members is answered by this server: it does not forward
        return None if self.wait_leader() is not None else error(500, NO_LEADER)

    def _ns_denied(self, req: base.Request, capability: str) -> base.Response | None:
        """403 unless the token has the capability in the request's namespace (?namespace=, default "default")."""
        if authz_of(req).allows_ns(namespace_of(req), capability):
            return None
        return self._hold(req) or error(403, PERMISSION_DENIED)

    @staticmethod
    def _in_ns(req: base.Request, capability: str) -> Callable[[str], bool]:
        """Which namespaces a list shows: the requested one, or with "*" every one the token may read."""
        ns, authz = namespace_of(req), authz_of(req)
        if ns == "*":
            return lambda x: authz.allows_ns(x, capability)
        return lambda x: x == ns

    def _job(self, cl: Cluster, req: base.Request) -> dict[str, Any] | None:
        job: dict[str, Any] | None = cl.state["jobs"].get(req.params["job_id"])
        if job is None or not self._in_ns(req, "read-job")(job["Spec"].get("Namespace", "default")):
            return None
        return job

    # --- routes
    def _routes(self) -> None:
        api, rpc = self.api, self.rpc

        @self.http.route("GET|PUT|POST|DELETE|HEAD", "/{rest*}", acl=False)
        def rate_limited(req: base.Request) -> base.Response:
            verdict = self.rate_limit.admit()
            if verdict == "drop":
                raise ConnectionAbortedError("rate limited")  # the listener closes the connection unanswered
            if verdict == "429":
                return too_many_requests()
            return base.dispatch(api, req, self.check)

        @rpc.route("POST", "/internal/election", acl=False)
        def election(req: base.Request) -> base.Response:
            return base.Response(body=self.election.on_message(req.json()))

        @rpc.route("POST", "/internal/replicate", acl=False)
        def replicate(req: base.Request) -> base.Response:
            return base.Response(body=self.election.on_replicate(req.json()))

        @rpc.route("GET", "/internal/state", acl=False)
        def state(req: base.Request) -> base.Response:
            return base.Response(raw=self._raw_state())

        @rpc.route("POST", "/internal/forward", acl=False)  # the forwarded request carries its own token
        def forwarded(req: base.Request) -> base.Response:
            return base.Response(body=response_to_json(base.dispatch(self.api, request_from_json(req.json()),
                                                                     self.check)))

        @rpc.route("POST", "/internal/node/register", need="management")
        @rpc.route("POST", "/internal/node/heartbeat", need="management")
        def heartbeat(req: base.Request) -> base.Response:
            return self._heartbeat(req)

        @api.route("GET", "/v1/status/leader", acl=False)
        def status_leader(req: base.Request) -> base.Response:
            # Forwarded to the leader like any RPC (held while there is none); ?stale answers locally.
            leader = self.election.leader() if req.flag("stale") else self.wait_leader()
            if leader is None and not req.flag("stale"):
                return error(500, NO_LEADER)
            return base.Response(body=leader.address if leader else "")

        @api.route("GET", "/v1/status/peers", acl=False)
        def status_peers(req: base.Request) -> base.Response:
            if not req.flag("stale") and self.wait_leader() is None:
                return error(500, NO_LEADER)
            return base.Response(body=[p.address for p, _ in self.election.raft_servers()])

        @api.route("GET", "/v1/regions", acl=False)
        def regions(req: base.Request) -> base.Response:
            return base.Response(body=[self.region])

        @api.route("GET", "/v1/agent/health", acl=False)
        def health(req: base.Request) -> base.Response:
            if req.query.get("type") == "client":
                return base.Response(status=500, body={"client": {"ok": False, "message": "client not enabled"}})
            # The agent asks Status.Leader: held and then "No cluster leader" without one, unless ?stale.
            if req.flag("stale"):
                if self.election.leader() is None:
                    return base.Response(status=500, body={"server": {"ok": False, "message": "no leader"}})
            elif self.wait_leader() is None:
                return base.Response(status=500, body={"server": {"ok": False, "message": NO_LEADER}})
            return base.Response(body={"server": {"ok": True, "message": "ok"}})

        @api.route("GET", "/v1/agent/members", need="node:read")
        def members(req: base.Request) -> base.Response:
            return base.Response(body={"ServerName": self.name, "ServerRegion": self.region, "ServerDC": self.dc,
                                       "Members": [self._member(p) for p in self.election.all_peers()]})

        @api.route("GET", "/v1/agent/servers", need="agent:read")
        def servers(req: base.Request) -> base.Response:
            return base.Response(body=[p.address for p in self.election.all_peers()])

        @api.route("GET", "/v1/agent/self", need="agent:read")
        def agent_self(req: base.Request) -> base.Response:
            return base.Response(body={"config": agent_config(self.cfg, server=True), "member": self._member(self.me),
                                       "stats": self._stats()})

        @api.route("GET", "/v1/metrics", acl=False)  # Nomad documents no ACL for metrics
        def metrics(req: base.Request) -> base.Response:
            return metrics_response(req, self._gauges())

        @api.route("GET", "/v1/nodes", need="node:read")
        def nodes(req: base.Request) -> base.Response:
            prefix, with_os = req.query.get("prefix", ""), req.flag("os")
            return self.query(req, lambda cl: [cl.node_stub(n, with_os) for n in sorted(
                cl.state["nodes"].values(), key=lambda n: n["ID"]) if n["ID"].startswith(prefix)])

        @api.route("GET", "/v1/node/{node_id}", need="node:read")
        def node(req: base.Request) -> base.Response:
            nid = req.params["node_id"]
            return self.query(req, lambda cl: cl.state["nodes"].get(nid) or error(404, "node not found"))

        @api.route("GET", "/v1/node/{node_id}/allocations", need="node:read")
        def node_allocs(req: base.Request) -> base.Response:
            nid, authz = req.params["node_id"], authz_of(req)
            return self.query(req, lambda cl: [cl.alloc_full(a) for a in sorted(
                cl.state["allocs"].values(), key=lambda a: a["CreateIndex"])
                if a["NodeID"] == nid and authz.allows_ns(a["Namespace"], "read-job")])

        @api.route("PUT|POST", "/v1/node/{node_id}/drain", need="node:write")
        def drain(req: base.Request) -> base.Response:
            body = req.json() or {}
            accessor = authz_of(req).accessor
            return self.write(req, lambda cl: self._drain(cl, req.params["node_id"], body, accessor))

        @api.route("PUT|POST", "/v1/node/{node_id}/eligibility", need="node:write")
        def eligibility(req: base.Request) -> base.Response:
            body = req.json() or {}
            return self.write(req, lambda cl: self._eligibility(cl, req.params["node_id"], body))

        @api.route("PUT|POST", "/v1/node/{node_id}/purge", need="node:write")
        def purge(req: base.Request) -> base.Response:
            return self.write(req, lambda cl: self._purge(cl, req.params["node_id"]))

        @api.route("GET", "/v1/operator/raft/configuration", need="management")
        def raft_configuration(req: base.Request) -> base.Response:
            leader = self.election.leader()
            servers = [{"Address": p.address, "ID": p.id, "Leader": bool(leader and leader.id == p.id),
                        "Node": f"{p.name}.{self.region}", "RaftProtocol": "3", "Voter": voter}
                       for p, voter in self.election.raft_servers()]
            return self.query(req, lambda cl: {"Index": cl.state["index"], "Servers": servers})

        @api.route("GET", "/v1/operator/autopilot/health", need="operator:read")
        def autopilot_health(req: base.Request) -> base.Response:
            return self._autopilot_health(req)

        @api.route("PUT|POST", "/v1/operator/raft/transfer-leadership", need="management")
        def transfer(req: base.Request) -> base.Response:
            return self._transfer(req)

        @api.route("GET", "/v1/acl/token/self", acl=False)
        def token_self(req: base.Request) -> base.Response:
            return self._token_self(req)

        @api.route("PUT", "/v1/system/gc", need="management")
        def system_gc(req: base.Request) -> base.Response:
            def collect(cl: Cluster) -> base.Response:
                cl.gc(force=True)
                # nomad/core_sched.go forceGC: expiredACLTokenGC with a 1 ms threshold, every expired token
                gone = cl.state.setdefault("acl_gc", [])
                gone.extend(a for a in self.tokens.expired() if a not in gone)
                cl.bump()
                return base.Response(raw=b"")

            return self.write(req, collect)

        @api.route("GET", "/v1/jobs")
        def jobs(req: base.Request) -> base.Response:
            prefix, keep = req.query.get("prefix", ""), self._in_ns(req, "list-jobs")
            return self._ns_denied(req, "list-jobs") or self.query(req, lambda cl: [
                cl.job_stub(j) for _, j in sorted(cl.state["jobs"].items())
                if j["Spec"]["ID"].startswith(prefix) and keep(j["Spec"].get("Namespace", "default"))])

        @api.route("GET", "/v1/job/{job_id}")
        def job(req: base.Request) -> base.Response:
            return self._ns_denied(req, "read-job") or self.query(
                req, lambda cl: cl.job_full(j) if (j := self._job(cl, req)) else error(404, "job not found"))

        @api.route("GET", "/v1/job/{job_id}/summary")
        def job_summary(req: base.Request) -> base.Response:
            return self._ns_denied(req, "read-job") or self.query(
                req, lambda cl: cl.summary(j) if (j := self._job(cl, req)) else error(404, "job not found"))

        @api.route("GET", "/v1/job/{job_id}/allocations")
        def job_allocs(req: base.Request) -> base.Response:
            def view(cl: Cluster) -> Any:
                j = self._job(cl, req)
                return [cl.alloc_stub(a) for a in sorted(cl.state["allocs"].values(), key=lambda a: a["CreateIndex"])
                        if j and a["JobID"] == j["Spec"]["ID"]]

            return self._ns_denied(req, "read-job") or self.query(req, view)

        @api.route("POST|PUT", "/v1/job/{job_id}/evaluate")
        def job_evaluate(req: base.Request) -> base.Response:
            body = req.json() or {}
            force = bool((body.get("EvalOptions") or {}).get("ForceReschedule"))
            return self._ns_denied(req, "submit-job") or self.write(req, lambda cl: self._evaluate(cl, req, force))

        @api.route("GET", "/v1/allocations")
        def allocations(req: base.Request) -> base.Response:
            prefix, keep = req.query.get("prefix", ""), self._in_ns(req, "read-job")
            return self._ns_denied(req, "read-job") or self.query(req, lambda cl: [
                cl.alloc_stub(a) for a in sorted(cl.state["allocs"].values(), key=lambda a: a["CreateIndex"])
                if a["ID"].startswith(prefix) and keep(a["Namespace"])])

        @api.route("GET", "/v1/allocation/{alloc_id}")
        def allocation(req: base.Request) -> base.Response:
            aid, authz = req.params["alloc_id"], authz_of(req)

            def view(cl: Cluster) -> Any:
                a = cl.state["allocs"].get(aid)
                if a is None:
                    return error(404, "alloc not found")
                if not authz.allows_ns(a["Namespace"], "read-job"):
                    return error(403, PERMISSION_DENIED)
                return cl.alloc_full(a)

            return self.query(req, view)

    # --- client heartbeats (RPC)
    def _heartbeat(self, req: base.Request) -> base.Response:
        """A client's heartbeat: {ID, Info (its fingerprint, when it changed or was asked for),
        Failed ([{ID, ExitCode}]: allocations whose task failed), Register}. With Register (the client's
        first call, or its answer to NeedInfo) it is Node.Register: the node is stored (a new one
        `initializing`, a known one keeping its status) and its heartbeat timer starts; otherwise it is
        Node.UpdateStatus "ready" (`Cluster.heartbeat`)."""
        if not self.election.is_leader():
            leader = self.election.leader()
            if leader is None:
                return error(500, NO_LEADER)
            status, reply = base.call(f"https://{leader.address}{req.path}", self.tls, "POST", raw_body=req.body,
                                      headers={"X-Nomad-Token": self.token}, timeout=2.0)
            return base.Response(body=reply) if status == 200 else error(500, NO_LEADER)
        self.ensure_synced()
        body = req.json()
        info, nid = body.get("Info"), str(body["ID"])
        with self.lock:
            cl = self.cluster()
            node = cl.state["nodes"].get(nid)
            if info:
                node, changed = cl.upsert_node(info)
                self.rev += changed
            if node is None:
                return base.Response(body={"NeedInfo": True, "HeartbeatTTL": int(HEARTBEAT_TTL_S * 1e9),
                                           "Allocs": [], "LeaderRPCAddr": self.me.address, "Servers": []})
            if not body.get("Register"):
                cl.heartbeat(node)
            self.heartbeats[nid] = time.monotonic()
            for failure in body.get("Failed") or []:
                a = cl.state["allocs"].get(failure.get("ID", ""))
                if a is not None and a["NodeID"] == nid:
                    cl.fail_alloc(a, int(failure.get("ExitCode", 1)))
            running = [{"ID": a["ID"], "JobID": a["JobID"], "Name": a["Name"], "TaskGroup": a["TaskGroup"],
                        "ClientStatus": a["ClientStatus"], "CreateIndex": a["CreateIndex"],
                        "StartedAt": a["StartedAt"]}
                       for a in self.state["allocs"].values() if a["NodeID"] == nid and is_active(a)]
        return base.Response(body={"HeartbeatTTL": int(HEARTBEAT_TTL_S * 1e9), "Allocs": running, "NeedInfo": False,
                                   "LeaderRPCAddr": self.me.address,
                                   "Servers": [p.address for p, _ in self.election.raft_servers()]})

    # --- writes
    @staticmethod
    def _update_response(index: int) -> base.Response:
        return base.Response(body={"EvalCreateIndex": 0, "EvalIDs": None, "Index": index, "NodeModifyIndex": index})

    def _evaluate(self, cl: Cluster, req: base.Request, force: bool) -> base.Response:
        """`nomad job eval [-force-reschedule]`: with ForceReschedule, failed allocations are replaced now,
        past their reschedule limit or delay."""
        job = self._job(cl, req)
        if job is None:
            return error(404, "job not found")
        if force:
            for a in cl.state["allocs"].values():
                if a["JobID"] == job["Spec"]["ID"] and a["ClientStatus"] == "failed" and not a["NextAllocation"]:
                    a["DesiredTransition"]["ForceReschedule"] = True
                    cl.touch(a)
        cl.place_job(job)
        idx = cl.bump()
        return base.Response(body={"EvalID": str(uuid.uuid4()), "EvalCreateIndex": idx,
                                   "JobModifyIndex": job["JobModifyIndex"]})

    def _drain(self, cl: Cluster, node_id: str, body: dict[str, Any], accessor: str) -> base.Response:
        node = cl.state["nodes"].get(node_id)
        if node is None:
            return error(404, "node not found")
        spec, now = body.get("DrainSpec"), time.time_ns()
        idx = cl.bump()
        if spec:
            deadline = int(spec.get("Deadline", 0))
            # Deadline > 0: force at now+deadline; 0: no deadline; < 0: force at once (Nomad's DrainSpec rules).
            force_ns = None if deadline == 0 else now + max(deadline, 0)
            started = node["DrainStrategy"] is None
            node.update(Drain=True, SchedulingEligibility="ineligible", ModifyIndex=idx, DrainStrategy={
                "Deadline": deadline, "IgnoreSystemJobs": bool(spec.get("IgnoreSystemJobs", False)),
                "ForceDeadline": rfc3339(now + deadline) if deadline > 0 else ZERO_TIME, "StartedAt": rfc3339(now)})
            if started or not node.get("LastDrain"):
                node["LastDrain"] = {"AccessorID": accessor, "Meta": body.get("Meta") or {},
                                     "StartedAt": rfc3339(now), "Status": "draining", "UpdatedAt": rfc3339(now)}
            else:  # a drain updated: nomad/state/state_store.go updateNodeDrainImpl keeps its start
                self._update_last_drain(node, body, accessor, "draining", now)
            cl.state["drains"][node_id] = {"force_ns": force_ns}
            cl.node_event(node, "Node drain strategy set" if started else "Node drain strategy updated", "Drain", idx)
        else:
            if node["Drain"]:
                node.update(Drain=False, DrainStrategy=None)
                if node.get("LastDrain"):
                    self._update_last_drain(node, body, accessor, "canceled", now)
                cl.state["drains"].pop(node_id, None)
                cl.node_event(node, "Node drain disabled", "Drain", idx)
            if body.get("MarkEligible"):
                node["SchedulingEligibility"] = "eligible"
                cl.node_event(node, "Node marked as eligible for scheduling", "Cluster", idx)
            node["ModifyIndex"] = idx
        return self._update_response(idx)

    @staticmethod
    def _update_last_drain(node: dict[str, Any], body: dict[str, Any], accessor: str, status: str, now: int) -> None:
        """An update or cancellation of a drain (nomad/state/state_store.go updateNodeDrainImpl): the Meta given,
        if any, replaces the drain's, and the caller's token accessor is recorded; an eligibility change never
        touches LastDrain."""
        last = node["LastDrain"]
        last.update(Status=status, UpdatedAt=rfc3339(now))
        if body.get("Meta"):
            last["Meta"] = body["Meta"]
        if accessor:
            last["AccessorID"] = accessor

    def _eligibility(self, cl: Cluster, node_id: str, body: dict[str, Any]) -> base.Response:
        wanted = body.get("Eligibility")
        if wanted not in ("eligible", "ineligible"):
            return error(400, f"invalid scheduling eligibility {wanted!r}")
        node = cl.state["nodes"].get(node_id)
        if node is None:
            return error(404, "node not found")
        if node["DrainStrategy"] is not None and wanted == "eligible":
            # Nomad's RPC refuses this with a plain error, which the HTTP layer turns into a 500.
            return error(500, "can not set node's scheduling eligibility to eligible while it is draining")
        idx = cl.bump()
        if node["SchedulingEligibility"] != wanted:
            node["SchedulingEligibility"] = wanted
            cl.node_event(node, f"Node marked as {wanted} for scheduling", "Cluster", idx)
        node["ModifyIndex"] = idx
        return self._update_response(idx)

    def _purge(self, cl: Cluster, node_id: str) -> base.Response:
        """`nomad node purge`: the node and its allocations leave the state (a deleted machine)."""
        if cl.state["nodes"].pop(node_id, None) is None:
            return error(404, "node not found")
        for aid in [aid for aid, a in cl.state["allocs"].items() if a["NodeID"] == node_id]:
            del cl.state["allocs"][aid]
        cl.state["disconnects"].pop(node_id, None)
        idx = cl.bump()
        return base.Response(body={"EvalIDs": [], "EvalCreateIndex": 0, "NodeModifyIndex": idx},
                             headers={"X-Nomad-Index": str(idx)})

    def _transfer(self, req: base.Request) -> base.Response:
        pid, addr = req.query.get("id"), req.query.get("address")
        if pid is None and addr is None:
            return error(400, "must specify id or address")
        if pid is not None and addr is not None:
            return error(400, "must specify either id or address")
        if not (pid or addr):
            return error(400, f"{'id' if pid is not None else 'address'} must be non-empty")
        target = next((p for p, _ in self.election.raft_servers() if p.id == pid or p.address == addr), None)
        if target is None:
            what = f'id "{pid}"' if pid else f'address "{addr}"'
            return error(400, f"{what} was not found in the Raft configuration")
        if not self.election.is_leader():
            return self.forward(req)
        me = {"Address": self.me.address, "ID": self.me.id}
        to = {"Address": target.address, "ID": target.id}
        if target.id == self.me.id:
            return base.Response(body={"From": me, "To": to, "Noop": True, "Err": None})
        self.election.wait_replicated(self.election.notify_changed(), 1.0)  # the new leader starts from our state
        if not self.election.transfer_to(target):
            return error(500, f"failed to transfer leadership to {target.address}")
        log(f"leadership transferred to {target.name}")
        return base.Response(body={"From": me, "To": to, "Noop": False, "Err": None})

    def _token_self(self, req: base.Request) -> base.Response:
        """GET /v1/acl/token/self, as command/agent/acl_endpoint.go aclTokenSelf and the RPC it calls,
        nomad/acl_endpoint.go ACL.ResolveToken: no authentication, the secret is looked up in the state
        (forwarded to the leader unless ?stale, held without one). A stored token: 200 and the token,
        also an expired one until the garbage collector removes it; an unknown secret: 404 "ACL token not
        found" (the handler's CodedError); no secret (anonymous): the state store's lookup error, a 500."""
        elsewhere = self.to_leader(req)
        if elsewhere is not None:
            return elsewhere
        leader = self.election.leader()
        secret = base.bearer_token(req, "x-nomad-token").strip()
        if not secret:
            return error(500, MISSING_SECRET)
        with self.lock:
            collected = set(self.state.get("acl_gc") or [])
        token = self.tokens.stored(secret, collected)
        if token is None:
            resp = error(404, TOKEN_NOT_FOUND)
            # the reply's index: the last that touched the token table (setMeta runs before the 404)
            resp.headers.update(self._headers(max(t["ModifyIndex"] for t in self.tokens.views.values()), leader))
            return resp
        return base.Response(body=token, headers=self._headers(token["ModifyIndex"], leader))

    def _autopilot_health(self, req: base.Request) -> base.Response:
        """GET /v1/operator/autopilot/health: always answered by the leader (Nomad forces AllowStale off);
        429 while some server is unhealthy."""
        leader = self.wait_leader()
        if leader is None:
            return error(500, NO_LEADER)
        if leader.id != self.me.id:
            return self.forward(req)
        h = self.election.health()
        servers = [{"ID": s["peer"].id, "Name": f"{s['peer'].name}.{self.region}", "Address": s["peer"].address,
                    "SerfStatus": s["status"], "Version": s["build"] or VERSION, "Leader": s["leader"],
                    "LastContact": int(s["last_contact"] * 1e9), "LastTerm": s["term"], "LastIndex": s["index"],
                    "Healthy": s["healthy"], "Voter": s["voter"],
                    "StableSince": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s["stable_since"]))}
                   for s in h["servers"]]
        body = {"Healthy": h["healthy"], "FailureTolerance": h["failure_tolerance"], "Servers": servers,
                "Leader": h["leader"], "Voters": h["voters"]}
        return base.Response(status=200 if h["healthy"] else 429, body=body)

    # --- agent views
    def _member(self, p: base.Peer) -> dict[str, Any]:
        ip = p.address.rsplit(":", 1)[0]
        return {
            "Name": f"{p.name}.{self.region}", "Addr": ip, "Port": SERF_PORT,
            "Tags": {"role": "nomad", "region": self.region, "dc": self.dc, "revision": REVISION,
                     "build": self.version() if p.id == self.me.id else self.election.peer_build.get(p.id) or VERSION,
                     "port": str(RPC_PORT), "expect": str(len(self.peers)), "vsn": "1", "mvn": "1",
                     "raft_vsn": "3", "id": p.id, "rpc_addr": ip},
            "Status": self.election.member_status(p.id),
            "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2, "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
        }

    def _stats(self) -> dict[str, dict[str, str]]:
        leader = self.election.leader()
        leading = bool(leader and leader.id == self.me.id)
        with self.lock:
            index = str(self.state["index"])
        term = str(self.election.term)
        contact = "0" if leading else ("never" if not leader else
                                       f"{(time.monotonic() - self.election.last_heard) * 1000:.3f}ms")
        raft = self.election.raft_servers()
        peers_conf = " ".join(f"{{Suffrage:{'Voter' if voter else 'Nonvoter'} ID:{p.id} Address:{p.address}}}"
                              for p, voter in raft)
        statuses = [self.election.member_status(p.id) for p in self.election.all_peers()]
        return {
            "runtime": runtime_stats(),
            "nomad": {"server": "true", "leader": str(leading).lower(), "leader_addr": leader.address if leader else "",
                      "bootstrap": "false", "known_regions": "1"},
            "raft": {"applied_index": index, "commit_index": index, "fsm_pending": "0", "last_contact": contact,
                     "last_log_index": index, "last_log_term": term, "last_snapshot_index": "0",
                     "last_snapshot_term": "0", "latest_configuration": f"[{peers_conf}]",
                     "latest_configuration_index": str(self.election.config_index), "num_peers": str(len(raft) - 1),
                     "protocol_version": "3", "protocol_version_max": "3", "protocol_version_min": "0",
                     "snapshot_version_max": "1", "snapshot_version_min": "0",
                     "state": "Leader" if leading else "Follower", "term": term},
            "serf": {"encrypted": "true", "event_queue": "0", "event_time": "1",
                     "failed": str(statuses.count("failed")),
                     "health_score": "0", "intent_queue": "0", "left": str(statuses.count("left")), "member_time": "1",
                     "members": str(len(statuses)), "query_queue": "0", "query_time": "1"},
        }

    def _gauges(self) -> list[tuple[str, dict[str, str], float]]:
        leading = self.election.is_leader()
        host = {"host": self.name}
        gauges: list[tuple[str, dict[str, str], float]] = [
            ("nomad_raft_state_leader", host, 1.0 if leading else 0.0),
            ("nomad_raft_peers", host, float(len(self.election.raft_servers()))),
            ("nomad_runtime_num_goroutines", host, float(threading.active_count())),
        ]
        with self.lock:
            cl = self.cluster()
            active = sum(1 for n in cl.state["nodes"].values() if n["Status"] == "ready")
            gauges.append(("nomad_nomad_heartbeat_active", host, float(active) if leading else 0.0))
            if leading:  # as in Nomad, only the leader publishes job summaries
                for jid, job in sorted(cl.state["jobs"].items()):
                    ns = job["Spec"].get("Namespace", "default")
                    for group, s in cl.summary(job)["Summary"].items():
                        labels = dict(host, job=jid, task_group=group, namespace=ns)
                        for key in ("Running", "Queued", "Complete", "Failed", "Lost", "Starting", "Unknown"):
                            gauges.append((f"nomad_nomad_job_summary_{key.lower()}", labels, float(s[key])))
        return gauges


# --------------------------------------------------------------------------- client

def _os_release() -> tuple[str, str]:
    values: dict[str, str] = {}
    try:
        with open("/etc/os-release", encoding="utf-8") as fh:
            for line in fh:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    values[k] = v.strip('"')
    except OSError:
        pass
    return values.get("ID", "linux"), values.get("VERSION_ID", "")


def _volume_of(path: str) -> str:
    """The device mounted where `path` lives (Nomad's unique.storage.volume)."""
    real, best, device = os.path.realpath(path), "", "unknown"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                mount, source = left.split()[4], [*right.split(), "", ""][1]
                if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, device = mount, source
    except (OSError, IndexError):
        pass
    return device


def _mem_total() -> int:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class Client:
    """A Nomad client, and (the lab has no Consul binary) the node's Consul client agent: it keeps the
    node a live member of Consul's LAN pool and syncs its services into Consul's catalog."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.name, self.ip = cfg["name"], cfg["ip"]
        self.node_id = cfg["nomad_node_id"]
        self.dc = cfg.get("datacenter", "cern")
        self.token = cfg["tokens"]["nomad"]
        self.consul_token = cfg.get("tokens", {}).get("consul", "")
        self.build_dir = cfg.get("build_dir", "/build")
        self.fault_dir = cfg.get("fault_dir") or FAULT_DIR
        self.tls = base.Tls.from_config(cfg["tls"])
        acl_cfg = (cfg.get("acl") or {}).get("nomad")
        self.check = token_check(Tokens(acl_cfg, NomadACL(acl_cfg, self.token)), "client")
        self.masters = [m["ip"] for m in cfg.get("masters", [])]
        self.preferred = 0  # index in masters of the server that answered last (the leader, once known)
        self.consul_preferred = 0
        self.allocs: list[dict[str, Any]] = []
        self.last_ok = 0.0
        self.known_servers: list[str] = []
        self.sent_info = ""  # the fingerprint the servers have (as JSON); "": to register
        self.status_due = 0.0  # after a registration: when the first heartbeat (status update) is due
        self.consul_registered: dict[str, dict[str, Any]] = {}  # service ID -> registration last sent
        self.consul_next_full = 0.0
        self.consul_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"consul-agent.{self.name}"))
        self.started = time.time_ns()
        self.static = self._static_info()
        self.api = base.Router()
        self._routes()

    def storage(self) -> tuple[int, int]:
        st = os.statvfs(self.build_dir)
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    def _static_info(self) -> dict[str, Any]:
        """What the fingerprint reads from files once (it does not change while the client runs)."""
        os_id, os_version = _os_release()
        return {"os": (os_id, os_version), "mem": _mem_total(), "volume": _volume_of(self.build_dir)}

    def node_info(self) -> dict[str, Any]:
        u = os.uname()
        free, total = self.storage()
        os_id, os_version = self.static["os"]
        cores = os.cpu_count() or 1
        mem = self.static["mem"]
        updated = rfc3339(self.started)
        attrs = {
            "cpu.arch": _arch(), "cpu.numcores": str(cores), "cpu.totalcompute": str(cores * 2000),
            "cpu.frequency": "2000", "driver.docker": "1", "driver.docker.version": "20.10.24+dfsg1",
            "driver.docker.os_type": "linux", "driver.docker.runtimes": "io.containerd.runc.v2,runc",
            "driver.docker.volumes.enabled": "true", "kernel.name": u.sysname.lower(), "kernel.version": u.release,
            "kernel.arch": u.machine, "memory.totalbytes": str(mem), "nomad.version": VERSION,
            "nomad.revision": REVISION, "nomad.advertise.address": f"{self.ip}:{HTTP_PORT}", "os.name": os_id,
            "os.version": os_version, "os.signals": "SIGHUP,SIGINT,SIGKILL,SIGTERM,SIGUSR1,SIGUSR2",
            "unique.hostname": self.name, "unique.network.ip-address": self.ip,
            "unique.advertise.address": f"{self.ip}:{HTTP_PORT}", "unique.cgroup.mountpoint": "/sys/fs/cgroup",
            "unique.consul.name": self.name, "unique.storage.bytesfree": str(free),
            "unique.storage.bytestotal": str(total), "unique.storage.volume": self.static["volume"],
            "consul.datacenter": self.dc, "consul.version": "1.20.5", "consul.server": "false",
        }
        docker_attrs = {k: v for k, v in attrs.items() if k.startswith("driver.docker")}
        return {
            "ID": self.node_id, "Name": self.name, "Datacenter": self.dc, "NodeClass": "", "NodePool": "default",
            "HTTPAddr": f"{self.ip}:{HTTP_PORT}", "TLSEnabled": True, "Attributes": attrs,
            "Meta": {"allow_compilation": "true"}, "ComputedClass": "v1:8391032176120513345",
            "Drivers": {
                "docker": {"Attributes": docker_attrs, "Detected": True, "HealthDescription": "Healthy",
                           "Healthy": True, "UpdateTime": updated},
                "exec": {"Attributes": {"driver.exec": "true"}, "Detected": True, "HealthDescription": "Healthy",
                         "Healthy": True, "UpdateTime": updated},
                "raw_exec": {"Attributes": {}, "Detected": False, "HealthDescription": "disabled",
                             "Healthy": False, "UpdateTime": updated},
            },
            "HostVolumes": {}, "HostNetworks": {}, "Links": {"consul": f"{self.dc}.{self.name}"},
            "NodeResources": {
                "Cpu": {"CpuShares": cores * 2000, "TotalCpuCores": cores,
                        "ReservableCpuCores": list(range(cores))},
                "Devices": [], "Disk": {"DiskMB": free // (1 << 20)}, "Memory": {"MemoryMB": mem // (1 << 20)},
                "Networks": [{"CIDR": f"{self.ip}/32", "Device": "eth0", "DynamicPorts": None, "IP": self.ip,
                              "MBits": 1000, "Mode": "", "ReservedPorts": None}],
                "NodeNetworks": [{"Addresses": [{"Address": self.ip, "Alias": "default", "Family": "ipv4",
                                                 "Gateway": "", "ReservedPorts": ""}],
                                  "Device": "eth0", "MacAddress": "02:42:ac:1e:00:02", "Mode": "host"}],
                "MinDynamicPort": 20000, "MaxDynamicPort": 32000,
            },
            "ReservedResources": {"Cpu": {"CpuShares": 0}, "Disk": {"DiskMB": 0}, "Memory": {"MemoryMB": 0},
                                  "Networks": {"ReservedHostPorts": ""}},
        }

    def _ordered(self, preferred: int) -> list[int]:
        n = len(self.masters)
        return [(preferred + i) % n for i in range(n)]

    def rpc(self, path: str, body: Any, timeout: float) -> Any:
        """One call to the servers' RPC port, trying each master (the leader first, once known);
        None when none answers."""
        for i in self._ordered(self.preferred):
            status, reply = base.call(f"https://{self.masters[i]}:{RPC_PORT}{path}", self.tls, "POST", body,
                                      headers={"X-Nomad-Token": self.token}, timeout=timeout)
            if status == 200:
                self.preferred = i
                return reply
        return None

    # --- lab faults: flags in fault_dir (see tests/lab/faults.py)
    def _flag(self, name: str) -> str | None:
        try:
            with open(os.path.join(self.fault_dir, name), encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError:
            return None

    def _failing(self) -> tuple[list[dict[str, Any]], bool]:
        """The allocations to report failed: with the flag `nomad-fail-allocations` empty (or "once"),
        the CI allocations running here, once; with "job:ID[,ID...]", every allocation of those jobs
        that has run two seconds, for as long as the flag is there."""
        flag = self._flag(FAIL_FLAG)
        if flag is None:
            return [], False
        if flag.startswith("job:"):
            jobs = set(flag[4:].split(","))
            return [a for a in self.allocs if a["JobID"] in jobs and a.get("ClientStatus") == "running"
                    and time.time_ns() - int(a.get("StartedAt") or 0) >= 2e9], False
        return [a for a in self.allocs if a["JobID"].startswith("ci-") and a.get("ClientStatus") == "running"], True

    def heartbeat(self) -> None:
        """Registers the node (Node.Register, with its fingerprint), then heartbeats (Node.UpdateStatus):
        as client/client.go registerAndHeartbeat, the first heartbeat comes a random stagger (up to
        INITIAL_HEARTBEAT_STAGGER_S) after the registration, and the node is `initializing` until then."""
        if self._flag(DISCONNECT_FLAG) is not None:
            return  # the fault `disconnect-agent`: this client no longer reaches the servers
        if time.monotonic() < self.status_due:
            return
        failing, once = self._failing()
        info = self.node_info()
        text = json.dumps(info, sort_keys=True)
        register = not self.sent_info
        body: dict[str, Any] = {"ID": self.node_id, "Failed": [{"ID": a["ID"], "ExitCode": 1} for a in failing],
                                "Register": register}
        if text != self.sent_info:
            body["Info"] = info
        reply = self.rpc("/internal/node/heartbeat", body, timeout=1.5)
        if not isinstance(reply, dict):
            return
        if reply.get("NeedInfo"):
            self.sent_info = ""  # a server that does not know us (a new leader without our node): send it all
            return
        if "Info" in body:
            self.sent_info = text
        if register:
            self.status_due = time.monotonic() + random.uniform(0.0, INITIAL_HEARTBEAT_STAGGER_S)
        if failing and once:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.fault_dir, FAIL_FLAG))
        self.allocs = list(reply.get("Allocs") or [])
        self.known_servers = list(reply.get("Servers") or [])
        leader_ip = str(reply.get("LeaderRPCAddr") or "").rsplit(":", 1)[0]
        if leader_ip in self.masters:
            self.preferred = self.masters.index(leader_ip)
        self.last_ok = time.monotonic()

    # --- Consul, as the node's Consul agent and as Nomad clients sync their services
    def _consul(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        for i in self._ordered(self.consul_preferred):
            status, reply = base.call(f"https://{self.masters[i]}:8500{path}", self.tls, method, body,
                                      headers={"X-Consul-Token": self.consul_token}, timeout=2.0)
            if status == 200:
                self.consul_preferred = i
                return status, reply
        return 0, None

    def consul_member(self, status: str = "alive") -> dict[str, Any] | None:
        """Gossip, simplified: tells the Consul servers (their RPC port) that this node's agent is alive
        (or leaving); the answer says whether the catalog still has the node."""
        body = {"Node": self.name, "Address": self.ip, "ID": self.consul_id, "Status": status,
                "Tags": {"build": "1.20.5:74efe419", "dc": self.dc, "id": self.consul_id, "role": "node",
                         "segment": "", "vsn": "2", "vsn_max": "3", "vsn_min": "2", "ft_fs": "1", "ft_si": "1"}}
        for i in self._ordered(self.consul_preferred):
            code, reply = base.call(f"https://{self.masters[i]}:8300/internal/member", self.tls, "POST", body,
                                    timeout=2.0)
            if code == 200 and isinstance(reply, dict):
                return reply
        return None

    def consul_sync(self) -> None:
        member = self.consul_member()
        short = self.node_id[:8]
        svc_id = f"_nomad-client-{short}"
        common = {"Node": self.name, "Address": self.ip, "Datacenter": self.dc}
        wanted: dict[str, dict[str, Any]] = {svc_id: dict(common, Service={
            "ID": svc_id, "Service": "nomad-client", "Port": HTTP_PORT, "Tags": ["http"]}, Check={
            "CheckID": "nomad-client-health", "Name": "Nomad Client HTTP Check", "Status": "passing",
            "ServiceID": svc_id})}
        running = sorted((a for a in self.allocs if a.get("ClientStatus") == "running"),
                         key=lambda a: a.get("CreateIndex", 0))
        for n, a in enumerate(running):
            sid = f"_nomad-task-{a['ID']}"
            wanted[sid] = dict(common, Service={
                "ID": sid, "Service": a["JobID"], "Port": 8000 + n, "Tags": [a["TaskGroup"]]}, Check={
                "CheckID": f"_nomad-check-{a['ID']}", "Name": f"service: \"{a['JobID']}\" check",
                "Status": "passing", "ServiceID": sid})
        # Anti-entropy: everything again now and then, and at once when the catalog lost the node (it left).
        full = time.monotonic() >= self.consul_next_full or (member is not None and member.get("Known") is False)
        ok = True
        for sid, reg in wanted.items():
            if full or self.consul_registered.get(sid) != reg:
                if self._consul("PUT", "/v1/catalog/register", reg)[0] == 200:
                    self.consul_registered[sid] = reg
                else:
                    ok = False
        stale = set(self.consul_registered) - set(wanted)
        if full:  # services of allocations that stopped, also those a previous run of this agent left behind
            status, reply = self._consul("GET", f"/v1/catalog/node/{self.name}")
            if status == 200 and isinstance(reply, dict):
                stale |= {sid for sid in (reply.get("Services") or {})
                          if str(sid).startswith("_nomad-task-") and sid not in wanted}
            else:
                ok = False
        for sid in stale:
            if self._consul("PUT", "/v1/catalog/deregister", dict(common, ServiceID=sid))[0] == 200:
                self.consul_registered.pop(sid, None)
            else:
                ok = False
        if full and ok:
            self.consul_next_full = time.monotonic() + CONSUL_ANTI_ENTROPY_S

    def leave(self) -> None:
        """On SIGTERM during a system shutdown, the node's Consul agent leaves the cluster (a client agent's
        leave_on_terminate defaults to true); stopping only nomad.service does not make it leave (a real
        node's Consul agent is a service of its own). node.json "consul_leave_on_terminate" overrides."""
        wanted = self.cfg.get("consul_leave_on_terminate")
        if wanted is None:
            try:
                state = subprocess.run(["systemctl", "is-system-running"], capture_output=True, text=True,
                                       timeout=2, check=False).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                state = ""
            wanted = state == "stopping"
        if wanted:
            self.consul_member("leaving")

    # --- API
    def start(self) -> None:
        base.serve(self.ip, HTTP_PORT, self.api, self.tls, self.check, name="nomad")
        every("heartbeat", HEARTBEAT_S, self.heartbeat)
        every("consul", CONSUL_SYNC_S, self.consul_sync)
        log(f"client {self.name} ({self.node_id}) on {self.ip}:{HTTP_PORT}")

    def _healthy(self) -> bool:
        return time.monotonic() - self.last_ok < HEARTBEAT_TTL_S

    def _routes(self) -> None:
        api = self.api

        @api.route("GET", "/v1/agent/health", acl=False)
        def health(req: base.Request) -> base.Response:
            if req.query.get("type") == "server":
                return base.Response(status=500, body={"server": {"ok": False, "message": "server not enabled"}})
            if not self._healthy():
                return base.Response(status=500, body={"client": {"ok": False, "message": "no known servers"}})
            return base.Response(body={"client": {"ok": True, "message": "ok"}})

        @api.route("GET", "/v1/agent/self", need="agent:read")
        def agent_self(req: base.Request) -> base.Response:
            last = f"{time.monotonic() - self.last_ok:.6f}s" if self.last_ok else "never"
            return base.Response(body={
                "config": agent_config(self.cfg, server=False),  # no "member": clients are not in serf
                "stats": {
                    "client": {"heartbeat_ttl": f"{HEARTBEAT_TTL_S:.0f}s", "node_id": self.node_id,
                               "known_servers": ",".join(self.known_servers), "num_allocations": str(len(self.allocs)),
                               "last_heartbeat": last},
                    "runtime": runtime_stats(),
                },
            })

        @api.route("GET", "/v1/metrics", acl=False)
        def metrics(req: base.Request) -> base.Response:
            free, total = self.storage()
            labels = {"host": self.name, "node_id": self.node_id, "datacenter": self.dc, "node_class": "none",
                      "node_pool": "default", "node_status": "ready" if self._healthy() else "initializing"}
            disk = {"host": self.name, "disk": self.static["volume"], "node_id": self.node_id}
            running = sum(1 for a in self.allocs if a.get("ClientStatus") == "running")
            return metrics_response(req, [
                ("nomad_client_allocations_running", labels, float(running)),
                ("nomad_client_allocations_pending", labels, 0.0),
                ("nomad_client_allocations_blocked", labels, 0.0),
                ("nomad_client_host_disk_size", disk, float(total)),
                ("nomad_client_host_disk_available", disk, float(free)),
                ("nomad_client_host_disk_used_percent", disk, 100.0 * (total - free) / total if total else 0.0),
                ("nomad_runtime_num_goroutines", {"host": self.name}, float(threading.active_count())),
            ])

        # Everything else goes to a server, as a Nomad client forwards API calls; the server checks the token.
        @api.route("GET|PUT|POST|DELETE", "/v1/{rest*}", acl=False)
        def forward(req: base.Request) -> base.Response:
            if self._flag(DISCONNECT_FLAG) is not None:
                return error(500, "no servers")
            reply = self.rpc("/internal/forward", request_to_json(req, 0), timeout=RPC_HOLD_S + 5)
            if isinstance(reply, dict) and "status" in reply:
                return response_from_json(reply)
            return error(500, "no servers")


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cfg = base.load_json(args[0] if args else "/etc/alicelab/node.json")
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent: Server | Client = Server(cfg) if cfg.get("role") == "master" else Client(cfg)
    agent.start()
    while not stop.wait(0.2):
        pass
    # A client leaves Nomad without deregistering: the servers notice the missed heartbeats, as with Nomad.
    log(f"{cfg['name']} stopping")
    if isinstance(agent, Client):
        agent.leave()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
