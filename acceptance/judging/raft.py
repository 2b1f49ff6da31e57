"""Raft judgement shared by Nomad and Consul: which master a server or member is, which master leads, and
what the leader, the servers and their failure tolerance say (from :mod:`acceptance.clients.raft`'s shapes)."""

from __future__ import annotations

from collections.abc import Sequence

from acceptance.clients.raft import Autopilot, RaftServer
from acceptance.hosts import host_of, same_host


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

