"""The blast radius counted cluster-wide from fake Nomad, Consul and Vault APIs (real local HTTP servers answering
with the documented samples), and the drain's ownership: a drain of ours names us in its Meta, leaves system jobs
alone, is never cancelled, and a human's drain or ineligibility is never taken over or undone."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from acceptance.inventory import Inventory, Maintenance, Node, RemediationSettings
from remediation.blast import Unhealthy, count_unhealthy, past_limit
from remediation.clients import Api, write_config
from remediation.drains import Nomad, drain_until_idle
from remediation.model import ActionFailed, NeedsHuman, Progress

from .test_api_support import MASTERS, FakeApi, Fakes, Reply, apis, fake_cluster, inventory, sample

TOKEN = "remediation-token-0123456789"
TODAY = dt.date(2030, 6, 1)
OWNER = {"run_id": "20300601-120000-abcd", "user": "builder", "host": "runner01", "check": "agent.cmdline"}
HUMAN_ACCESSOR = "4e1b7ce1-f8aa-d7ff-09f1-55c3a0fd3988"


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    for var in ("NOMAD_REMEDIATION_TOKEN", "CONSUL_REMEDIATION_TOKEN", "VAULT_REMEDIATION_TOKEN"):
        monkeypatch.setenv(var, TOKEN)
    for service in ("NOMAD", "CONSUL", "VAULT"):
        for what in ("CACERT", "CLIENT_CERT", "CLIENT_KEY"):
            monkeypatch.delenv(f"{service}_{what}", raising=False)
    with fake_cluster() as f:
        yield f


def inv_of(fakes: Fakes, maintenance: tuple[Maintenance, ...] = ()) -> Inventory:
    return inventory(apis(nomad=fakes.nomad.url(), consul=fakes.consul.url(), vault=fakes.vault.url()),
                     maintenance=maintenance)


def masters_of(inv: Inventory) -> list[Node]:
    return [n for n in inv.nodes if n.role == "master"]


def agents_of(inv: Inventory) -> list[Node]:
    return [n for n in inv.nodes if n.role == "agent"]


def nomad_of(fakes: Fakes) -> Nomad:
    inv = inv_of(fakes)
    return Nomad(Api(write_config("nomad", inv, masters_of(inv))))


def stub(name: str, **changes: Any) -> dict[str, Any]:
    node: dict[str, Any] = sample("nomad/nodes_list")[0]
    node.update(ID=f"id-{name}", Name=name, Status="ready", Drain=False, SchedulingEligibility="eligible")
    node.update(changes)
    return node


def posts(api: FakeApi) -> list[tuple[str, Any]]:
    """(path, JSON body) of what was POSTed (the fake records a POST's body in a header of its own)."""
    return [(path, json.loads(h["x-test-body"])) for path, h in api.requests() if "x-test-body" in h]


# --------------------------------------------------------------------------- counting


def test_healthy_cluster_counts_nothing(fakes: Fakes) -> None:
    inv = inv_of(fakes)
    u = count_unhealthy(inv, masters_of(inv), agents_of(inv), today=TODAY)
    assert u == Unhealthy()
    assert past_limit(u, RemediationSettings(), set(), set()) is None
    vault_asked = [h for _, h in fakes.vault.requests()]
    assert vault_asked and not any("x-vault-token" in h for h in vault_asked), "sys/health needs no token"
    assert all(h.get("x-nomad-token") == TOKEN for _, h in fakes.nomad.requests())


def test_every_kind_of_unhealthy_agent_is_counted(fakes: Fakes) -> None:
    names = ["alibuild01", "alibuild02", "alimetal01", "alibuild04", "alibuild05", "alibuild06", "alibuild07"]
    fakes.nomad.set("/v1/nodes", Reply.json([
        stub("alibuild01", Status="down"),
        stub("alibuild02", Drain=True, SchedulingEligibility="ineligible"),
        stub("alimetal01", SchedulingEligibility="ineligible"),
        # alibuild04: not in Nomad at all
        stub("alibuild05"),  # in maintenance
        stub("alibuild06"),  # its maintenance has expired
        stub("alibuild07", Status="down", CreateIndex=1), stub("alibuild07", ID="id-new", CreateIndex=9),  # reinstalled
    ]))
    held = (Maintenance("alibuild05", "disk swap", TODAY), Maintenance("alibuild06", "done", TODAY - dt.timedelta(1)))
    inv = inv_of(fakes, maintenance=held)
    agents = [Node(n, "agent", address=f"127.0.1.{i + 1}") for i, n in enumerate(names)]
    u = count_unhealthy(inv, masters_of(inv), agents, today=TODAY)
    assert u.unknown == [] and u.masters == {}
    assert u.agents == {"alibuild01": "Nomad status down", "alibuild02": "draining in Nomad",
                        "alimetal01": "ineligible in Nomad", "alibuild04": "not a Nomad node",
                        "alibuild05": f"in maintenance until {TODAY.isoformat()}"}
    refusal = past_limit(u, RemediationSettings(), set(), set())
    assert refusal is not None and refusal.startswith(
        "0 masters and 5 agents are unhealthy cluster-wide (limits 1 and 4): ")
    assert "alibuild04 (not a Nomad node)" in refusal and refusal.endswith("act on nothing, a human must look")


def test_a_master_whose_consul_server_is_unhealthy(fakes: Fakes) -> None:
    body = sample("consul/operator_autopilot_health")
    base = body["Servers"][0]
    body["Servers"] = [dict(base, Name=m, Address=f"127.0.0.{i + 1}:8300", Voter=True, Healthy=m != MASTERS[1],
                            SerfStatus="failed" if m == MASTERS[1] else "alive") for i, m in enumerate(MASTERS)]
    body["Healthy"] = False
    fakes.consul.set("/v1/operator/autopilot/health", Reply.json(body, 429))  # autopilot's "someone unhealthy"
    inv = inv_of(fakes)
    u = count_unhealthy(inv, masters_of(inv), agents_of(inv), today=TODAY)
    assert u.unknown == [] and u.agents == {}
    assert u.masters == {MASTERS[1]: "Consul server failed, unhealthy"}


def test_a_sealed_and_an_uninitialised_vault(fakes: Fakes) -> None:
    fakes.vault.set("/v1/sys/health", Reply.json(sample("openbao/sys_health_503_sealed"), 503), master=1)
    fakes.vault.set("/v1/sys/health", Reply.json(sample("openbao/sys_health_501_not_initialized"), 501), master=2)
    inv = inv_of(fakes)
    u = count_unhealthy(inv, masters_of(inv), agents_of(inv), today=TODAY)
    assert u.masters == {MASTERS[1]: "Vault sealed", MASTERS[2]: "Vault not initialised"}
    assert past_limit(u, RemediationSettings(), set(), set()) is not None


def test_a_nomad_server_missing_and_a_master_in_maintenance(fakes: Fakes) -> None:
    body = sample("nomad/operator_autopilot_health")
    base = body["Servers"][0]
    body["Servers"] = [dict(base, Name=f"{m}.global", Address=f"127.0.0.{i + 1}:4647", Voter=True, Healthy=True)
                       for i, m in enumerate(MASTERS[:2])]
    fakes.nomad.set("/v1/operator/autopilot/health", Reply.json(body))
    inv = inv_of(fakes, maintenance=(Maintenance(MASTERS[0], "kernel update", TODAY),))
    u = count_unhealthy(inv, masters_of(inv), agents_of(inv), today=TODAY)
    assert u.masters == {MASTERS[0]: f"in maintenance until {TODAY.isoformat()}",
                         MASTERS[2]: "Nomad: not a raft server"}


@pytest.mark.parametrize("answer", [Reply.text("Internal Server Error", 500),
                                    Reply(200, b"<html><body>proxy login</body></html>",
                                          {"Content-Type": "text/html"})], ids=["500", "html"])
def test_nomad_unreadable_is_unknown_and_refuses(fakes: Fakes, answer: Reply) -> None:
    fakes.nomad.set_all(lambda path, route: answer)
    inv = inv_of(fakes)
    u = count_unhealthy(inv, masters_of(inv), agents_of(inv), today=TODAY)
    assert len(u.unknown) == 2 and all(w.startswith("Nomad") for w in u.unknown), u.unknown
    assert u.agents == {} and u.masters == {}
    refusal = past_limit(u, RemediationSettings(), set(), set())
    assert refusal is not None and refusal.startswith("cannot count the unhealthy nodes (Nomad")
    assert refusal.endswith("): act on nothing") and TOKEN not in refusal


def test_a_shard_sees_past_the_limit_with_the_apis_view(fakes: Fakes) -> None:
    """This run (a shard, or --nodes) fails checks on one master only; the APIs say another master is unhealthy:
    two masters, past the limit of one."""
    fakes.vault.set("/v1/sys/health", Reply.json(sample("openbao/sys_health_503_sealed"), 503), master=2)
    inv = inv_of(fakes)
    u = count_unhealthy(inv, masters_of(inv), agents_of(inv), today=TODAY)
    settings = RemediationSettings()
    assert past_limit(u, settings, set(), set()) is None, "one master alone is within the limit"
    assert past_limit(u, settings, {MASTERS[2]}, set()) is None, "the same master both ways counts once"
    refusal = past_limit(u, settings, {MASTERS[0]}, {"alibuild01"})
    assert refusal == (f"2 masters and 1 agent are unhealthy cluster-wide (limits 1 and 4): {MASTERS[0]} (fails "
                       f"checks in this run), {MASTERS[2]} (Vault sealed), alibuild01 (fails checks in this run): "
                       "act on nothing, a human must look")


def test_past_limit_shortens_a_long_list() -> None:
    u = Unhealthy(agents={f"alibuild{i:02}": "Nomad status down; " + "x" * 200 for i in range(10)})
    refusal = past_limit(u, RemediationSettings(), set(), set())
    assert refusal is not None and refusal.count("alibuild") == 8 and "and 2 more" in refusal
    assert len(refusal) < 1200


# --------------------------------------------------------------------------- drains and their owner


def read(name: str = "alibuild01", **changes: Any) -> dict[str, Any]:
    node: dict[str, Any] = sample("nomad/node_read")
    node.update(ID=f"id-{name}", Name=name, Status="ready", Drain=False, DrainStrategy=None, LastDrain=None,
                SchedulingEligibility="eligible", Events=[{"Message": "Node registered", "Subsystem": "Cluster"}])
    node.update(changes)
    return node


def ours(status: str) -> dict[str, Any]:
    return {"AccessorID": "a1", "Meta": {"drained_by": Nomad.OWNER, **OWNER}, "Status": status}


def humans(status: str) -> dict[str, Any]:
    return {"AccessorID": HUMAN_ACCESSOR, "Meta": {"message": "disk swap INC0123"}, "Status": status}


STRATEGY = {"Deadline": 3600_000_000_000, "IgnoreSystemJobs": True, "ForceDeadline": "2030-06-01T13:00:00Z"}


def events(*messages: str) -> list[dict[str, Any]]:
    return [{"Message": m, "Subsystem": "Drain" if m.startswith("Node drain") else "Cluster"}
            for m in ("Node registered", *messages)]


CASES = {
    "our drain in progress": (read(Drain=True, DrainStrategy=STRATEGY, SchedulingEligibility="ineligible",
                                   LastDrain=ours("draining"), Events=events("Node drain strategy set")), True),
    "our drain complete": (read(SchedulingEligibility="ineligible", LastDrain=ours("complete"),
                                Events=events("Node drain strategy set", "Node drain complete")), True),
    "a human's drain": (read(Drain=True, DrainStrategy=STRATEGY, SchedulingEligibility="ineligible",
                             LastDrain=humans("draining")), False),
    "a human's eligibility -disable": (read(SchedulingEligibility="ineligible",
                                            Events=events("Node marked as ineligible for scheduling")), False),
    "a human's -disable after ours was re-enabled": (read(
        SchedulingEligibility="ineligible", LastDrain=ours("complete"),
        Events=events("Node drain strategy set", "Node drain complete", "Node marked as eligible for scheduling",
                      "Node marked as ineligible for scheduling")), False),
    "a human's drain after ours completed": (read(Drain=True, DrainStrategy=STRATEGY,
                                                  SchedulingEligibility="ineligible", LastDrain=humans("draining"),
                                                  Events=events("Node drain strategy set", "Node drain complete",
                                                                "Node drain strategy set")), False),
    "a human's completed drain after ours": (read(SchedulingEligibility="ineligible", LastDrain=humans("complete"),
                                                  Events=events("Node drain complete")), False),
    "our drain cancelled by a human": (read(SchedulingEligibility="ineligible",
                                            LastDrain=dict(ours("canceled"), AccessorID=HUMAN_ACCESSOR),
                                            Events=events("Node drain strategy set", "Node drain disabled")), False),
}


@pytest.mark.parametrize("case", CASES)
def test_drained_by_us(case: str) -> None:
    node, expected = CASES[case]
    assert Nomad.drained_by_us(node) is expected


def test_drain_leaves_system_jobs_and_names_its_owner(fakes: Fakes) -> None:
    fakes.nomad.set("/v1/node/id-alibuild01/drain", Reply.json(sample("nomad/node_drain")))
    nomad_of(fakes).drain("id-alibuild01", 21600, OWNER)
    [(path, body)] = posts(fakes.nomad)
    assert path == "/v1/node/id-alibuild01/drain"
    assert body == {"DrainSpec": {"Deadline": 21600 * 10**9, "IgnoreSystemJobs": True},
                    "Meta": {"drained_by": "alice-acceptance", **OWNER}}


def test_reenable_only_our_complete_drain(fakes: Fakes) -> None:
    fakes.nomad.set("/v1/node/id-alibuild01/eligibility", Reply.json(sample("nomad/node_eligibility")))
    nomad = nomad_of(fakes)
    with pytest.raises(ActionFailed, match="still draining"):
        nomad.reenable("id-alibuild01", CASES["our drain in progress"][0])
    with pytest.raises(NeedsHuman, match=f"being drained in Nomad, set by .*disk swap INC0123.*{HUMAN_ACCESSOR}"):
        nomad.reenable("id-alibuild01", CASES["a human's drain"][0])
    with pytest.raises(NeedsHuman, match="eligibility -disable"):
        nomad.reenable("id-alibuild01", CASES["a human's eligibility -disable"][0])
    with pytest.raises(NeedsHuman, match="eligibility -disable` after the last drain"):
        nomad.reenable("id-alibuild01", CASES["a human's -disable after ours was re-enabled"][0])
    assert posts(fakes.nomad) == [], "nothing sent for a drain in progress or a node that is not ours"
    assert "nothing to do" in nomad.reenable("id-alibuild01", read())
    said = nomad.reenable("id-alibuild01", CASES["our drain complete"][0])
    assert "re-enabled" in said
    assert posts(fakes.nomad) == [("/v1/node/id-alibuild01/eligibility",  # python-nomad names the node twice
                                   {"Eligibility": "eligible", "NodeID": "id-alibuild01"})]


def allocation(job: str, kind: str | None, status: str = "running", with_job: bool = True) -> dict[str, Any]:
    a: dict[str, Any] = sample("nomad/node_allocations")[0]
    a.update(ID=f"alloc-{job}", JobID=job, Name=f"{job}.group[0]", ClientStatus=status, Namespace="default")
    a["Job"] = dict(a["Job"], ID=job, Type=kind) if with_job else None
    return a


def node_routes(fakes: Fakes, node: dict[str, Any], allocs: list[dict[str, Any]]) -> None:
    fakes.nomad.set("/v1/node/id-alibuild01", Reply.json(node))
    fakes.nomad.set("/v1/node/id-alibuild01/allocations", Reply.json(allocs))
    fakes.nomad.set("/v1/node/id-alibuild01/drain", Reply.json(sample("nomad/node_drain")))
    fakes.nomad.set("/v1/job/metrics-sysbatch", Reply.json({"ID": "metrics-sysbatch", "Type": "sysbatch"}))


def test_drain_until_idle_ignores_system_allocations_but_waits_for_sysbatch(fakes: Fakes) -> None:
    """IgnoreSystemJobs spares system jobs only: Nomad's drainer waits for sysbatch ones, so must a reboot."""
    node_routes(fakes, read(), [
        allocation("node-exporter", "system"), allocation("webapp", "service", status="complete"),
        allocation("metrics-sysbatch", None, with_job=False),  # the job's type read from the job, once
        dict(allocation("metrics-sysbatch", None, with_job=False), ID="alloc-2")])
    said: list[str] = []
    agent = Node("alibuild01", "agent", address="127.0.1.1")
    still = drain_until_idle(nomad_of(fakes), agent, 21600, 0, Progress(say=said.append), OWNER)
    assert [a.split("/")[0] for a in still] == ["metrics-sysbatch", "metrics-sysbatch"]
    [(path, body)] = posts(fakes.nomad)
    assert path.endswith("/drain") and body["DrainSpec"]["IgnoreSystemJobs"] is True
    assert body["Meta"]["drained_by"] == Nomad.OWNER and body["Meta"]["check"] == OWNER["check"]
    assert [p for p, _ in fakes.nomad.requests() if p.startswith("/v1/job/")] == [
        "/v1/job/metrics-sysbatch?namespace=default"]
    assert any("draining in Nomad" in s for s in said)


def test_drain_until_idle_returns_what_still_runs(fakes: Fakes) -> None:
    node_routes(fakes, read(), [allocation("node-exporter", "system"), allocation("ci-mesosci-slc9", "batch"),
                                allocation("repo", "service")])
    agent = Node("alibuild01", "agent", address="127.0.1.1")
    left = drain_until_idle(nomad_of(fakes), agent, 21600, 0, Progress(), OWNER, allowed_jobs=("repo",))
    assert left == ["ci-mesosci-slc9/ci-mesosci-slc9.group[0]"]


@pytest.mark.parametrize("case", ["a human's drain", "a human's eligibility -disable",
                                  "a human's -disable after ours was re-enabled"])
def test_drain_until_idle_never_takes_over_a_humans_drain(fakes: Fakes, case: str) -> None:
    node_routes(fakes, CASES[case][0], [allocation("ci-mesosci-slc9", "batch")])
    agent = Node("alibuild01", "agent", address="127.0.1.1")
    with pytest.raises(NeedsHuman, match="not ours to take over"):
        drain_until_idle(nomad_of(fakes), agent, 21600, 0, Progress(), OWNER)
    assert posts(fakes.nomad) == []


def test_drain_until_idle_waits_on_our_own_drain_again(fakes: Fakes) -> None:
    """A run that finds its suite's drain (an earlier run's, still on) waits on it: no second drain, no cancel."""
    node_routes(fakes, CASES["our drain in progress"][0], [allocation("node-exporter", "system")])
    agent = Node("alibuild01", "agent", address="127.0.1.1")
    assert drain_until_idle(nomad_of(fakes), agent, 21600, 0, Progress(), OWNER) == []
    assert posts(fakes.nomad) == []

