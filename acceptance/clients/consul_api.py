"""Consul's HTTP API and its DNS: leader, peers, autopilot health, members, critical checks, the services Nomad
registered and their DNS names. Every answer is looked at for ``X-Consul-Results-Filtered-By-ACLs: true``."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from acceptance.clients import raft, shapes
from acceptance.clients.call import Caller, Deadline, refuse_unknown_token
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError
from acceptance.clients.raft import Autopilot
from acceptance.clients.snapshot import ApiSnapshot, Part, attempt
from acceptance.clients.transport import Answer
from acceptance.hosts import first_address

# serf member status (consul/agent_members.json): 0 none, 1 alive, 2 leaving, 3 left, 4 failed
SERF_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}
NOMAD_TASK_PREFIX = "_nomad-task-"  # the service IDs Nomad gives the services of its jobs
FILTERED_HEADER = "x-consul-results-filtered-by-acls"

_EVERYTHING = "node:read and service:read (on every node and service)"
RIGHTS = {"/v1/operator/autopilot/health": "operator:read", "/v1/agent/members": "node:read (on every node)",
          "/v1/health/state/critical": _EVERYTHING, "/v1/catalog/services": "service:read (on every service)",
          "/v1/health/service/": _EVERYTHING}  # /v1/status/*: no ACL


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


def member_status(value: object, where: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value in SERF_STATUS:
        return SERF_STATUS[value]
    if isinstance(value, str) and value in SERF_STATUS.values():
        return value
    raise shapes.ShapeError(f"{where}.Status is {shapes.describe(value)}, expected a serf status (0-4)")


def parse_members(data: Any) -> list[Member]:
    return shapes.records(data, lambda m, w: Member(
        name=shapes.node_name(m, "Name", w), address=shapes.string(m, "Addr", w, default=""),
        status=member_status(m.get("Status"), w),
        server=shapes.str_map(m.get("Tags") or {}, f"{w}.Tags").get("role") == "consul"),
        numeric=("Port", "ProtocolMin", "ProtocolMax", "ProtocolCur", "DelegateMin", "DelegateMax", "DelegateCur"))


def parse_checks(data: Any) -> list[HealthCheck]:
    return shapes.records(data, lambda c, w: HealthCheck(
        node=shapes.string(c, "Node", w), name=shapes.string(c, "Name", w),
        status=shapes.string(c, "Status", w, empty=False), service=shapes.string(c, "ServiceName", w, default="")))


def parse_services(data: Any) -> list[str]:
    """``GET /v1/catalog/services``: service name -> tags."""
    body = shapes.obj(data, "the body")
    if "consul" not in body:
        raise shapes.ShapeError("the catalog has no 'consul' service (every Consul catalog has it)")
    for name, tags in body.items():
        for j, tag in enumerate(shapes.arr(tags, f"{name}")):
            shapes.text(tag, f"{name}[{j}]")
    return sorted(body)


def _service_id(entry: Any, where: str) -> str:
    service = shapes.obj(shapes.key(entry, "Service", where), f"{where}.Service")
    shapes.numbers(service, f"{where}.Service", ("Port", *shapes.INDEXES))
    shapes.numbers(shapes.obj(entry.get("Node") or {}, f"{where}.Node"), f"{where}.Node")
    for j, check in enumerate(shapes.items(entry.get("Checks") or [], None, f"{where}.Checks")):
        shapes.numbers(check, f"{where}.Checks[{j}]")
    return shapes.string(service, "ID", f"{where}.Service")


def parse_service_ids(data: Any) -> list[str]:
    """``GET /v1/health/service/<name>``: the service IDs of its instances."""
    return shapes.records(data, _service_id, numeric=())


def _accept(cfg: ApiConfig, leader: bool = False) -> Callable[[Answer], ApiError | None]:
    """Consul filters by ACL instead of refusing (200 without what the token may not see): never a pass."""
    def accept(answer: Answer) -> ApiError | None:
        if leader and (err := _leader_elected(answer)):
            return err
        if answer.headers.get(FILTERED_HEADER, "").strip().lower() == "true":
            need = right_of(answer.path.split("?")[0]) or "node:read and service:read"
            return ApiError("acl-filtered", f"the token cannot see everything: Consul filtered {answer.path} by "
                                            f"ACL; give {cfg.token_var or 'the token'} {need} on everything")
        return None
    return accept


_leader_elected = raft.leader_elected("Consul")


def dns_server(cfg: ApiConfig, dns: str | None) -> tuple[list[str], int]:
    """``apis.consul.dns`` (else the API's host, port 8600), then every master's address on the same port."""
    host, _, port = dns.rpartition(":") if dns else (urllib.parse.urlsplit(cfg.url).hostname or "127.0.0.1", "", "8600")
    hosts = [host]
    hosts += [h for h in dict.fromkeys(urllib.parse.urlsplit(u).hostname for u in cfg.urls[1:]) if h and h != host]
    return hosts, int(port)


def resolve(names: Iterable[str], server: tuple[list[str], int], timeout_s: float = 4.0,
            deadline: Deadline | None = None) -> dict[str, DnsAnswer]:
    import dns.exception
    import dns.resolver

    hosts, port = server
    resolver = dns.resolver.Resolver(configure=False)
    # dnspython takes only IPs: a server named by host name is resolved first (the inventory names hosts)
    ips = [ip for ip in (first_address(h) for h in hosts) if ip]
    if ips:
        resolver.nameservers, resolver.port = ips, port
    out = {}
    for name in names:
        left = min(timeout_s, deadline.left()) if deadline else timeout_s
        found: tuple[str, ...] = ()
        if not ips:
            error: str | None = f"the Consul DNS server {', '.join(hosts)} does not resolve to an address"
        elif left <= 0:
            error = "not asked: the API's snapshot reached its deadline (apis.deadline_s)"
        else:
            resolver.timeout, resolver.lifetime = min(1.0, left), left
            try:
                found = tuple(sorted(r.to_text() for r in resolver.resolve(name, "A", raise_on_no_answer=False)))
                error = None if found else "no A record (no healthy instance)"
            except dns.resolver.NXDOMAIN:
                error = "NXDOMAIN"
            except dns.exception.Timeout:
                error = f"no answer from {', '.join(hosts)} (port {port}) within {left:g} s"
            except dns.exception.DNSException as e:
                error = f"{type(e).__name__}: {e}"
        out[name] = DnsAnswer(name, found, error)
    return out


def fetch(cfg: ApiConfig, dns: str | None = None, caller: Caller | None = None) -> ConsulSnapshot:
    if cfg.problem:
        return ConsulSnapshot.unusable(ApiError("config", cfg.problem))
    snap = ConsulSnapshot()
    caller = caller or Caller(cfg)
    filtered = _accept(cfg)

    def read(path: str, parse: Any, call: Any, **kw: Any) -> Any:
        return caller.read(path, parse, right=right_of(path), call=call, **({"accept": filtered} | kw))

    def settled(answer: Answer) -> ApiError | None:
        return raft.autopilot_settled(answer) or filtered(answer)

    snap.leader = attempt(lambda: read("/v1/status/leader", raft.parse_leader, lambda c: c.status.leader(),
                                       accept=_accept(cfg, leader=True)))
    snap.peers = attempt(lambda: read("/v1/status/peers", raft.parse_peers, lambda c: c.status.peers()))
    snap.autopilot = attempt(lambda: read("/v1/operator/autopilot/health", raft.parse_autopilot,
                                          lambda c: c.operator.autopilot_health(), ok=(200, 429), accept=settled))
    snap.members = attempt(lambda: read("/v1/agent/members", parse_members, lambda c: c.agent.members()))
    snap.critical = attempt(lambda: read("/v1/health/state/critical", parse_checks,
                                         lambda c: c.health.state("critical")[1]))

    def job_services() -> list[str]:
        found = []
        for name in read("/v1/catalog/services", parse_services, lambda c: c.catalog.services()[1]):
            if name == "consul":
                continue
            ids = read(f"/v1/health/service/{urllib.parse.quote(name, safe='')}", parse_service_ids,
                       lambda c, n=name: c.health.service(n)[1])
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
    refuse_unknown_token(snap, caller, ConsulSnapshot.TOKEN_PARTS, lambda c: c.acl.token.read_self())
    snap.decide_root(ConsulSnapshot.TOKEN_PARTS, probe="leader")
    return snap
