"""What the OpenStack checks judge: servers active, flavors, availability zones, drift against Nomad and the
inventory."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

from acceptance.clients.openstack_api import Server
from acceptance.inventory import Expectations, Inventory, Node


def project_of(node: Node) -> str:
    return "metal" if node.role == "agent" and node.kind == "metal" else "vm"


def find(servers: Iterable[Server], name: str) -> list[Server]:
    return [s for s in servers if s.name == name or s.name.startswith(name + ".")]


def active_problem(servers: Sequence[Server], node: Node, project_label: str) -> str | None:
    found = find(servers, node.name)
    if not found:
        return f"no server {node.name} in {project_label}"
    if len(found) > 1:
        return f"{len(found)} servers named {node.name} in {project_label}"
    if found[0].status != "ACTIVE":
        return f"server {node.name} is {found[0].status}, expected ACTIVE"
    return None


def expected_flavor(node: Node, expect: Expectations) -> str:
    """A glob: the node's own ``flavor``, else the ALICE default for its role and kind."""
    if node.flavor:
        return node.flavor
    if node.role == "master":
        return expect.master_flavor
    return expect.metal_flavor_pattern if node.kind == "metal" else expect.vm_flavor


def flavor_problem(server: Server, node: Node, expect: Expectations) -> str | None:
    want = expected_flavor(node, expect)
    if server.flavor is None:
        return f"cannot tell the flavor of {node.name}"
    if not fnmatch.fnmatchcase(server.flavor, want):
        return f"{node.name} has flavor {server.flavor}, expected {want}"
    return None


def master_az_problems(servers: Sequence[Server], masters: Sequence[Node], zones: Sequence[str]) -> list[str]:
    """The masters in as many distinct availability zones as there are masters; each in an expected zone and,
    when the inventory says which, in that one."""
    problems = []
    seen: dict[str, list[str]] = {}
    for m in masters:
        found = find(servers, m.name)
        if not found:
            problems.append(f"{m.name}: no such server")
            continue
        az = found[0].az or "(none)"
        seen.setdefault(az, []).append(m.name)
        if zones and az not in zones:
            problems.append(f"{m.name} is in {az}, not one of {', '.join(zones)}")
        elif m.az and az != m.az:
            problems.append(f"{m.name} is in {az}, the inventory says {m.az}")
    shared = [f"{', '.join(names)} share {az}" for az, names in sorted(seen.items()) if len(names) > 1]
    if shared:
        problems.append(f"masters not in distinct availability zones: {'; '.join(shared)}")
    return problems


def agent_patterns(inventory: Inventory, nodes: Sequence[Node]) -> list[str]:
    """What a build node's server name looks like: the agent discovery patterns, else the agents' name prefixes
    (``alibuild01`` -> ``alibuild*``)."""
    patterns = [r.pattern for r in inventory.discovery if r.role == "agent"]
    if not patterns:
        patterns = sorted({re.sub(r"\d+$", "", n.name) + "*" for n in nodes if n.role == "agent"})
    return patterns


def drift_problems(servers: Sequence[Server], nomad_nodes: Iterable[str], inventory_agents: Iterable[str],
                   patterns: Sequence[str]) -> list[str]:
    """Every build server in OpenStack is a Nomad node and in the inventory, and the reverse."""
    def ours(names: Iterable[str]) -> set[str]:
        short = {n.split(".")[0] for n in names}
        return {n for n in short if any(fnmatch.fnmatchcase(n, p) for p in patterns)}

    build = ours(s.name for s in servers)
    nomad = ours(nomad_nodes)
    inv = ours(inventory_agents)
    problems = []
    for what, names in (("in OpenStack but not a Nomad node", build - nomad),
                        ("in OpenStack but not in the inventory", build - inv),
                        ("a Nomad node but not in OpenStack", nomad - build),
                        ("in the inventory but not in OpenStack", inv - build)):
        if names:
            problems.append(f"{what}: {', '.join(sorted(names))}")
    return problems

