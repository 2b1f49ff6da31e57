"""What Nomad and Consul share: raft servers as ``/v1/operator/autopilot/health`` lists them (operator:read),
the leader and peers of ``/v1/status/*`` (no ACL), and the checks' judgement of them.

The expected servers are the inventory's masters, by name: autopilot removes a dead server from the raft
configuration within seconds (it goes ``left``), so a count of what is there would not notice a master that is
gone. A master is missing, failed, unhealthy or not a voter: each is said by name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from acceptance.clients import shapes
from acceptance.clients.errors import ApiError
from acceptance.clients.hosts import host_of, same_host
from acceptance.clients.transport import Answer, excerpt


@dataclass(frozen=True)
class RaftServer:
    name: str  # Nomad: "<node>.<region>"; Consul: the node name
    address: str
    voter: bool
    healthy: bool
    leader: bool
    status: str  # serf status: alive, failed, left, ...
    version: str
    id: str = ""


@dataclass(frozen=True)
class Autopilot:
    healthy: bool
    failure_tolerance: int
    servers: tuple[RaftServer, ...]


def parse_autopilot(data: Any) -> Autopilot:
    """``GET /v1/operator/autopilot/health`` (Nomad and Consul document the same body)."""
    body = shapes.obj(data, "the body")
    servers = []
    for i, s in enumerate(shapes.items(body, "Servers", "the body")):
        where = f"Servers[{i}]"
        shapes.numbers(s, where, ("LastTerm", "LastIndex"))
        servers.append(RaftServer(
            name=shapes.node_name(s, "Name", where), address=shapes.string(s, "Address", where),
            voter=shapes.boolean(s, "Voter", where), healthy=shapes.boolean(s, "Healthy", where),
            leader=shapes.boolean(s, "Leader", where), status=shapes.string(s, "SerfStatus", where, default="?"),
            version=shapes.string(s, "Version", where, default="?"), id=shapes.string(s, "ID", where, default="")))
    tolerance = shapes.integer(body, "FailureTolerance", "the body")
    return Autopilot(healthy=shapes.boolean(body, "Healthy", "the body"), failure_tolerance=tolerance,
                     servers=tuple(servers))


def autopilot_settled(answer: Answer) -> ApiError | None:
    """429 is autopilot's "some server is unhealthy", an answer that lists the servers. A 429 listing none (just
    elected: autopilot has not run on the new leader yet, ``"Servers": null``) or not JSON at all (a rate
    limit) is retried within the snapshot's deadline."""
    if answer.status != 429:
        return None
    try:
        body = json.loads(answer.body)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("Servers"), list):
        return None
    why = "lists no servers yet (just elected)" if isinstance(body, dict) else f"{excerpt(answer.text(), 80)}"
    return ApiError("http", f"{answer.url}: GET {answer.path} answered 429, {why}: retried until apis.retry_s",
                    status=429, retryable=True)


def parse_leader(data: Any) -> str:
    """``GET /v1/status/leader``: ``"ip:port"``, or ``""`` when no leader is elected."""
    leader = shapes.text(data, "the body")
    return leader if leader == "" else shapes.host_port(leader, "the leader")


def parse_peers(data: Any) -> list[str]:
    return [shapes.host_port(p, f"peers[{i}]") for i, p in enumerate(shapes.arr(data, "the body"))]


def is_named(name: str, master: str) -> bool:
    """A server or member name is a master's: the same, or its FQDN / Nomad's ``<node>.<region>``."""
    return name == master or name.startswith(master + ".")


def server_is(server: RaftServer, name: str, address: str | None) -> bool:
    """A raft server is an inventory node's: by its name, else by its address resolved (servers report IPs)."""
    return is_named(server.name, name) or same_host(server.address, address or name)


def leading_master(leader: str, autopilot: Autopilot | None, masters: Sequence[tuple[str, str | None]]) -> str | None:
    """The name of the master that leads, ``masters`` given as (name, address): autopilot's ``Leader`` server by
    its identity, else the ``/v1/status/leader`` address resolved; None when no master can be told to lead."""
    if autopilot is not None:
        for s in autopilot.servers:
            if s.leader:
                for name, address in masters:
                    if server_is(s, name, address):
                        return name
    if leader:
        for name, address in masters:
            if same_host(host_of(leader), address or name):
                return name
    return None


def leader_problems(title: str, leader: str, peers: Sequence[str]) -> list[str]:
    if not leader:
        return [f"no {title} leader elected"]
    if peers and leader not in peers:
        return [f"the {title} leader {leader} is not one of the raft peers {', '.join(peers)}"]
    return []


def server_problems(title: str, autopilot: Autopilot, masters: Sequence[str]) -> list[str]:
    """Every master a healthy voting server (whatever state a missing one is in), no other server."""
    problems = []
    for m in masters:
        found = [s for s in autopilot.servers if is_named(s.name, m)]
        if not found:
            problems.append(f"{m} is not a {title} server (not in the raft configuration: missing, or left and "
                            "removed by autopilot)")
            continue
        s = found[0]
        bad = [what for what, wrong in ((s.status, s.status != "alive"), ("unhealthy", not s.healthy),
                                        ("not a voter", not s.voter)) if wrong]
        if bad:
            problems.append(f"{m} ({s.name}): {', '.join(bad)}")
    strangers = [s.name for s in autopilot.servers if not any(is_named(s.name, m) for m in masters)]
    if strangers:
        problems.append(f"{title} servers that are not masters of the inventory: {', '.join(sorted(strangers))}")
    return problems


def failure_tolerance(autopilot: Autopilot, masters: Sequence[str]) -> tuple[int, str]:
    """How many more masters may fail with a quorum left: the smaller of autopilot's own figure and healthy
    voting masters - quorum of all masters (a master autopilot removed still counts in the quorum it left)."""
    healthy = [m for m in masters if any(is_named(s.name, m) and s.voter and s.healthy and s.status == "alive"
                                         for s in autopilot.servers)]
    expected = len(masters) or len([s for s in autopilot.servers if s.voter])
    quorum = expected // 2 + 1
    computed = len(healthy) - quorum
    tolerance = min(computed, autopilot.failure_tolerance)
    down = [m for m in masters if m not in healthy]
    detail = (f"{len(healthy)} of {expected} masters healthy voters, quorum {quorum}, autopilot's "
              f"FailureTolerance {autopilot.failure_tolerance}" + (f"; not healthy: {', '.join(down)}" if down else ""))
    return tolerance, detail


def version_problems(title: str, autopilot: Autopilot) -> list[str]:
    versions: dict[str, list[str]] = {}
    for s in autopilot.servers:
        versions.setdefault(s.version, []).append(s.name)
    if len(versions) <= 1:
        return []
    return [f"{title} servers run different versions: " + "; ".join(
        f"{v} on {', '.join(sorted(names))}" for v, names in sorted(versions.items()))]
