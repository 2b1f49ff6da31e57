"""Consul through its API and its DNS (one snapshot per run): leader, voters, failure tolerance, members,
critical health checks, ``<job>.service.consul`` for the Nomad jobs' services and ``vault.service.consul``."""

from __future__ import annotations

from acceptance.checkspec import check
from acceptance.clients.consul_api import ConsulSnapshot
from acceptance.inventory import CLUSTER, Inventory, Node
from acceptance.judging import consul as judge_consul
from checks.cluster_raft import assert_failure_tolerance, assert_leader, assert_servers, masters

RUNBOOK = "Cluster architecture description"


@check("cluster.consul.leader", runbook=RUNBOOK, severity="critical", roles=[CLUSTER], needs=())
def test_leader(consul_snapshot: ConsulSnapshot, inventory: Inventory) -> None:
    assert_leader("Consul", consul_snapshot, inventory)


@check("cluster.consul.voters", runbook=RUNBOOK, severity="critical", roles=[CLUSTER], needs=())
def test_voters(consul_snapshot: ConsulSnapshot, inventory: Inventory) -> None:
    assert_servers("Consul", consul_snapshot, inventory)


@check("cluster.consul.failure-tolerance", runbook="Rebuilding a master", severity="critical", roles=[CLUSTER],
       needs=())
def test_failure_tolerance(consul_snapshot: ConsulSnapshot, inventory: Inventory) -> None:
    assert_failure_tolerance("Consul", consul_snapshot, inventory)


@check("cluster.consul.members", runbook=RUNBOOK, severity="major", roles=[CLUSTER], needs=())
def test_members(consul_snapshot: ConsulSnapshot, inventory: Inventory, all_nodes: list[Node]) -> None:
    agents = [n.name for n in all_nodes if n.role == "agent"]
    waived = [m.node for m in inventory.maintenance if not m.expired()]
    problems = judge_consul.members_problems(consul_snapshot.members, masters(inventory), agents, waived)
    assert not problems, "; ".join(problems)


@check("cluster.consul.critical-checks", runbook=RUNBOOK, severity="major", roles=[CLUSTER], needs=())
def test_critical(consul_snapshot: ConsulSnapshot) -> None:
    problems = judge_consul.critical_problems(consul_snapshot.critical)
    assert not problems, "; ".join(problems)


@check("cluster.consul.dns", runbook=RUNBOOK, severity="critical", roles=[CLUSTER], needs=())
def test_dns(consul_snapshot: ConsulSnapshot) -> None:
    problems = judge_consul.dns_problems(consul_snapshot.dns)
    assert not problems, f"Consul DNS at {consul_snapshot.dns_server}: " + "; ".join(problems)
