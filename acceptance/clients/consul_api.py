"""Consul's HTTP API and its DNS: the snapshot (leader, peers, autopilot health, members, critical checks,
the services Nomad registered and their DNS names), parsed and shape-checked, and the checks' pure functions.

Consul filters by ACL instead of refusing: a token without full read gets 200 with the entries it may not see
removed, and the header ``X-Consul-Results-Filtered-By-ACLs: true``. Every call looks for that header; a
filtered answer is an ``acl-filtered`` error of the checks that read it (never an empty list that passes).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from acceptance.clients import raft, shapes
from acceptance.clients.call import Caller, Deadline, refuse_unknown_token
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError
from acceptance.clients.hosts import first_address
from acceptance.clients.raft import Autopilot
from acceptance.clients.snapshot import ApiSnapshot, Part, attempt
from acceptance.clients.transport import Answer

TITLE = "Consul"
# serf member status (consul/agent_members.json): 0 none, 1 alive, 2 leaving, 3 left, 4 failed
SERF_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}
NOMAD_TASK_PREFIX = "_nomad-task-"  # the service IDs Nomad gives the services of its jobs
FILTERED_HEADER = "x-consul-results-filtered-by-acls"

RIGHTS: dict[str, str | None] = {
    "/v1/status/leader": None,
    "/v1/status/peers": None,
    "/v1/operator/autopilot/health": "operator:read",
    "/v1/agent/members": "node:read (on every node)",
    "/v1/health/state/critical": "node:read and service:read (on every node and service)",
    "/v1/catalog/services": "service:read (on every service)",
    "/v1/health/service/": "node:read and service:read (on every node and service)",
}


def right_of(path: str) -> str | None:
    return RIGHTS.get(path) or next((r for p, r in RIGHTS.items() if p.endswith("/") and path.startswith(p)), None)


@dataclass(frozen=True)
class Member:
    name: str
    address: str
    status: str  # alive, leaving, left, failed, none
    server: bool  # Tags.role == "consul"


@dataclass(frozen=True)
class HealthCheck:
    node: str
    name: str
    status: str
    service: str


@dataclass(frozen=True)
class DnsAnswer:
    name: str
    addresses: tuple[str, ...] = ()
    error: str | None = None  # NXDOMAIN, no answer, timeout


class ConsulSnapshot(ApiSnapshot):
    api = "consul"
    leader = Part[str]()
    peers = Part[list[str]]()
    autopilot = Part[Autopilot]()
    members = Part[list[Member]]()
    critical = Part[list[HealthCheck]]()
    job_services = Part[list[str]]()  # the services Nomad registered for its jobs
    dns = Part[dict[str, DnsAnswer]]()
    dns_server = ""

    TOKEN_PARTS = ("autopilot", "members", "critical", "job_services")


# --------------------------------------------------------------------------- parsers


def member_status(value: object, where: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value in SERF_STATUS:
        return SERF_STATUS[value]
    if isinstance(value, str) and value in SERF_STATUS.values():
        return value
    raise shapes.ShapeError(f"{where}.Status is {shapes.describe(value)}, expected a serf status (0-4)")


def parse_members(data: Any) -> list[Member]:
    out = []
    for i, m in enumerate(shapes.items(data, None, "the body")):
        where = f"[{i}]"
        shapes.numbers(m, where, ("Port", "ProtocolMin", "ProtocolMax", "ProtocolCur", "DelegateMin", "DelegateMax",
                                  "DelegateCur"))
        tags = shapes.str_map(m.get("Tags") or {}, f"{where}.Tags")
        out.append(Member(name=shapes.node_name(m, "Name", where),
                          address=shapes.string(m, "Addr", where, default=""),
                          status=member_status(m.get("Status"), where), server=tags.get("role") == "consul"))
    return out


def parse_checks(data: Any) -> list[HealthCheck]:
    out = []
    for i, c in enumerate(shapes.items(data, None, "the body")):
        where = f"[{i}]"
        shapes.numbers(c, where)
        out.append(HealthCheck(node=shapes.string(c, "Node", where), name=shapes.string(c, "Name", where),
                               status=shapes.string(c, "Status", where, empty=False),
                               service=shapes.string(c, "ServiceName", where, default="")))
    return out


def parse_services(data: Any) -> list[str]:
    """``GET /v1/catalog/services``: service name -> tags."""
    body = shapes.obj(data, "the body")
    if "consul" not in body:
        raise shapes.ShapeError("the catalog has no 'consul' service (every Consul catalog has it)")
    for name, tags in body.items():
        for j, tag in enumerate(shapes.arr(tags, f"{name}")):
            shapes.text(tag, f"{name}[{j}]")
    return sorted(body)


def parse_service_ids(data: Any) -> list[str]:
    """``GET /v1/health/service/<name>``: the service IDs of its instances."""
    out = []
    for i, entry in enumerate(shapes.items(data, None, "the body")):
        service = shapes.obj(shapes.key(entry, "Service", f"[{i}]"), f"[{i}].Service")
        shapes.numbers(service, f"[{i}].Service", ("Port", "CreateIndex", "ModifyIndex"))
        shapes.numbers(shapes.obj(entry.get("Node") or {}, f"[{i}].Node"), f"[{i}].Node")
        for j, check in enumerate(shapes.items(entry.get("Checks") or [], None, f"[{i}].Checks")):
            shapes.numbers(check, f"[{i}].Checks[{j}]")
        out.append(shapes.string(service, "ID", f"[{i}].Service"))
    return out


# --------------------------------------------------------------------------- fetch


def _filtered(cfg: ApiConfig) -> Any:
    def accept(answer: Answer) -> ApiError | None:
        if answer.headers.get(FILTERED_HEADER, "").strip().lower() == "true":
            need = right_of(answer.path.split("?")[0]) or "node:read and service:read"
            return ApiError("acl-filtered", f"the token cannot see everything: {TITLE} filtered {answer.path} by "
                                            f"ACL; give {cfg.token_var or 'the token'} {need} on everything")
        return None
    return accept


def _leader_or_filtered(cfg: ApiConfig) -> Any:
    filtered = _filtered(cfg)

    def accept(answer: Answer) -> ApiError | None:
        if answer.status == 200 and answer.body.strip() == b'""':
            return ApiError("no-leader", f"{TITLE} at {answer.url} answers that no leader is elected "
                                         "(empty /v1/status/leader)", retryable=True)
        result: ApiError | None = filtered(answer)
        return result
    return accept


def dns_server(cfg: ApiConfig, dns: str | None) -> tuple[list[str], int]:
    """Consul DNS servers and port: ``apis.consul.dns`` (else the API's host, port 8600), then every master's
    address on the same port (fail-over, as for the HTTP API)."""
    if dns:
        host, _, port_text = dns.rpartition(":")
        port = int(port_text)
    else:
        host, port = urllib.parse.urlsplit(cfg.url).hostname or "127.0.0.1", 8600
    hosts = [host]
    for url in cfg.urls[1:]:
        other = urllib.parse.urlsplit(url).hostname
        if other and other not in hosts:
            hosts.append(other)
    return hosts, port


def resolve(names: Iterable[str], server: tuple[list[str], int], timeout_s: float = 4.0,
            deadline: Deadline | None = None) -> dict[str, DnsAnswer]:
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    # dnspython takes only IPs: a server named by host name is resolved first (the inventory names hosts)
    ips = [ip for ip in (first_address(h) for h in server[0]) if ip]
    if not ips:
        return {name: DnsAnswer(name, (), f"the Consul DNS server {', '.join(server[0])} does not resolve to an "
                                          "address") for name in names}
    resolver.nameservers = ips
    resolver.port = server[1]
    out = {}
    for name in names:
        left = min(timeout_s, deadline.left()) if deadline else timeout_s
        if left <= 0:
            out[name] = DnsAnswer(name, (), "not asked: the API's snapshot reached its deadline (apis.deadline_s)")
            continue
        resolver.timeout = min(1.0, left)
        resolver.lifetime = left
        try:
            answer = resolver.resolve(name, "A", tcp=False, raise_on_no_answer=False)
            addresses = tuple(sorted(r.to_text() for r in answer))
            out[name] = DnsAnswer(name, addresses, None if addresses else "no A record (no healthy instance)")
        except dns.resolver.NXDOMAIN:
            out[name] = DnsAnswer(name, (), "NXDOMAIN")
        except dns.exception.Timeout:
            out[name] = DnsAnswer(name, (), f"no answer from {', '.join(server[0])} (port {server[1]}) "
                                            f"within {left:g} s")
        except dns.exception.DNSException as e:
            out[name] = DnsAnswer(name, (), f"{type(e).__name__}: {e}")
    return out


def fetch(cfg: ApiConfig, dns: str | None = None, caller: Caller | None = None) -> ConsulSnapshot:
    if cfg.problem:
        return ConsulSnapshot.unusable(ApiError("config", cfg.problem))
    snap = ConsulSnapshot()
    caller = caller or Caller(cfg)
    filtered = _filtered(cfg)

    def read(path: str, parse: Any, ok: tuple[int, ...] = (200,)) -> Any:
        return caller.read(path, parse, ok=ok, right=right_of(path), accept=filtered)

    def settled(answer: Answer) -> ApiError | None:
        return raft.autopilot_settled(answer) or filtered(answer)

    snap.leader = attempt(lambda: caller.read("/v1/status/leader", raft.parse_leader,
                                              accept=_leader_or_filtered(cfg)))
    snap.peers = attempt(lambda: read("/v1/status/peers", raft.parse_peers))
    snap.autopilot = attempt(lambda: caller.read("/v1/operator/autopilot/health", raft.parse_autopilot,
                                                 ok=(200, 429), right=right_of("/v1/operator/autopilot/health"),
                                                 accept=settled))
    snap.members = attempt(lambda: read("/v1/agent/members", parse_members))
    snap.critical = attempt(lambda: read("/v1/health/state/critical", parse_checks))

    def job_services() -> list[str]:
        found = []
        for name in read("/v1/catalog/services", parse_services):
            if name == "consul":
                continue
            ids = read(f"/v1/health/service/{urllib.parse.quote(name, safe='')}", parse_service_ids)
            if any(i.startswith(NOMAD_TASK_PREFIX) for i in ids):
                found.append(name)
        return found

    snap.job_services = attempt(job_services)
    services = snap.raw("job_services")
    if isinstance(services, list):
        server = dns_server(cfg, dns)
        snap.dns_server = f"{server[0][0]}:{server[1]}"
        snap.dns = resolve([f"{s}.service.consul" for s in [*services, "vault"]], server,
                           timeout_s=min(4.0, cfg.timeout_s), deadline=caller.deadline)
    else:
        snap.dns = ApiError("http", f"Consul DNS not asked: the services Nomad registered are not known "
                                    f"({services})")
    snap.url = caller.url
    refuse_unknown_token(snap, caller, ConsulSnapshot.TOKEN_PARTS)
    snap.decide_root(ConsulSnapshot.TOKEN_PARTS, probe="leader")
    return snap


# --------------------------------------------------------------------------- pure functions


def members_problems(members: Sequence[Member], masters: Sequence[str], agents: Sequence[str],
                     maintenance: Iterable[str] = ()) -> list[str]:
    """Every master an alive server member (whatever state a missing one is in: absent, left, failed); every
    inventory agent that is a member alive, unless it is in the maintenance list. Members the inventory does
    not know are named, not counted."""
    problems = []
    waived = set(maintenance)
    for m in masters:
        found = [x for x in members if raft.is_named(x.name, m)]
        if not found:
            problems.append(f"master {m} is not a Consul member")
        elif not any(x.status == "alive" for x in found):
            problems.append(f"master {m} is {found[0].status}")
        elif not any(x.server for x in found if x.status == "alive"):
            problems.append(f"master {m} is a Consul member but not a server")
    bad_agents = []
    for a in agents:
        found = [x for x in members if raft.is_named(x.name, a)]
        if found and not any(x.status == "alive" for x in found) and a not in waived:
            bad_agents.append(f"{a} ({found[0].status})")
    if bad_agents:
        problems.append(f"agent not alive: {', '.join(bad_agents)}")
    known = [*masters, *agents]
    strangers = sorted(f"{x.name} ({x.status}{', server' if x.server else ''})" for x in members
                       if not any(raft.is_named(x.name, k) for k in known) and (x.server or x.status != "alive"))
    servers = [s for s in strangers if s.endswith(", server)")]
    if servers:
        problems.append(f"Consul servers that are not masters of the inventory: {', '.join(servers)}")
    others = [s for s in strangers if s not in servers]
    if problems and others:
        problems.append(f"not counted, not in the inventory: {', '.join(others)}")
    return problems


def critical_problems(critical: Sequence[HealthCheck]) -> list[str]:
    bad = [c for c in critical if c.status == "critical"]
    if not bad:
        return []
    return [f"{len(bad)} critical health check(s): " + "; ".join(
        f"{c.node}: {c.name}" + (f" ({c.service})" if c.service else "") for c in bad[:10])
        + (" ..." if len(bad) > 10 else "")]


def dns_problems(answers: Mapping[str, DnsAnswer]) -> list[str]:
    return [f"{name}: {a.error}" for name, a in sorted(answers.items()) if a.error or not a.addresses]
