"""Nomad through its API (one snapshot per run): leader, servers, failure tolerance, the agents as Nomad nodes,
the CI jobs, the servers' versions."""

from __future__ import annotations

from acceptance.apifixtures import assert_reachable
from acceptance.checkspec import check
from acceptance.clients import nomad_api
from acceptance.clients.snapshot import Snapshot, Snapshots
from acceptance.inventory import Expectations, Inventory, Node
from remediation.fixtures import reenable_node

RUNBOOK = "Cluster architecture description"
RUNBOOK_AGENT = "Creating a agent"
CLUSTER = ("cluster",)


def expected_servers(inventory: Inventory) -> int:
    return sum(1 for n in inventory.nodes if n.role == "master") or 3


@check("api.nomad.reachable", runbook=RUNBOOK, severity="critical", roles=CLUSTER, needs=())
def test_reachable(snapshots: Snapshots) -> None:
    assert_reachable(snapshots.get("nomad"))


@check("cluster.nomad.leader", runbook=RUNBOOK, severity="critical",
       roles=CLUSTER, needs=())
def test_leader(nomad_snapshot: Snapshot) -> None:
    err = nomad_snapshot.error("leader")
    if err is not None and err.kind in ("no-leader", "http"):
        raise AssertionError(f"no Nomad leader elected: {err}")
    problems = nomad_api.leader_problems(nomad_snapshot.get("leader"), nomad_snapshot.parts.get("peers") or [])
    assert not problems, "; ".join(problems)


@check("cluster.nomad.peers", runbook=RUNBOOK, severity="critical", roles=CLUSTER, needs=())
def test_peers(nomad_snapshot: Snapshot, inventory: Inventory) -> None:
    problems = nomad_api.peers_problems(nomad_snapshot.get("raft"), nomad_snapshot.get("members"),
                                        expected_servers(inventory))
    assert not problems, "; ".join(problems)


@check("cluster.nomad.failure-tolerance", runbook="Rebuilding a master", severity="critical", roles=CLUSTER,
       needs=())
def test_failure_tolerance(nomad_snapshot: Snapshot) -> None:
    tolerance, detail = nomad_api.failure_tolerance(nomad_snapshot.get("raft"), nomad_snapshot.get("members"))
    assert tolerance >= 1, f"Nomad failure tolerance {max(tolerance, 0)}, expected >= 1 ({detail})"


@check("cluster.nomad.versions", runbook=RUNBOOK, severity="minor", roles=CLUSTER, needs=())
def test_versions(nomad_snapshot: Snapshot) -> None:
    problems = nomad_api.version_problems(nomad_snapshot.get("members"))
    assert not problems, "; ".join(problems)


@check("cluster.nomad.jobs-running", runbook=RUNBOOK, severity="critical", roles=CLUSTER, needs=())
def test_jobs_running(nomad_snapshot: Snapshot, expect: Expectations) -> None:
    problems = nomad_api.jobs_problems(nomad_snapshot.get("jobs"), nomad_snapshot.get("allocations"), expect.ci_jobs)
    assert not problems, "; ".join(problems)


@check("agent.nomad.ready", runbook=RUNBOOK_AGENT, severity="critical", remediation=reenable_node,
       roles=["agent"], needs=())
def test_agent_ready(nomad_snapshot: Snapshot, node: Node, inventory: Inventory) -> None:
    in_maintenance = any(m.node == node.name and not m.expired() for m in inventory.maintenance)
    problems = nomad_api.node_problems(nomad_snapshot.get("nodes"), node.name, node.address,
                                       drain_allowed=in_maintenance)
    assert not problems, "; ".join(problems)
