"""Prometheus (one snapshot per run): healthy and ready on every master; every expected target up (the Nomad,
Consul and Vault jobs, every node of the inventory); remote_write to MONIT neither failing nor lagging."""

from __future__ import annotations

from acceptance.apifixtures import assert_reachable
from acceptance.checkspec import check
from acceptance.clients import prometheus_api
from acceptance.clients.snapshot import Snapshot, Snapshots
from acceptance.inventory import CLUSTER, Expectations, Node
from acceptance.outcomes import CheckError
from remediation.fixtures import restart_prometheus

RUNBOOK = "Cluster architecture description"
RUNBOOK_MASTER = "Checklist to verify the status of a master"


@check("api.prometheus.reachable", runbook=RUNBOOK, severity="major", roles=[CLUSTER], needs=())
def test_reachable(snapshots: Snapshots) -> None:
    assert_reachable(snapshots.get("prometheus"))


@check("master.prometheus.healthy", runbook=RUNBOOK_MASTER, severity="major", remediation=restart_prometheus,
       roles=["master"], needs=("reachable",))
def test_healthy(prometheus_snapshot: Snapshot, node: Node) -> None:
    err = prometheus_snapshot.error(f"health:{node.name}")
    if err is not None:
        if err.kind == "unreachable":
            raise AssertionError(str(err))
        raise CheckError(str(err))
    problems = prometheus_api.health_problems(prometheus_snapshot.get(f"health:{node.name}"))
    assert not problems, f"Prometheus at {prometheus_snapshot.parts.get(f'url:{node.name}')}: " + "; ".join(problems)


@check("cluster.prometheus.targets", runbook=RUNBOOK, severity="major", roles=[CLUSTER], needs=())
def test_targets(prometheus_snapshot: Snapshot, expect: Expectations, all_nodes: list[Node]) -> None:
    problems = prometheus_api.targets_problems(prometheus_snapshot.get("targets"), expect.prometheus_jobs,
                                               all_nodes)
    assert not problems, f"{len(problems)} expected target(s) not up: " + "; ".join(problems)


@check("cluster.prometheus.remote-write", runbook=RUNBOOK, severity="major", roles=[CLUSTER], needs=())
def test_remote_write(prometheus_snapshot: Snapshot, expect: Expectations) -> None:
    problems = prometheus_api.remote_write_problems(
        prometheus_snapshot.get("rw_failed"), prometheus_snapshot.get("rw_highest"),
        prometheus_snapshot.get("rw_sent"), expect.remote_write_max_lag_s, prometheus_snapshot.parts.get("rw_retried"))
    assert not problems, "remote_write to MONIT: " + "; ".join(problems)
