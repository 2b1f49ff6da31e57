"""Consul through py-consul, and Consul DNS through dnspython: the snapshot and the checks' pure functions."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from acceptance.clients.call import Caller
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError
from acceptance.clients.snapshot import Snapshot

# serf member status (consul/agent_members.json): 0 none, 1 alive, 2 leaving, 3 left, 4 failed
SERF_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}
NOMAD_TASK_PREFIX = "_nomad-task-"  # the service IDs Nomad gives the services of its jobs


def make_client(cfg: ApiConfig, url: str) -> Any:
    import consul  # py-consul

    parts = urllib.parse.urlsplit(url)
    # py-consul passes verify, cert and timeout to every request; it reads CONSUL_HTTP_TOKEN itself too
    client = consul.Consul(host=parts.hostname, port=parts.port or 8500, scheme=parts.scheme, token=cfg.token,
                           verify=cfg.verify, cert=cfg.client_cert, connections_timeout=cfg.timeout)
    client.token = cfg.token  # py-consul prefers CONSUL_HTTP_TOKEN over its argument; be explicit
    return client


def _get(client: Any, path: str) -> Any:
    """GET ``path`` with py-consul's HTTP client and callbacks, always with the token: some of py-consul's
    endpoint methods (agent.members, operator.raft_config) do not send it."""
    from consul.callback import CB  # type: ignore[import-untyped]

    return client.http.get(CB.json(), path, headers=client.prepare_headers())


def _leader_elected(value: Any) -> ApiError | None:
    if isinstance(value, str) and value:
        return None
    return ApiError("no-leader", "Consul answers that no leader is elected (empty /v1/status/leader)",
                    retryable=True)


@dataclass(frozen=True)
class DnsAnswer:
    name: str
    addresses: tuple[str, ...] = ()
    error: str | None = None  # NXDOMAIN, no answer, timeout


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


def resolve(names: Iterable[str], server: tuple[list[str], int], timeout_s: float = 4.0) -> dict[str, DnsAnswer]:
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = list(server[0])
    resolver.port = server[1]
    resolver.timeout = min(1.0, timeout_s)
    resolver.lifetime = timeout_s
    out = {}
    for name in names:
        try:
            answer = resolver.resolve(name, "A", tcp=False, raise_on_no_answer=False)
            addresses = tuple(sorted(r.to_text() for r in answer))
            out[name] = DnsAnswer(name, addresses, None if addresses else "no A record (no healthy instance)")
        except dns.resolver.NXDOMAIN:
            out[name] = DnsAnswer(name, (), "NXDOMAIN")
        except dns.exception.Timeout:
            out[name] = DnsAnswer(name, (), f"no answer from {', '.join(server[0])} (port {server[1]}) "
                                            f"within {timeout_s:g} s")
        except dns.exception.DNSException as e:
            out[name] = DnsAnswer(name, (), f"{type(e).__name__}: {e}")
    return out


def fetch(cfg: ApiConfig, dns: str | None = None, caller: Caller[Any] | None = None) -> Snapshot:
    caller = caller or Caller(cfg, lambda url: make_client(cfg, url))
    snap = Snapshot(api="consul")
    if cfg.problem:
        snap.root = ApiError("config", cfg.problem)
        return snap
    def get(path: str) -> Callable[[], Any]:
        return lambda: caller.get(path, lambda c: _get(c, path))

    snap.fetch("leader", lambda: caller.get("/v1/status/leader", lambda c: _get(c, "/v1/status/leader"),
                                            accept=_leader_elected))
    snap.fetch("members", get("/v1/agent/members"))
    snap.fetch("peers", get("/v1/status/peers"))
    snap.fetch("raft", get("/v1/operator/raft/configuration"))
    snap.fetch("critical", get("/v1/health/state/critical"))
    services = snap.fetch("services", get("/v1/catalog/services"))
    if isinstance(services, dict):
        instances: dict[str, Any] = {}
        for name in sorted(services):
            if name == "consul":
                continue
            got = snap.fetch(f"service:{name}", get(f"/v1/health/service/{urllib.parse.quote(name, safe='')}"))
            if got is not None:
                instances[name] = got
        snap.parts["job_services"] = job_services(instances)
        server = dns_server(cfg, dns)
        snap.parts["dns_server"] = f"{server[0][0]}:{server[1]}"
        snap.parts["dns"] = resolve([f"{s}.service.consul" for s in [*snap.parts["job_services"], "vault"]],
                                    server, timeout_s=min(4.0, cfg.timeout_s))
    snap.url = caller.url
    snap.set_root_from()
    return snap


# --------------------------------------------------------------------------- pure functions


def job_services(instances: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The services Nomad registered for its jobs (service ID ``_nomad-task-...``)."""
    return sorted(name for name, entries in instances.items()
                  if any(str((e.get("Service") or {}).get("ID", "")).startswith(NOMAD_TASK_PREFIX) for e in entries))


def leader_problems(leader: str, peers: Sequence[str]) -> list[str]:
    if not leader:
        return ["no Consul leader elected"]
    if peers and leader not in peers:
        return [f"the leader {leader} is not one of the raft peers {', '.join(peers)}"]
    return []


def member_status(member: dict[str, Any]) -> str:
    status = member.get("Status")
    return SERF_STATUS.get(status, str(status)) if isinstance(status, int) else str(status)


def voters_problems(raft: dict[str, Any], members: Sequence[dict[str, Any]], expected: int) -> list[str]:
    voters = [s for s in raft.get("Servers") or [] if s.get("Voter")]
    problems = []
    if len(voters) != expected:
        problems.append(f"{len(voters)} raft voters, expected {expected}: "
                        f"{', '.join(str(s.get('Node')) for s in voters) or 'none'}")
    status = {str(m.get("Name")): member_status(m) for m in members}
    bad = [f"{s.get('Node')} ({status.get(str(s.get('Node')), 'missing')})" for s in voters
           if status.get(str(s.get("Node"))) != "alive"]
    if bad:
        problems.append(f"voter not alive: {', '.join(bad)}")
    return problems


def failure_tolerance(raft: dict[str, Any], members: Sequence[dict[str, Any]]) -> tuple[int, str]:
    voters = [str(s.get("Node")) for s in raft.get("Servers") or [] if s.get("Voter")]
    status = {str(m.get("Name")): member_status(m) for m in members}
    alive = [v for v in voters if status.get(v) == "alive"]
    quorum = len(voters) // 2 + 1
    down = [f"{v} ({status.get(v, 'missing')})" for v in voters if v not in alive]
    detail = f"{len(alive)} of {len(voters)} voters alive, quorum {quorum}" + (
        f"; not alive: {', '.join(down)}" if down else "")
    return len(alive) - quorum, detail


def members_problems(members: Sequence[dict[str, Any]], masters: Sequence[str]) -> list[str]:
    """Every member alive (a member that left on purpose is ignored), every master a member."""
    problems = []
    bad = [f"{m.get('Name')} ({member_status(m)})" for m in members if member_status(m) not in ("alive", "left")]
    if bad:
        problems.append(f"member not alive: {', '.join(bad)}")
    names = {str(m.get("Name")) for m in members}
    missing = [n for n in masters if n not in names and not any(x.startswith(n + ".") for x in names)]
    if missing:
        problems.append(f"master not a Consul member: {', '.join(missing)}")
    return problems


def critical_problems(critical: Sequence[dict[str, Any]]) -> list[str]:
    bad = [c for c in critical if c.get("Status") == "critical"]
    if not bad:
        return []
    return [f"{len(bad)} critical health check(s): " + "; ".join(
        f"{c.get('Node')}: {c.get('Name')}" + (f" ({c.get('ServiceName')})" if c.get("ServiceName") else "")
        for c in bad[:10]) + (" ..." if len(bad) > 10 else "")]


def dns_problems(answers: dict[str, DnsAnswer]) -> list[str]:
    return [f"{name}: {a.error}" for name, a in sorted(answers.items()) if a.error or not a.addresses]
