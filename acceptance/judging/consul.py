"""What the Consul checks judge: members, critical health checks, DNS answers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from acceptance.clients.consul_api import DnsAnswer, HealthCheck, Member
from acceptance.judging.raft import is_named


def members_problems(members: Sequence[Member], masters: Sequence[str], agents: Sequence[str],
                     maintenance: Iterable[str] = ()) -> list[str]:
    """Every master an alive server member (whatever state a missing one is in: absent, left, failed); every
    inventory agent that is a member alive, unless it is in the maintenance list. Members the inventory does
    not know are named, not counted."""
    problems = []
    waived = set(maintenance)
    for m in masters:
        found = [x for x in members if is_named(x.name, m)]
        if not found:
            problems.append(f"master {m} is not a Consul member")
        elif not any(x.status == "alive" for x in found):
            problems.append(f"master {m} is {found[0].status}")
        elif not any(x.server for x in found if x.status == "alive"):
            problems.append(f"master {m} is a Consul member but not a server")
    bad_agents = []
    for a in agents:
        found = [x for x in members if is_named(x.name, a)]
        if found and not any(x.status == "alive" for x in found) and a not in waived:
            bad_agents.append(f"{a} ({found[0].status})")
    if bad_agents:
        problems.append(f"agent not alive: {', '.join(bad_agents)}")
    known = [*masters, *agents]
    strangers = sorted(f"{x.name} ({x.status}{', server' if x.server else ''})" for x in members
                       if not any(is_named(x.name, k) for k in known) and (x.server or x.status != "alive"))
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

