"""The cluster checks' logic fed with the documented sample responses (../shared/reference/api), and the
cluster checks end to end with fake snapshots (no network)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from acceptance.clients import consul_api, nomad_api, openstack_api, prometheus_api, vault_api
from acceptance.clients.errors import ApiError
from acceptance.clients.snapshot import Snapshot
from acceptance.inventory import Expectations, Node
from acceptance.scheduling import scope_of
from tests.reference import API

from .conftest import EXAMPLE
from .fakessh import FakeNodes

REFERENCE = API


def sample(name: str) -> Any:
    path = REFERENCE / f"{name}.json"
    return copy.deepcopy(json.loads(path.read_text())["body"])


# --------------------------------------------------------------------------- Nomad


def test_nomad_samples_healthy_servers():
    raft = sample("nomad/operator_raft_configuration")
    members = sample("nomad/agent_members")
    # the documented members sample has one server; name the raft servers after members we make alive
    members["Members"] = [dict(members["Members"][0], Name=s["Node"], Addr=s["Address"].split(":")[0])
                          for s in raft["Servers"]]
    assert nomad_api.peers_problems(raft, members, 3) == []
    assert nomad_api.failure_tolerance(raft, members)[0] == 1
    assert nomad_api.version_problems(members) == []
    assert nomad_api.leader_problems(sample("nomad/status_leader"), sample("nomad/status_peers")) == []


def test_nomad_server_down_and_versions():
    raft = sample("nomad/operator_raft_configuration")
    base = sample("nomad/agent_members")["Members"][0]
    members = {"Members": [dict(base, Name=s["Node"], Addr=s["Address"].split(":")[0]) for s in raft["Servers"]]}
    members["Members"][1]["Status"] = "failed"
    members["Members"][2]["Tags"] = dict(base["Tags"], build="1.9.8")
    problems = nomad_api.peers_problems(raft, members, 3)
    assert problems == ["server not alive: node2.global (failed)"]
    tolerance, detail = nomad_api.failure_tolerance(raft, members)
    assert tolerance == 0 and "2 of 3 voters alive, quorum 2" in detail
    assert "different versions" in nomad_api.version_problems(members)[0]
    assert nomad_api.leader_problems("", []) == ["no Nomad leader elected"]


def test_nomad_node_ready_drain_eligibility():
    nodes = sample("nomad/nodes_list")
    node = nodes[0]
    name = node["Name"]
    assert nomad_api.node_problems(nodes, name, None) == []
    assert nomad_api.node_problems(nodes, "alibuild09", None) == ["alibuild09 is not a Nomad node (not registered)"]
    assert nomad_api.node_problems(nodes, "other-name", node["Address"]) == []  # found by address
    node.update(Drain=True, SchedulingEligibility="ineligible")
    assert "draining" in nomad_api.node_problems(nodes, name, None)[0]
    assert nomad_api.node_problems(nodes, name, None, drain_allowed=True) == []
    node.update(Drain=False, Status="down")
    problems = nomad_api.node_problems(nodes, name, None)
    assert any("is down, expected ready" in p for p in problems) and any("ineligible" in p for p in problems)


def test_nomad_jobs_running():
    jobs = sample("nomad/jobs_list")
    allocs = sample("nomad/allocations_list")
    assert allocs[0]["JobID"] == "example" and allocs[0]["ClientStatus"] == "running"
    assert nomad_api.jobs_problems(jobs, allocs, ["example"]) == []
    assert nomad_api.jobs_problems(jobs, allocs, ["repo"]) == ["repo: no such job"]
    allocs[0]["ClientStatus"] = "lost"
    assert nomad_api.jobs_problems(jobs, allocs, ["example"]) == ["example: no allocation running (1 wanted, 1 queued)"]


# --------------------------------------------------------------------------- Consul


def consul_members(raft: dict[str, Any]) -> list[dict[str, Any]]:
    base = sample("consul/agent_members")[0]
    return [dict(base, Name=s["Node"], Addr=s["Address"].split(":")[0]) for s in raft["Servers"]]


def test_consul_samples():
    raft = sample("consul/operator_raft_configuration")
    members = consul_members(raft)
    assert consul_api.voters_problems(raft, members, 3) == []
    assert consul_api.failure_tolerance(raft, members)[0] == 1
    assert consul_api.members_problems(members, ["alice", "bob"]) == []
    assert consul_api.leader_problems(sample("consul/status_leader"), sample("consul/status_peers")) == []
    # the stored critical sample is the 'passing' one (same shape): nothing critical in it
    assert consul_api.critical_problems(sample("consul/health_state_critical")) == []


def test_consul_leader_killed_and_one_more_stopped():
    raft = sample("consul/operator_raft_configuration")
    members = consul_members(raft)
    members[0]["Status"] = 4  # failed
    members[1]["Status"] = 4
    assert consul_api.failure_tolerance(raft, members)[0] == -1
    assert "voter not alive: alice (failed), bob (failed)" in consul_api.voters_problems(raft, members, 3)
    assert consul_api.leader_problems("", []) == ["no Consul leader elected"]


def test_consul_critical_and_job_services_and_dns():
    critical = sample("consul/health_state_critical")
    for c in critical:
        c["Status"] = "critical"
    assert consul_api.critical_problems(critical)[0].startswith("2 critical health check(s): foobar: Serf Health")
    entries = sample("consul/health_service")
    assert consul_api.job_services({"redis": entries}) == []  # not registered by Nomad
    entries[0]["Service"]["ID"] = "_nomad-task-5457f16d-redis"
    assert consul_api.job_services({"redis": entries}) == ["redis"]
    answers = {"redis.service.consul": consul_api.DnsAnswer("redis.service.consul", ("10.1.10.12",)),
               "vault.service.consul": consul_api.DnsAnswer("vault.service.consul", (), "NXDOMAIN")}
    assert consul_api.dns_problems(answers) == ["vault.service.consul: NXDOMAIN"]


# --------------------------------------------------------------------------- Vault / OpenBao


@pytest.mark.parametrize("flavour", ["vault", "openbao"])
def test_vault_health_states(flavour):
    def health(name: str) -> dict[str, Any]:
        status = int(name.split("_")[2])
        return {"status": status, "body": sample(f"{flavour}/{name}")}

    active, standby = health("sys_health_200_active"), health("sys_health_429_standby")
    sealed, uninit = health("sys_health_503_sealed"), health("sys_health_501_not_initialized")
    assert [vault_api.state(h) for h in (active, standby, sealed, uninit)] == [
        "active", "standby", "sealed", "not initialised"]
    assert vault_api.unsealed_problem(active) is None and vault_api.unsealed_problem(standby) is None
    assert "sealed" in (vault_api.unsealed_problem(sealed) or "")
    assert vault_api.initialised_problem(sealed) is None
    assert vault_api.initialised_problem(uninit) == "Vault is not initialised"
    assert vault_api.one_active_problems({"m1": "active", "m2": "standby", "m3": "standby"}) == []
    assert vault_api.one_active_problems({"m1": "sealed", "m2": "standby", "m3": "standby"}) == [
        "0 active Vault nodes, expected exactly 1", "not a standby: m1 (sealed)"]


def test_vault_ha_status_and_leader():
    leader = sample("openbao/sys_leader_ha_raft")
    ha = sample("openbao/sys_ha_status")
    assert vault_api.ha_problems({"m1": leader, "m2": leader, "m3": leader}, ha, 3) == []
    # OpenBao also answers with lower-case "nodes" and under "data"
    assert len(vault_api.ha_nodes({"data": {"nodes": ha["Nodes"]}})) == 3
    disabled = sample("openbao/sys_leader_ha_disabled")
    problems = vault_api.ha_problems({"m1": leader, "m2": disabled}, {"Nodes": ha["Nodes"][:2]}, 3)
    assert problems[0] == "HA is not enabled on m2" and "lists 2 nodes, expected 3" in problems[1]


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_targets_and_health():
    data = sample("prometheus/targets")["data"]  # the snapshot keeps the envelope's data
    prom = Node("localhost", "master", address="127.0.0.1")
    assert prometheus_api.targets_problems(data, ["prometheus"], [prom]) == []
    assert prometheus_api.targets_problems(data, ["nomad"], []) == ["no target of job 'nomad'"]
    missing = Node("alibuild01", "agent", address="10.0.0.1")
    assert "alibuild01: not scraped" in prometheus_api.targets_problems(data, [], [missing])[0]
    data["activeTargets"][0].update(health="down", lastError="connection refused")
    assert prometheus_api.targets_problems(data, ["prometheus"], []) == [
        "prometheus/127.0.0.1:9090 down (connection refused)"]
    # a 'node' label wins over the instance address (the lab labels targets with it)
    labelled = {"activeTargets": [{"labels": {"instance": "10.9.9.9:9100", "job": "node", "node": "alibuild01"},
                                   "health": "up"}]}
    assert prometheus_api.targets_problems(labelled, [], [missing]) == []
    assert prometheus_api.health_problems({"healthy": {"status": 200, "text": sample("prometheus/healthy")},
                                           "ready": {"status": 503, "text": sample("prometheus/ready_503_not_ready")}}
                                          ) == ["/-/ready answered 503 Service Unavailable"]


def vector(value: float, **labels: str) -> dict[str, Any]:
    body = sample("prometheus/query_instant_vector")["data"]
    body["result"] = [{"metric": labels, "value": [1435781451.781, str(value)]}]
    return dict(body)


def test_prometheus_remote_write():
    q = {"remote_name": "a32556", "url": "http://monit:9090/api/v1/write"}
    ok = prometheus_api.remote_write_problems(vector(0, **q), vector(1000), vector(995, **q), 60)
    assert ok == []
    lag = prometheus_api.remote_write_problems(vector(0, **q), vector(1000), vector(800, **q), 60, vector(50, **q))
    assert lag == ["http://monit:9090/api/v1/write: 200 s behind (limit 60 s, 50.0 samples/s retried)"]
    failing = prometheus_api.remote_write_problems(vector(3.5, **q), vector(1000), vector(999, **q), 60)
    assert failing == ["http://monit:9090/api/v1/write: 3.50 samples/s failing"]
    none = prometheus_api.remote_write_problems(None, vector(1000), {"resultType": "vector", "result": []}, 60)
    assert "no remote_write queue" in none[0]


# --------------------------------------------------------------------------- OpenStack and drift


def servers(name: str) -> list[openstack_api.Server]:
    return openstack_api.parse_servers(sample(f"openstack/{name}"),
                                       openstack_api.parse_flavors(sample("openstack/nova_flavors_detail_v2.1")))


def test_openstack_servers_both_microversions():
    old, new = servers("nova_servers_detail_v2.1")[0], servers("nova_servers_detail_v2.100")[0]
    assert old.flavor == new.flavor == "m1.tiny"  # by id (2.1) and by original_name (2.47+)
    assert old.status == "ACTIVE" and old.az == "us-west" and old.addresses[0] == "192.168.1.30"
    node = Node("new-server-test", "agent", kind="vm")
    assert openstack_api.active_problem([old], node, "the VM project") is None
    stopped = openstack_api.Server(**{**old.__dict__, "status": "SHUTOFF"})
    assert openstack_api.active_problem([stopped], node, "x") == "server new-server-test is SHUTOFF, expected ACTIVE"
    assert openstack_api.active_problem([], node, "the VM project") == "no server new-server-test in the VM project"
    assert openstack_api.flavor_problem(old, node, Expectations()) == (
        "new-server-test has flavor m1.tiny, expected m2.2xlarge")
    metal = Node("alimetal01", "agent", kind="metal")
    assert openstack_api.flavor_problem(
        openstack_api.Server(**{**old.__dict__, "flavor": "p1.dl7426795.S513-V-IP52"}), metal, Expectations()) is None
    assert openstack_api.attached_devices(sample("openstack/nova_os_volume_attachments")) == ["/dev/sdc", "/dev/sdb"]
    assert openstack_api.attached_devices(sample("openstack/nova_os_volume_attachments_v2.89")) == [
        "/dev/sdc", "/dev/sdb"]


def test_master_azs():
    base = servers("nova_servers_detail_v2.1")[0]
    masters = [Node(f"alimesos0{i}", "master") for i in (1, 2, 3)]
    zones = ("cern-geneva-a", "cern-geneva-b", "cern-geneva-c")
    good = [openstack_api.Server(**{**base.__dict__, "name": m.name, "az": z}) for m, z in zip(masters, zones,
                                                                                                 strict=True)]
    assert openstack_api.master_az_problems(good, masters, zones) == []
    wrong = [*good[:2], openstack_api.Server(**{**good[2].__dict__, "az": "cern-geneva-a"})]
    assert openstack_api.master_az_problems(wrong, masters, zones) == [
        "masters not in distinct availability zones: alimesos01, alimesos03 share cern-geneva-a"]


def test_drift():
    base = servers("nova_servers_detail_v2.1")[0]
    names = ["alibuild01", "alibuild02", "alibuild99", "alimesos01", "alijenkins01"]
    listed = [openstack_api.Server(**{**base.__dict__, "name": n}) for n in names]
    problems = openstack_api.drift_problems(listed, ["alibuild01", "alibuild02", "alibuild03"],
                                            ["alibuild01", "alibuild02"], ["alibuild*"])
    assert problems == ["in OpenStack but not a Nomad node: alibuild99",
                        "in OpenStack but not in the inventory: alibuild99",
                        "a Nomad node but not in OpenStack: alibuild03"]


# --------------------------------------------------------------------------- end to end with fake snapshots


def test_cluster_checks_go_to_one_worker():
    assert scope_of("checks/cluster_nomad.py::agent.nomad.ready[alibuild01]") == "cluster"
    assert scope_of("checks/cluster_vault.py::master.vault.unsealed[alimesos01]") == "cluster"
    assert scope_of("checks/agent.py::agent.units.docker[alibuild01]") == "alibuild01"


def test_unreachable_api_blocks_its_checks_and_never_passes(write_inventory, run_suite, tmp_path):
    down = ApiError("unreachable", "Nomad at https://172.30.0.11:4646 does not answer: connection refused")
    badca = ApiError("tls", "Consul at https://172.30.0.11:8500: TLS verification failed with CONSUL_CACERT=/x "
                            "— set CONSUL_CACERT to the cluster CA")
    snaps = {"nomad": Snapshot("nomad", root=down), "consul": Snapshot("consul", root=badca),
             "vault": Snapshot("vault", root=down), "prometheus": Snapshot("prometheus", root=down),
             "openstack": Snapshot("openstack", root=down)}
    result = run_suite(f"--inventory={write_inventory(EXAMPLE)}", "--role=cluster,agent",
                       plugin=FakeNodes({}, snapshots=snaps))
    assert result.ret == 1
    data = json.loads((tmp_path / "out" / "latest" / "summary.json").read_text())
    rec = {f"{r['check']}[{r['node']}]": r for r in data["records"]}
    assert rec["api.nomad.reachable[cluster]"]["outcome"] == "failed"
    assert rec["api.consul.reachable[cluster]"]["outcome"] == "error"
    assert "set CONSUL_CACERT" in rec["api.consul.reachable[cluster]"]["message"]
    assert rec["cluster.nomad.leader[cluster]"]["outcome"] == "blocked"
    assert rec["cluster.nomad.leader[cluster]"]["blocked_by"] == "api.nomad.reachable"
    assert rec["agent.nomad.ready[alibuild01]"]["outcome"] == "blocked"
    assert data["blocked_by"]["api.nomad.reachable[cluster]"] >= 2
    cluster_like = [r for r in data["records"] if r["check"].startswith(("cluster.", "api.", "agent.nomad"))]
    assert cluster_like and not [r for r in cluster_like if r["outcome"] == "passed"]
    assert {"name": "cluster", "role": "cluster"}.items() <= next(
        n for n in data["nodes"] if n["name"] == "cluster").items()


def test_cluster_pseudo_node_follows_targeting(write_inventory, run_suite):
    result = run_suite(f"--inventory={write_inventory(EXAMPLE)}", "--collect-only", "--nodes=alibuild01",
                       plugin=FakeNodes({}, snapshots={}))
    assert "[cluster]" not in result.out and "agent.nomad.ready[alibuild01]" in result.out
    result = run_suite(f"--inventory={write_inventory(EXAMPLE)}", "--collect-only", "--nodes=cluster",
                       plugin=FakeNodes({}, snapshots={}))
    assert "cluster.nomad.leader[cluster]" in result.out and "alibuild01]" not in result.out
