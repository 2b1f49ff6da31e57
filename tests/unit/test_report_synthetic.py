"""Synthetic but realistic summaries for the report writers' tests (and the builder's own sanity tests).

The cluster of ``build_summary``: 3 masters, 36 VM agents and 4 bare-metal agents, the pseudo-node
``cluster``, and 48 checks (the catalogue of ``checks/``). By default one night with something of every kind:
an unreachable agent whose checks are blocked by ``node.ssh``, a waived agent, failures, an error, an image
pulled back (remediated), a refused reboot, and a run interrupted before it finished alimetal04 (not_run).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from reports.summary import OUTCOMES, Record, RemediationDetail, RemediationEntry, Summary

CLUSTER_CHECKS = [
    *(f"api.{api}.reachable" for api in ("nomad", "consul", "vault", "prometheus", "openstack")),
    *(f"cluster.nomad.{c}" for c in ("leader", "peers", "failure-tolerance", "versions", "jobs-running")),
    *(f"cluster.consul.{c}" for c in ("leader", "voters", "failure-tolerance", "members", "critical-checks", "dns")),
    "cluster.vault.one-active", "cluster.vault.ha", "cluster.openstack.master-azs",
    "cluster.prometheus.targets", "cluster.prometheus.remote-write", "cluster.drift.openstack-vs-nomad",
]
NODE_CHECKS = ["node.ping", "node.ssh", "node.puppet.clean", "node.puppet.recent", "node.openstack.active",
               "node.openstack.flavor"]
MASTER_CHECKS = [*(f"master.units.{u}" for u in ("docker", "nomad", "consul", "vault")), "master.backup.dsmcad",
                 "master.backup.recent", "master.backup.success", "master.prometheus.healthy",
                 "master.vault.initialised", "master.vault.unsealed"]
AGENT_CHECKS = ["agent.units.docker", "agent.units.nomad", "agent.cmdline.cgroup-v1", "agent.image.builder",
                "agent.build.mounted", "agent.build.free", "agent.nomad.ready", "agent.openstack.vdb"]
VM_ONLY = {"agent.build.mounted", "agent.openstack.vdb"}
# checks that do not need ssh (they read an API or ping)
NO_SSH = {"node.ping", "node.openstack.active", "node.openstack.flavor", "agent.nomad.ready", "agent.openstack.vdb",
          "master.prometheus.healthy", "master.vault.initialised", "master.vault.unsealed"}
SEVERITY = {"node.ping": "critical", "node.ssh": "critical", "agent.cmdline.cgroup-v1": "critical",
            "agent.units.docker": "critical", "agent.units.nomad": "critical", "agent.nomad.ready": "critical",
            "node.openstack.flavor": "minor", "cluster.nomad.versions": "minor"}
REMEDIATION = {"node.ping": "node.hard-reboot", "node.ssh": "node.hard-reboot", "node.puppet.clean": "puppet.rerun",
               "node.puppet.recent": "puppet.rerun", "agent.cmdline.cgroup-v1": "node.reboot-for-cmdline",
               "agent.image.builder": "image.pull", "agent.nomad.ready": "nomad.undrain",
               "agent.units.docker": "unit.restart", "agent.units.nomad": "unit.restart",
               "node.openstack.active": "node.hard-reboot"}
RUNBOOK = {"node": "Checklist to verify the status of a master", "master": "Checklist to verify the status of a master",
           "agent": "Creating a agent", "backup": "Backup master", "cluster": "Cluster architecture description"}

MASTERS = [f"alimesos0{i}" for i in (1, 2, 3)]
VMS = [f"alibuild{i:02d}" for i in range(1, 37)]
METALS = [f"alimetal0{i}" for i in range(1, 5)]
HOSTILE = "<img src=x onerror=alert(1)>"

Key = tuple[str, str]


def checks_for(role: str, kind: str | None) -> list[str]:
    if role == "cluster":
        return list(CLUSTER_CHECKS)
    own = MASTER_CHECKS if role == "master" else [c for c in AGENT_CHECKS if kind == "vm" or c not in VM_ONLY]
    return NODE_CHECKS + own


def all_checks() -> list[str]:
    return CLUSTER_CHECKS + NODE_CHECKS + MASTER_CHECKS + AGENT_CHECKS


def default_scenario() -> dict[Key, tuple[str, str]]:
    """(check, node) -> (outcome, message) of the default night (blocked and waived come from the nodes)."""
    return {
        ("node.ssh", "alibuild07"): ("failed", "ssh root@alibuild07.cern.ch: Connection timed out after 10 s"),
        ("agent.nomad.ready", "alibuild07"): ("failed", "Nomad node alibuild07 is down (last heartbeat 41 min ago)"),
        ("agent.cmdline.cgroup-v1", "alibuild03"): (
            "failed", "/proc/cmdline lacks systemd.unified_cgroup_hierarchy=0 (reboot to apply)"),
        ("agent.cmdline.cgroup-v1", "alibuild21"): (
            "failed", "/proc/cmdline lacks systemd.unified_cgroup_hierarchy=0 (reboot to apply)"),
        ("agent.image.builder", "alibuild15"): ("remediated", ""),
        ("node.puppet.clean", "alimetal02"): (
            "error", "no puppet run summary at /opt/puppetlabs/puppet/public/last_run_summary.yaml"),
        ("master.backup.recent", "alimesos02"): (
            "failed", "last successful dsmc incremental of /build/consul 3 days ago (limit 26 h)"),
        ("cluster.prometheus.remote-write", "cluster"): (
            "failed", "remote_write to MONIT: 12.4% of samples failed over 10 min"),
        ("agent.build.free", "alibuild29"): ("failed", "/build has 41 GiB free, expected at least 100 GiB"),
    }


def build_summary(*, run_id: str = "20261126T030000Z-3f9a1c", started: str = "2026-11-26T03:00:00+00:00",
                  cluster: str = "alice-prod", moment: str = "nightly", overrides: Mapping[Key, Any] | None = None,
                  scenario: Mapping[Key, tuple[str, str]] | None = None, unreachable: tuple[str, ...] = ("alibuild07",),
                  waived: tuple[str, ...] = ("alibuild12",), interrupted: bool = True, hostile: bool = False,
                  seed: int = 1) -> Summary:
    """A summary of one night. ``scenario`` replaces the default failures, ``overrides`` adds to them
    ((check, node) -> outcome, or (outcome, message)); ``interrupted`` leaves alimetal04 unrun."""
    rnd = random.Random(seed)
    cases: dict[Key, tuple[str, str]] = dict(default_scenario() if scenario is None else scenario)
    for key, value in (overrides or {}).items():
        cases[key] = (value, f"{key[0]} {value} on {key[1]}") if isinstance(value, str) else tuple(value)
    nodes: list[dict[str, Any]] = [{"name": "cluster", "role": "cluster", "kind": None, "address": None,
                                    "source": "cluster", "maintenance": None}]
    for i, name in enumerate(MASTERS):
        nodes.append({"name": name, "role": "master", "kind": "vm", "address": f"{name}.cern.ch",
                      "source": "static", "maintenance": None, "az": f"cern-geneva-{'abc'[i]}"})
    for name in VMS + METALS:
        maint = {"reason": "disk swap INC0123", "until": "2026-12-31"} if name in waived else None
        nodes.append({"name": name, "role": "agent", "kind": "metal" if name in METALS else "vm",
                      "address": f"{name}.cern.ch", "source": "openstack" if name in METALS else "static",
                      "maintenance": maint})
    if hostile:
        nodes.append({"name": HOSTILE, "role": "agent", "kind": "vm", "address": None, "source": "openstack",
                      "maintenance": None})
        cases[("node.ping", HOSTILE)] = ("failed", '<script>alert("x")</script> & "quoted" \'single\'')
    records: list[Record] = []
    remediations: list[RemediationEntry] = []
    for n in nodes:
        name, role, kind = n["name"], n["role"], n["kind"]
        down = name in unreachable
        for check in checks_for(role, kind):
            area = check.split(".")[1] if check.startswith("master.backup") else role
            rec = Record(check=check, node=name, outcome="passed", severity=SEVERITY.get(check, "major"),
                         duration_s=round(rnd.uniform(0.01, 0.8), 3), role=role, kind=kind,
                         runbook=RUNBOOK["backup" if area == "backup" else role],
                         remediation=REMEDIATION.get(check), test_id=f"checks/{role}.py::{check}[{name}]")
            if (check, name) in cases:
                rec.outcome, rec.message = cases[(check, name)]  # type: ignore[assignment]
            elif n.get("maintenance"):
                rec.outcome, rec.message = "waived", f"{n['maintenance']['reason']} (until {n['maintenance']['until']})"
            elif down and check not in NO_SSH and check != "node.ssh":
                rec.outcome, rec.message, rec.blocked_by = "blocked", "node.ssh failed on this node", "node.ssh"
                rec.duration_s = 0.0
            elif interrupted and name == "alimetal04" and check not in ("node.ping", "node.ssh"):
                rec.outcome, rec.message, rec.duration_s = "not_run", "the run was interrupted before this check", 0.0
            if rec.outcome == "remediated":
                rec.first_message = "image registry.cern.ch/alisw/slc9-builder:latest is not present"
                rec.remediation_detail = RemediationDetail(
                    action="image.pull", mode="safe", verdict="taken", guardrail=None, before="absent",
                    after="present", duration_s=48.2)
                remediations.append(RemediationEntry(
                    run_id=run_id, time=started.replace("03:00:00", "03:01:12"), node=name, check=check,
                    action="image.pull", mode="safe", verdict="taken", guardrail=None,
                    reason="builder image missing", before="absent", after="present", duration_s=48.2))
            if rec.outcome == "failed" and name == "alibuild21":
                rec.remediation_detail = RemediationDetail(
                    action="node.reboot-for-cmdline", mode="safe", verdict="refused", guardrail="workload-gate",
                    before="2 running allocations", after=None, duration_s=0.4)
                remediations.append(RemediationEntry(
                    run_id=run_id, time=started.replace("03:00:00", "03:01:30"), node=name, check=check,
                    action="node.reboot-for-cmdline", mode="safe", verdict="refused", guardrail="workload-gate",
                    reason="2 running allocations (ci-mesosci-slc9); drain deadline not met",
                    before="2 running allocations", after=None, duration_s=0.4))
            records.append(rec)
    unknown = set(cases) - {(r.check, r.node) for r in records}
    if unknown:
        raise ValueError(f"no such check on such node in the synthetic cluster: {sorted(unknown)}")
    transport = {"nodes": {n["name"]: {"connections": 0 if n["name"] in unreachable else 1,
                                       "round_trips": rnd.randint(2, 5), "commands": rnd.randint(30, 60),
                                       "live_commands": rnd.randint(0, 3)}
                           for n in nodes if n["role"] != "cluster"},
                 "api_requests": {"nomad": 14, "consul": 9, "vault": 6, "prometheus": 4, "openstack": 3}}
    return Summary(run_id=run_id, cluster=cluster, inventory="/etc/alice/prod.yaml", started=started,
                   duration_s=183.4 + rnd.random(), records=records, exit_status=2 if interrupted else 1,
                   warnings=["maintenance entry for alibuild31 expired on 2026-10-31: ignored"], nodes=nodes,
                   moment=moment, interrupted=interrupted, remediations=remediations,
                   transport=transport)  # type: ignore[arg-type]


def test_the_synthetic_cluster_is_the_size_of_alice():
    data = build_summary().to_json()
    roles = [n["role"] for n in data["nodes"]]
    assert roles.count("master") == 3 and roles.count("agent") == 40 and roles.count("cluster") == 1
    assert 40 <= len({r["check"] for r in data["records"]}) <= 50
    assert all(data["totals"][o] > 0 for o in OUTCOMES), data["totals"]
    assert data["blocked_by"] == {"node.ssh[alibuild07]": data["totals"]["blocked"]}
    assert not data["healthy"] and data["interrupted"]


def test_synthetic_overrides_and_a_clean_night():
    data = build_summary(scenario={}, unreachable=(), waived=(), interrupted=False,
                         overrides={("node.ping", "alibuild01"): "failed"}).to_json()
    assert data["totals"]["failed"] == 1 and data["totals"]["passed"] == len(data["records"]) - 1


def test_a_case_for_a_check_the_cluster_lacks_is_refused():
    import pytest

    with pytest.raises(ValueError, match="alibuild99"):
        build_summary(overrides={("node.ping", "alibuild99"): "failed"})
