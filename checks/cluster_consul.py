"""Consul through its API and its DNS (one snapshot per run): leader, voters, failure tolerance, members,
critical health checks, ``<job>.service.consul`` for the Nomad jobs' services and ``vault.service.consul``."""

from __future__ import annotations

from acceptance.apifixtures import assert_reachable
from acceptance.checkspec import check
from acceptance.clients import consul_api
from acceptance.clients.snapshot import Snapshot, Snapshots
from acceptance.inventory import Inventory

RUNBOOK = "Cluster architecture description"
CLUSTER = ("cluster",)


def expected_servers(inventory: Inventory) -> int:
    return sum(1 for n in inventory.nodes if n.role == "master") or 3


@check("api.consul.reachable", runbook=RUNBOOK, severity="critical", roles=CLUSTER, needs=())
def test_reachable(snapshots: Snapshots) -> None:
    assert_reachable(snapshots.get("consul"))


@check("cluster.consul.leader", runbook=RUNBOOK, severity="critical", roles=CLUSTER, needs=())
def test_leader(consul_snapshot: Snapshot) -> None:
    err = consul_snapshot.error("leader")
    if err is not None and err.kind in ("no-leader", "http"):
        raise AssertionError(f"no Consul leader elected: {err}")
    problems = consul_api.leader_problems(consul_snapshot.get("leader"), consul_snapshot.parts.get("peers") or [])
    assert not problems, "; ".join(problems)


@check("cluster.consul.voters", runbook=RUNBOOK, severity="critical", roles=CLUSTER, needs=())
def test_voters(consul_snapshot: Snapshot, inventory: Inventory) -> None:
    problems = consul_api.voters_problems(consul_snapshot.get("raft"), consul_snapshot.get("members"),
                                          expected_servers(inventory))
    assert not problems, "; ".join(problems)


@check("cluster.consul.failure-tolerance", runbook="Rebuilding a master", severity="critical", roles=CLUSTER,
       needs=())
def test_failure_tolerance(consul_snapshot: Snapshot) -> None:
    tolerance, detail = consul_api.failure_tolerance(consul_snapshot.get("raft"), consul_snapshot.get("members"))
    assert tolerance >= 1, f"Consul failure tolerance {max(tolerance, 0)}, expected >= 1 ({detail})"


@check("cluster.consul.members", runbook=RUNBOOK, severity="major", roles=CLUSTER, needs=())
def test_members(consul_snapshot: Snapshot, inventory: Inventory) -> None:
    masters = [n.name for n in inventory.nodes if n.role == "master"]
    problems = consul_api.members_problems(consul_snapshot.get("members"), masters)
    assert not problems, "; ".join(problems)


@check("cluster.consul.critical-checks", runbook=RUNBOOK, severity="major", roles=CLUSTER, needs=())
def test_critical(consul_snapshot: Snapshot) -> None:
    problems = consul_api.critical_problems(consul_snapshot.get("critical"))
    assert not problems, "; ".join(problems)


@check("cluster.consul.dns", runbook=RUNBOOK, severity="critical", roles=CLUSTER, needs=())
def test_dns(consul_snapshot: Snapshot) -> None:
    answers = consul_snapshot.get("dns")
    problems = consul_api.dns_problems(answers)
    assert not problems, f"Consul DNS at {consul_snapshot.get('dns_server')}: " + "; ".join(problems)
