from __future__ import annotations

from acceptance.discovery import Server, discover
from acceptance.inventory import load_inventory

from .conftest import EXAMPLE

DISCOVERY = """\
discovery:
  openstack:
    - {project: "ALICE Release Testing", role: agent, kind: vm, pattern: "alibuild*"}
    - {project: "ALICE Release Testing - physical nodes", role: agent, kind: metal, pattern: "alimetal*"}
"""

LISTINGS = {
    "ALICE Release Testing": [
        Server("alimesos01", "10.0.0.1"),               # a master: no rule matches it here
        Server("alibuild01", "10.0.0.99"),              # static entry wins
        Server("alibuild07", "10.0.1.7", az="cern-geneva-b", flavor="m2.2xlarge", status="ACTIVE"),
        Server("alijenkins01", "10.0.0.50"),            # out of scope
    ],
    "ALICE Release Testing - physical nodes": [Server("alimetal02", "10.0.2.2")],
}


def fake_lister(calls):
    def lister(inventory, project):
        calls.append(project)
        return LISTINGS[project]
    return lister


def test_merge_static_wins_and_patterns_roles_kinds(write_inventory):
    inv = load_inventory(write_inventory(EXAMPLE + DISCOVERY))
    calls: list[str] = []
    nodes = {n.name: n for n in discover(inv, fake_lister(calls))}
    assert calls == ["ALICE Release Testing", "ALICE Release Testing - physical nodes"]
    assert nodes["alibuild01"].address == "172.30.1.1" and nodes["alibuild01"].source == "static"
    assert nodes["alibuild07"].kind == "vm" and nodes["alibuild07"].source == "openstack"
    assert nodes["alibuild07"].project == "ALICE Release Testing" and nodes["alibuild07"].az == "cern-geneva-b"
    assert nodes["alimetal02"].kind == "metal" and nodes["alimetal02"].role == "agent"
    assert "alijenkins01" not in nodes
    assert [n for n in nodes if n.startswith("alimesos")] == ["alimesos01"]


def test_no_discovery_section_means_no_listing(write_inventory):
    inv = load_inventory(write_inventory())
    calls: list[str] = []
    assert [n.name for n in discover(inv, fake_lister(calls))] == [n.name for n in inv.nodes]
    assert calls == []


def test_discovered_servers_that_cannot_be_nodes_are_left_out_with_a_warning(write_inventory):
    inv = load_inventory(write_inventory(EXAMPLE + DISCOVERY))
    hostile = [Server("alibuild99;touch pwned;", "172.30.1.99"), Server("alibuild98", "-oProxyCommand=touch pwned"),
               Server("alibuild97\n", "172.30.1.97"), Server("alibuild96", "172.30.1.96")]
    warnings: list[str] = []
    nodes = {n.name for n in discover(inv, lambda inventory, project: hostile, warnings)}
    assert "alibuild96" in nodes
    assert not any(n.startswith(("alibuild99", "alibuild98", "alibuild97")) for n in nodes)
    assert len(warnings) == 3 and all("a server was left out" in w for w in warnings)
