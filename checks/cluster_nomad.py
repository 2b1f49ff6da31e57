"""Nomad through its API (one snapshot per run): leader, servers, failure tolerance, the agents as Nomad nodes,
the CI jobs, the servers' versions."""

from __future__ import annotations

from acceptance.checkspec import check
from acceptance.clients.nomad_api import NomadSnapshot
from acceptance.inventory import CLUSTER, Expectations, Inventory, Node
from acceptance.judging import nomad as judge_nomad
from acceptance.judging import raft as judge_raft
from checks.cluster_raft import assert_failure_tolerance, assert_leader, assert_servers
from remediation.fixtures import reenable_node

RUNBOOK = "Cluster architecture description"
RUNBOOK_AGENT = "Creating a agent"


@check("cluster.nomad.leader", runbook=RUNBOOK, severity="critical", roles=[CLUSTER], needs=())
def test_leader(nomad_snapshot: NomadSnapshot, inventory: Inventory) -> None:
    assert_leader("Nomad", nomad_snapshot, inventory)


@check("cluster.nomad.peers", runbook=RUNBOOK, severity="critical", roles=[CLUSTER], needs=())
def test_peers(nomad_snapshot: NomadSnapshot, inventory: Inventory) -> None:
    assert_servers("Nomad", nomad_snapshot, inventory)


@check("cluster.nomad.failure-tolerance", runbook="Rebuilding a master", severity="critical", roles=[CLUSTER],
       needs=())
def test_failure_tolerance(nomad_snapshot: NomadSnapshot, inventory: Inventory) -> None:
    assert_failure_tolerance("Nomad", nomad_snapshot, inventory)


@check("cluster.nomad.versions", runbook=RUNBOOK, severity="minor", roles=[CLUSTER], needs=())
def test_versions(nomad_snapshot: NomadSnapshot) -> None:
    problems = judge_raft.version_problems("Nomad", nomad_snapshot.autopilot)
    assert not problems, "; ".join(problems)


@check("cluster.nomad.jobs-running", runbook=RUNBOOK, severity="critical", roles=[CLUSTER], needs=())
def test_jobs_running(nomad_snapshot: NomadSnapshot, expect: Expectations) -> None:
    problems = judge_nomad.jobs_problems(nomad_snapshot.jobs, nomad_snapshot.allocations, expect.ci_jobs,
                                       nomad_snapshot.namespace)
    assert not problems, "; ".join(problems)


@check("agent.nomad.ready", runbook=RUNBOOK_AGENT, severity="critical", remediation=reenable_node,
       roles=["agent"], needs=())
def test_agent_ready(nomad_snapshot: NomadSnapshot, node: Node, inventory: Inventory) -> None:
    in_maintenance = any(m.node == node.name and not m.expired() for m in inventory.maintenance)
    problems = judge_nomad.node_problems(nomad_snapshot.nodes, node.name, node.address, drain_allowed=in_maintenance)
    assert not problems, "; ".join(problems)
