"""The cluster checks' logic fed with the documented sample responses (tests/reference/api, parsed by the
clients' own parsers), and the checks' outcomes on fake snapshots: an unusable API blocks its checks and none of
them passes; the expected servers are the inventory's masters whatever state a missing one is in."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from acceptance.clients import consul_api, nomad_api, openstack_api, prometheus_api, raft, vault_api
from acceptance.clients.consul_api import ConsulSnapshot, DnsAnswer, Member
from acceptance.clients.errors import ApiError
from acceptance.clients.nomad_api import NomadSnapshot
from acceptance.clients.prometheus_api import PrometheusSnapshot
from acceptance.clients.snapshot import PerNode
from acceptance.clients.vault_api import VaultSnapshot
from acceptance.inventory import Expectations, Maintenance, Node
from acceptance.judging import consul as judge_consul
from acceptance.judging import nomad as judge_nomad
from acceptance.judging import openstack as judge_openstack
from acceptance.judging import prometheus as judge_prometheus
from acceptance.judging import raft as judge_raft
from acceptance.judging import vault as judge_vault
from alice_acceptance.scheduling import scope_of

from .test_api_support import MASTERS, apis, inventory, openstack_snapshot, run_checks, sample, unusable_snapshots


def autopilot(names: tuple[str, ...] = MASTERS, suffix: str = ".global", **changes: dict[str, Any]) -> raft.Autopilot:
    body = sample("nomad/operator_autopilot_health")
    base = body["Servers"][0]
    body["Servers"] = [{**base, "Name": f"{n}{suffix}", "Voter": True, "Healthy": True, "Leader": i == 0,
                        **changes.get(n, {})} for i, n in enumerate(names)]
    body["FailureTolerance"] = max(0, sum(1 for s in body["Servers"] if s["Healthy"]) - (len(MASTERS) // 2 + 1))
    return raft.parse_autopilot(body)


# --------------------------------------------------------------------------- Nomad and Consul servers


@pytest.mark.parametrize("service", ["nomad", "consul"])
def test_autopilot_samples_parse(service):
    got = raft.parse_autopilot(sample(f"{service}/operator_autopilot_health"))
    assert [s.name for s in got.servers] == ["node1", "node2"] and got.servers[0].leader and not got.servers[1].voter
    assert got.failure_tolerance == 0 and got.healthy


def test_servers_healthy_and_leader():
    ap = autopilot()
    assert judge_raft.server_problems("Nomad", ap, MASTERS) == []
    assert judge_raft.failure_tolerance(ap, MASTERS)[0] == 1
    assert judge_raft.version_problems("Nomad", ap) == []
    assert judge_raft.leader_problems("Nomad", raft.parse_leader(sample("nomad/status_leader")),
                                raft.parse_peers(sample("nomad/status_peers"))) == []
    assert judge_raft.leader_problems("Nomad", "", []) == ["no Nomad leader elected"]


@pytest.mark.parametrize("state", ["missing", "left", "failed"])
def test_a_dead_master_is_named_whatever_state_it_is_in(state):
    """Autopilot removes a dead server from raft within seconds: expected = the masters, by name."""
    if state == "missing":
        ap = autopilot(MASTERS[:2])
    else:
        ap = autopilot(**{MASTERS[2]: {"SerfStatus": state, "Healthy": False}})
    problems = judge_raft.server_problems("Consul", ap, MASTERS)
    assert len(problems) == 1 and problems[0].startswith(MASTERS[2])
    tolerance, detail = judge_raft.failure_tolerance(ap, MASTERS)
    assert tolerance == 0 and "2 of 3 masters healthy voters, quorum 2" in detail and MASTERS[2] in detail


def test_servers_not_voters_strangers_and_versions():
    ap = autopilot(**{MASTERS[1]: {"Voter": False}, MASTERS[2]: {"Version": "1.9.8"}})
    assert judge_raft.server_problems("Nomad", ap, MASTERS) == [f"{MASTERS[1]} ({MASTERS[1]}.global): not a voter"]
    assert "different versions" in judge_raft.version_problems("Nomad", ap)[0]
    stranger = autopilot((*MASTERS, "alitest01"))
    assert judge_raft.server_problems("Nomad", stranger, MASTERS) == [
        "Nomad servers that are not masters of the inventory: alitest01.global"]


def members(*extra: tuple[str, str, bool]) -> list[Member]:
    return [Member(m, "", "alive", True) for m in MASTERS] + [Member(n, "", s, srv) for n, s, srv in extra]


def test_consul_members_judged_by_the_inventory():
    agents = ["alibuild01", "alibuild02"]
    assert judge_consul.members_problems(members(("alibuild01", "alive", False)), MASTERS, agents) == []
    # a master that left (autopilot cleaned it up) or is absent
    left = [m if m.name != MASTERS[0] else Member(MASTERS[0], "", "left", True) for m in members()]
    assert judge_consul.members_problems(left, MASTERS, agents) == [f"master {MASTERS[0]} is left"]
    assert judge_consul.members_problems(members()[1:], MASTERS, agents) == [
        f"master {MASTERS[0]} is not a Consul member"]
    # a failed agent: a problem, unless it is in the maintenance list
    failed = members(("alibuild02", "failed", False))
    assert judge_consul.members_problems(failed, MASTERS, agents) == ["agent not alive: alibuild02 (failed)"]
    assert judge_consul.members_problems(failed, MASTERS, agents, maintenance=["alibuild02"]) == []
    # a client the inventory does not know: not counted (named when something else is wrong)
    stranger = members(("alijenkins01", "failed", False))
    assert judge_consul.members_problems(stranger, MASTERS, agents) == []
    both = members(("alijenkins01", "failed", False), ("alibuild01", "leaving", False))
    assert judge_consul.members_problems(both, MASTERS, agents) == [
        "agent not alive: alibuild01 (leaving)", "not counted, not in the inventory: alijenkins01 (failed)"]


def test_consul_samples_parse():
    parsed = consul_api.parse_members(sample("consul/agent_members"))
    assert parsed == [Member("foobar", "10.1.10.12", "alive", True)]
    checks = consul_api.parse_checks(sample("consul/health_state_critical"))
    assert judge_consul.critical_problems(checks) == []  # the stored sample is the 'passing' one (same shape)
    critical = [consul_api.HealthCheck(c.node, c.name, "critical", c.service) for c in checks]
    assert judge_consul.critical_problems(critical)[0].startswith("2 critical health check(s): foobar: Serf Health")
    entries = sample("consul/health_service")
    assert consul_api.parse_service_ids(entries) == [entries[0]["Service"]["ID"]]
    assert consul_api.parse_services({"consul": [], "redis": ["primary"]}) == ["consul", "redis"]
    answers = {"redis.service.consul": DnsAnswer("redis.service.consul", ("10.1.10.12",)),
               "vault.service.consul": DnsAnswer("vault.service.consul", (), "NXDOMAIN")}
    assert judge_consul.dns_problems(answers) == ["vault.service.consul: NXDOMAIN"]


# --------------------------------------------------------------------------- Nomad clients and jobs


def test_nomad_node_ready_drain_eligibility():
    raw = sample("nomad/nodes_list")
    nodes = nomad_api.parse_nodes(raw)
    name = nodes[0].name
    assert judge_nomad.node_problems(nodes, name, None) == []
    assert judge_nomad.node_problems(nodes, "alibuild09", None) == ["alibuild09 is not a Nomad node (not registered)"]
    assert judge_nomad.node_problems(nodes, "other-name", nodes[0].address) == []  # found by address
    raw[0].update(Drain=True, SchedulingEligibility="ineligible")
    nodes = nomad_api.parse_nodes(raw)
    assert "draining" in judge_nomad.node_problems(nodes, name, None)[0]
    assert judge_nomad.node_problems(nodes, name, None, drain_allowed=True) == []
    raw[0].update(Drain=False, Status="down")
    problems = judge_nomad.node_problems(nomad_api.parse_nodes(raw), name, None)
    assert any("is down, expected ready" in p for p in problems) and any("ineligible" in p for p in problems)


def test_nomad_jobs_running():
    jobs = nomad_api.parse_jobs(sample("nomad/jobs_list"))
    raw = sample("nomad/allocations_list")
    allocs = nomad_api.parse_allocations(raw)
    assert jobs[0].queued == 1 and allocs[0].client_status == "running"
    # some running, one queued: partial, not healthy
    assert judge_nomad.jobs_problems(jobs, allocs, ["example"]) == [
        "example: only 1 allocation(s) running, 1 queued (not placed: no eligible node has room)"]
    placed = [dataclasses.replace(j, queued=0) for j in jobs]
    assert judge_nomad.jobs_problems(placed, allocs, ["example"]) == []
    assert judge_nomad.jobs_problems(jobs, allocs, ["repo"], "ci") == ["repo: no such job in namespace 'ci'"]
    raw[0]["ClientStatus"] = "lost"
    assert judge_nomad.jobs_problems(jobs, nomad_api.parse_allocations(raw), ["example"]) == [
        "example: no allocation running (1 wanted, 1 queued)"]


# --------------------------------------------------------------------------- Vault / OpenBao


@pytest.mark.parametrize("flavour", ["vault", "openbao"])
def test_vault_health_states(flavour):
    def health(name: str) -> vault_api.Health:
        status = int(name.split("_")[2])
        return vault_api.parse_health(status)(sample(f"{flavour}/{name}"))

    active, standby = health("sys_health_200_active"), health("sys_health_429_standby")
    sealed, uninit = health("sys_health_503_sealed"), health("sys_health_501_not_initialized")
    assert [judge_vault.state(h) for h in (active, standby, sealed, uninit)] == [
        "active", "standby", "sealed", "not initialised"]
    assert judge_vault.unsealed_problem(active) is None and judge_vault.unsealed_problem(standby) is None
    assert "sealed" in (judge_vault.unsealed_problem(sealed) or "")
    assert judge_vault.initialised_problem(sealed) is None
    assert judge_vault.initialised_problem(uninit) == "Vault is not initialised"
    assert judge_vault.one_active_problems({"m1": "active", "m2": "standby", "m3": "standby"}) == []
    assert judge_vault.one_active_problems({"m1": "sealed", "m2": "standby", "m3": "standby"}) == [
        "0 active Vault nodes, expected exactly 1", "not a standby: m1 (sealed)"]


def test_vault_ha_status_and_leader():
    leader = vault_api.parse_leader(sample("openbao/sys_leader_ha_raft"))
    ha = vault_api.parse_ha_status(sample("openbao/sys_ha_status"))
    assert judge_vault.ha_problems({"m1": leader, "m2": leader, "m3": leader}, ha, 3) == []
    # OpenBao also answers with lower-case "nodes" and under "data"
    assert len(vault_api.parse_ha_status({"data": {"nodes": sample("openbao/sys_ha_status")["Nodes"]}})) == 3
    disabled = vault_api.parse_leader(sample("openbao/sys_leader_ha_disabled"))
    problems = judge_vault.ha_problems({"m1": leader, "m2": disabled}, ha[:2], 3)
    assert problems[0] == "HA is not enabled on m2" and "lists 2 nodes, expected 3" in problems[1]


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_targets_and_health():
    targets = prometheus_api.parse_targets(sample("prometheus/targets"))
    prom = Node("localhost", "master", address="127.0.0.1")
    assert judge_prometheus.targets_problems(targets, ["prometheus"], [prom]) == []
    assert judge_prometheus.targets_problems(targets, ["nomad"], []) == ["no target of job 'nomad'"]
    missing = Node("alibuild01", "agent", address="10.0.0.1")
    assert "alibuild01: not scraped" in judge_prometheus.targets_problems(targets, [], [missing])[0]
    down = [prometheus_api.Target(targets[0].labels, "down", "connection refused")]
    assert judge_prometheus.targets_problems(down, ["prometheus"], []) == [
        "prometheus/127.0.0.1:9090 down (connection refused)"]
    labelled = [prometheus_api.Target({"instance": "10.9.9.9:9100", "job": "node", "node": "alibuild01"}, "up", "")]
    assert judge_prometheus.targets_problems(labelled, [], [missing]) == []
    ok, unavailable = prometheus_api.Probe(200, "'Prometheus Server is Healthy.'"), prometheus_api.Probe(
        503, "'Service Unavailable'")
    assert judge_prometheus.health_problems(prometheus_api.MasterHealth(ok, unavailable)) == [
        "/-/ready answered 503 'Service Unavailable'"]


def vector(value: float | str, **labels: str) -> prometheus_api.Vector:
    body = {"status": "success", "data": sample("prometheus/query_instant_vector")["data"]}
    body["data"]["result"] = [{"metric": labels, "value": [1435781451.781, str(value)]}]
    return prometheus_api.parse_vector(body)


def test_prometheus_remote_write():
    q = {"remote_name": "a32556", "url": "http://monit:9090/api/v1/write"}
    assert judge_prometheus.remote_write_problems(vector(0, **q), vector(1000), vector(995, **q), 60) == []
    lag = judge_prometheus.remote_write_problems(vector(0, **q), vector(1000), vector(800, **q), 60, vector(50, **q))
    assert lag == ["http://monit:9090/api/v1/write: 200 s behind (limit 60 s, 50.0 samples/s retried)"]
    failing = judge_prometheus.remote_write_problems(vector(3.5, **q), vector(1000), vector(999, **q), 60)
    assert failing == ["http://monit:9090/api/v1/write: 3.50 samples/s failing"]
    assert "no remote_write queue" in judge_prometheus.remote_write_problems([], vector(1000), [], 60)[0]
    for bad in ("NaN", "+Inf", "-Inf", "x"):
        with pytest.raises(ValueError):
            vector(bad)


# --------------------------------------------------------------------------- OpenStack and drift


def servers(name: str) -> list[openstack_api.Server]:
    return openstack_api.parse_servers(sample(f"openstack/{name}"),
                                       openstack_api.parse_flavors(sample("openstack/nova_flavors_detail_v2.1")))


def test_openstack_servers_both_microversions():
    old, new = servers("nova_servers_detail_v2.1")[0], servers("nova_servers_detail_v2.100")[0]
    assert old.flavor == new.flavor == "m1.tiny"  # by id (2.1) and by original_name (2.47+)
    assert old.status == "ACTIVE" and old.az == "us-west" and old.addresses[0] == "192.168.1.30"
    node = Node("new-server-test", "agent", kind="vm")
    assert judge_openstack.active_problem([old], node, "the VM project") is None
    stopped = openstack_api.Server(**{**old.__dict__, "status": "SHUTOFF"})
    assert judge_openstack.active_problem([stopped], node, "x") == "server new-server-test is SHUTOFF, expected ACTIVE"
    assert judge_openstack.active_problem([], node, "the VM project") == "no server new-server-test in the VM project"
    assert judge_openstack.flavor_problem(old, node, Expectations()) == (
        "new-server-test has flavor m1.tiny, expected m2.2xlarge")
    assert openstack_api.attached_devices(sample("openstack/nova_os_volume_attachments")) == ["/dev/sdc", "/dev/sdb"]
    assert openstack_api.attached_devices(sample("openstack/nova_os_volume_attachments_v2.89")) == [
        "/dev/sdc", "/dev/sdb"]


def test_master_azs_and_drift():
    base = servers("nova_servers_detail_v2.1")[0]
    masters = [Node(f"alimesos0{i}", "master") for i in (1, 2, 3)]
    zones = ("cern-geneva-a", "cern-geneva-b", "cern-geneva-c")
    good = [openstack_api.Server(**{**base.__dict__, "name": m.name, "az": z}) for m, z in zip(masters, zones,
                                                                                                 strict=True)]
    assert judge_openstack.master_az_problems(good, masters, zones) == []
    wrong = [*good[:2], openstack_api.Server(**{**good[2].__dict__, "az": "cern-geneva-a"})]
    assert judge_openstack.master_az_problems(wrong, masters, zones) == [
        "masters not in distinct availability zones: alimesos01, alimesos03 share cern-geneva-a"]
    listed = [openstack_api.Server(**{**base.__dict__, "name": n}) for n in
              ["alibuild01", "alibuild02", "alibuild99", "alimesos01", "alijenkins01"]]
    assert judge_openstack.drift_problems(listed, ["alibuild01", "alibuild02", "alibuild03"],
                                        ["alibuild01", "alibuild02"], ["alibuild*"]) == [
        "in OpenStack but not a Nomad node: alibuild99", "in OpenStack but not in the inventory: alibuild99",
        "a Nomad node but not in OpenStack: alibuild03"]


# --------------------------------------------------------------------------- outcomes on fake snapshots


def test_cluster_checks_go_to_one_worker():
    assert scope_of("checks/cluster_nomad.py::agent.nomad.ready[alibuild01]") == "cluster"
    assert scope_of("checks/cluster_apis.py::api.nomad.reachable[cluster]") == "cluster"
    assert scope_of("checks/agent.py::agent.units.docker[alibuild01]") == "alibuild01"


def test_unusable_apis_block_their_checks_and_nothing_passes():
    results = run_checks(unusable_snapshots("172.30.0.11"), inventory(apis()), through_fixtures=True)
    assert results["api.nomad.reachable[cluster]"].outcome == "failed"
    assert results["api.consul.reachable[cluster]"].outcome == "error"
    assert "set CONSUL_CACERT" in results["api.consul.reachable[cluster]"].message
    for key in ("cluster.nomad.leader[cluster]", "agent.nomad.ready[alibuild01]", "cluster.consul.members[cluster]",
                "master.vault.unsealed[alimesos01]", "cluster.drift.openstack-vs-nomad[cluster]"):
        assert results[key].outcome == "blocked", (key, results[key])
    assert "blocked by api.nomad.reachable" in results["cluster.nomad.leader[cluster]"].message
    apis_checks = {k: r for k, r in results.items() if not k.startswith(("node.openstack", "cluster.openstack",
                                                                          "agent.openstack", "api.openstack"))}
    assert not [k for k, r in apis_checks.items() if r.outcome == "passed"]


def test_one_master_that_does_not_answer_fails_its_own_checks_only():
    vault = VaultSnapshot()
    active = vault_api.MasterVault(vault_api.Health(200, True, False, False), vault_api.Leader(True, "https://a/"))
    standby = vault_api.MasterVault(vault_api.Health(429, True, False, True), vault_api.Leader(True, "https://a/"))
    vault.masters = PerNode("Vault", {MASTERS[0]: active, MASTERS[1]: standby,
                                      MASTERS[2]: ApiError("unreachable", "Vault at https://c:8200 does not answer")})
    vault.ha_status = [vault_api.HaNode(m, i == 0) for i, m in enumerate(MASTERS)]
    run = run_checks
    snaps: dict[str, Any] = {"vault": vault}
    out = {k: r for k, r in run(_with_others(snaps), inventory(apis())).items() if ".vault." in k}
    assert out[f"master.vault.unsealed[{MASTERS[2]}]"].outcome == "failed"
    assert out[f"master.vault.unsealed[{MASTERS[0]}]"].outcome == "passed"
    assert out["cluster.vault.one-active[cluster]"].outcome == "failed"  # "no answer" is a verdict
    vault.masters.values[MASTERS[2]] = ApiError("protocol", "Vault at https://c:8200: GET /v1/sys/health: ...")
    out = {k: r for k, r in run(_with_others(snaps), inventory(apis())).items() if ".vault." in k}
    assert out[f"master.vault.unsealed[{MASTERS[2]}]"].outcome == "error"
    assert out["cluster.vault.one-active[cluster]"].outcome == "error"  # a garbled answer tells nothing


def test_a_sealed_master_fails_the_ha_check_and_its_503_on_sys_leader_is_no_error():
    vault = VaultSnapshot()
    leader = vault_api.Leader(True, "https://a/")
    sealed_leader = ApiError("status", "Vault at https://c:8200: GET /v1/sys/leader: HTTP 503", status=503)
    vault.masters = PerNode("Vault", {
        MASTERS[0]: vault_api.MasterVault(vault_api.Health(200, True, False, False), leader),
        MASTERS[1]: vault_api.MasterVault(vault_api.Health(429, True, False, True), leader),
        MASTERS[2]: vault_api.MasterVault(vault_api.Health(503, True, True, True), sealed_leader)})
    vault.ha_status = [vault_api.HaNode(m, i == 0) for i, m in enumerate(MASTERS[:2])]
    out = run_checks(_with_others({"vault": vault}), inventory(apis()))
    assert out["cluster.vault.ha[cluster]"].outcome == "failed"
    assert f"not serving in the HA cluster: {MASTERS[2]} (sealed)" in out["cluster.vault.ha[cluster]"].message
    vault.masters.values[MASTERS[2]] = vault_api.MasterVault(vault_api.Health(429, True, False, True), sealed_leader)
    out = run_checks(_with_others({"vault": vault}), inventory(apis()))
    assert out["cluster.vault.ha[cluster]"].outcome == "error"  # an unsealed standby that cannot say: no verdict


def _with_others(snaps: dict[str, Any]) -> dict[str, Any]:
    down = ApiError("unreachable", "not in this test")
    return {"nomad": NomadSnapshot(root=down), "consul": ConsulSnapshot(root=down),
            "vault": VaultSnapshot(root=down), "prometheus": PrometheusSnapshot(root=down),
            "openstack": openstack_snapshot(), **snaps}


def test_maintenance_agent_failed_in_consul_is_ignored_by_the_members_check():
    consul = ConsulSnapshot()
    consul.members = [*members(("alibuild02", "failed", False), ("alibuild01", "alive", False))]
    inv = inventory(apis(), maintenance=(Maintenance("alibuild02", "disk swap", dt.date(2099, 1, 1)),))
    out = run_checks(_with_others({"consul": consul}), inv)
    assert out["cluster.consul.members[cluster]"].outcome == "passed"
    inv = inventory(apis(), maintenance=(Maintenance("alibuild02", "disk swap", dt.date(2000, 1, 1)),))  # expired
    out = run_checks(_with_others({"consul": consul}), inv)
    assert out["cluster.consul.members[cluster]"].outcome == "failed"
