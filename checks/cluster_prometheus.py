"""Prometheus (one snapshot per run): healthy and ready on every master; every expected target up (the Nomad,
Consul and Vault jobs, every node of the inventory); remote_write to MONIT neither failing nor lagging."""

from __future__ import annotations

from acceptance.checkspec import check
from acceptance.clients.prometheus_api import PrometheusSnapshot
from acceptance.inventory import CLUSTER, Expectations, Node
from acceptance.judging import prometheus as judge_prometheus
from remediation.fixtures import restart_prometheus

RUNBOOK = "Cluster architecture description"
RUNBOOK_MASTER = "Checklist to verify the status of a master"


@check("master.prometheus.healthy", runbook=RUNBOOK_MASTER, severity="major", remediation=restart_prometheus,
       roles=["master"], needs=("reachable",))
def test_healthy(prometheus_snapshot: PrometheusSnapshot, node: Node) -> None:
    masters = prometheus_snapshot.masters
    problems = judge_prometheus.health_problems(masters.of(node.name))
    assert not problems, f"Prometheus at {masters.url_of(node.name)}: " + "; ".join(problems)


@check("cluster.prometheus.targets", runbook=RUNBOOK, severity="major", roles=[CLUSTER], needs=())
def test_targets(prometheus_snapshot: PrometheusSnapshot, expect: Expectations, all_nodes: list[Node]) -> None:
    problems = judge_prometheus.targets_problems(prometheus_snapshot.targets, expect.prometheus_jobs, all_nodes)
    assert not problems, f"{len(problems)} expected target(s) not up: " + "; ".join(problems)


@check("cluster.prometheus.remote-write", runbook=RUNBOOK, severity="major", roles=[CLUSTER], needs=())
def test_remote_write(prometheus_snapshot: PrometheusSnapshot, expect: Expectations) -> None:
    snap = prometheus_snapshot
    problems = judge_prometheus.remote_write_problems(snap.rw_failed, snap.rw_highest, snap.rw_sent,
                                                    expect.remote_write_max_lag_s, snap.rw_retried)
    assert not problems, "remote_write to MONIT: " + "; ".join(problems)
