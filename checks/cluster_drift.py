"""Inventory drift: every build server in OpenStack is a Nomad node and in the inventory, and the reverse."""

from __future__ import annotations

from acceptance.checkspec import check
from acceptance.clients.nomad_api import NomadSnapshot
from acceptance.clients.openstack_api import OpenStackSnapshot
from acceptance.inventory import CLUSTER, Inventory, Node
from acceptance.judging import openstack as judge_openstack


@check("cluster.drift.openstack-vs-nomad", runbook="Creating a agent", severity="major", roles=[CLUSTER], needs=())
def test_openstack_vs_nomad(openstack_snapshot: OpenStackSnapshot, nomad_snapshot: NomadSnapshot,
                            inventory: Inventory, all_nodes: list[Node]) -> None:
    servers = [*openstack_snapshot.vm.servers, *openstack_snapshot.metal.servers]
    nomad_nodes = [n.name for n in nomad_snapshot.nodes]
    agents = [n.name for n in all_nodes if n.role == "agent"]
    patterns = judge_openstack.agent_patterns(inventory, all_nodes)
    problems = judge_openstack.drift_problems(servers, nomad_nodes, agents, patterns)
    assert not problems, f"drift (build nodes matching {', '.join(patterns)}): " + "; ".join(problems)
