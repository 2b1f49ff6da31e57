"""Inventory: valid load with defaults; every bad input is one line (file, key, fix) and exit status 4."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from acceptance.inventory import Expectations, InventoryError, load_inventory

from .conftest import EXAMPLE


def test_example_loads_with_alice_defaults(write_inventory):
    path = write_inventory()
    inv = load_inventory(path)
    assert inv.cluster == "alicelab"
    assert [(n.name, n.role, n.kind) for n in inv.nodes] == [
        ("alimesos01", "master", None), ("alibuild01", "agent", "vm"), ("alibuild02", "agent", "vm"),
        ("alimetal01", "agent", "metal")]
    assert inv.ssh.user == "root"
    assert inv.ssh.config == path.parent / "ssh_config"  # relative to the inventory file
    assert inv.ssh.known_hosts == path.parent / "known_hosts"
    assert inv.ssh.connect_timeout_s == 10
    assert inv.apis.consul is not None and inv.apis.consul.dns == "172.30.0.11:8600"
    assert inv.apis.openstack is not None and inv.apis.openstack.clouds_yaml == path.parent / "clouds.yaml"
    assert inv.expect == Expectations()
    assert inv.expect.builder_image == "registry.cern.ch/alisw/slc9-builder"
    assert inv.expect.kernel_args == ("systemd.unified_cgroup_hierarchy=0",)
    assert inv.expect.build_min_free_gib == 240
    assert inv.maintenance[0].until == dt.date(2099, 12, 31)


def test_expect_overrides_and_discovery(write_inventory):
    inv = load_inventory(write_inventory(EXAMPLE + """\
discovery:
  openstack:
    - {project: "ALICE Release Testing", role: agent, kind: vm, pattern: "alibuild*"}
    - {project: "ALICE Release Testing - physical nodes", role: agent, kind: metal, pattern: "alimetal*"}
expect:
  agent_units: [docker, nomad, node_exporter]
  build_min_free_gib: 100
  puppet_max_age_h: 4
"""))
    assert inv.expect.agent_units == ("docker", "nomad", "node_exporter")
    assert inv.expect.build_min_free_gib == 100.0
    assert inv.expect.master_units == ("docker", "nomad", "consul", "vault")
    assert [r.kind for r in inv.discovery] == ["vm", "metal"]


BAD = [
    # (id, replace this, with this, expected fragments)
    ("yaml-syntax", "  user: root\n", "  user: root: admin\n", ["inventory.yaml:3:", "YAML error", "fix:"]),
    ("unknown-key", "known_hosts: known_hosts", "knownhosts: known_hosts",
     ["inventory.yaml:5:", "ssh.knownhosts", "unknown key", "did you mean 'known_hosts'"]),
    ("unknown-top-key", "cluster: alicelab", "clustr: alicelab", ["clustr", "did you mean 'cluster'"]),
    ("wrong-type", "connect_timeout_s: 10", "connect_timeout_s: ten",
     ["ssh.connect_timeout_s", "expected an integer", "'ten'", "fix: write connect_timeout_s as a whole number"]),
    ("bad-kind", "kind: metal}", "kind: metall}", ["nodes.agents[2].kind", "'metall' is not one of vm, metal"]),
    ("duplicate-node", "{name: alibuild02,", "{name: alibuild01,",
     ["nodes.agents[1].name", "duplicate node 'alibuild01'", "fix: remove one"]),
    ("two-roles", "{name: alibuild01,", "{name: alimesos01,",
     ["nodes.agents[0].name", "'alimesos01' is both in nodes.masters", "a node has one role"]),
    ("missing-file", "identity: id_ed25519", "identity: nope/id_rsa",
     ["ssh.identity", "file not found", "nope/id_rsa"]),
    ("bad-url", '"https://172.30.0.11:4646"', '"172.30.0.11:4646"', ["apis.nomad.address", "not an http(s) URL"]),
    ("bad-date", "until: 2099-12-31", "until: someday", ["maintenance[0].until", "write it as YYYY-MM-DD"]),
    ("duplicate-yaml-key", "  connect_timeout_s: 10\n", "  connect_timeout_s: 10\n  user: admin\n",
     ["duplicate key 'user'"]),
]


@pytest.mark.parametrize(("old", "new", "fragments"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_inventory_is_one_clear_line(write_inventory, old, new, fragments):
    assert old in EXAMPLE
    path = write_inventory(EXAMPLE.replace(old, new, 1))
    with pytest.raises(InventoryError) as e:
        load_inventory(path)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert "fix:" in message
    for fragment in fragments:
        assert fragment in message


def test_no_nodes(write_inventory):
    with pytest.raises(InventoryError, match=r"nodes: no nodes; fix: list nodes"):
        load_inventory(write_inventory("cluster: x\n"))


def test_missing_inventory_file(tmp_path):
    with pytest.raises(InventoryError, match=r"--inventory: file not found; fix: pass the path"):
        load_inventory(tmp_path / "prod.yaml")


# ---- through pytest: exit status 4 and exactly one line, no traceback

@pytest.mark.parametrize(("old", "new", "fragments"), [b[1:] for b in BAD[:7]], ids=[b[0] for b in BAD[:7]])
def test_bad_inventory_exits_4(write_inventory, run_suite, old, new, fragments):
    path = write_inventory(EXAMPLE.replace(old, new, 1))
    result = run_suite(f"--inventory={path}")
    assert result.ret == 4
    lines = result.error_lines()
    assert len(lines) == 1, result.out + result.err
    assert str(path) in lines[0]
    assert all(f in lines[0] for f in fragments)
    assert "Traceback" not in result.out + result.err


def test_missing_inventory_exits_4(tmp_path, run_suite):
    result = run_suite(f"--inventory={tmp_path / 'prod.yaml'}")
    assert result.ret == 4
    assert result.error_lines() == [f"ERROR: {tmp_path / 'prod.yaml'}: --inventory: file not found; "
                                    "fix: pass the path of an inventory YAML file (see README.md)"]


def test_unknown_node_in_nodes_option_exits_4(write_inventory, run_suite):
    path = write_inventory()
    result = run_suite(f"--inventory={path}", "--nodes=alibuild01,alibild02")
    assert result.ret == 4
    (line,) = result.error_lines()
    assert "--nodes: no node in the inventory matches 'alibild02'" in line
    assert "did you mean alibuild02" in line
    assert str(path) in line


def test_unknown_role_exits_4(write_inventory, run_suite):
    result = run_suite(f"--inventory={write_inventory()}", "--role=slave")
    assert result.ret == 4
    assert "--role: unknown role 'slave'; fix: use one of master, agent" in result.error_lines()[0]


def test_checks_without_inventory_exit_4(run_suite):
    result = run_suite()
    assert result.ret == 4
    (line,) = result.error_lines()
    assert "need an inventory; fix: pass --inventory FILE" in line


def test_relative_inventory_path_is_resolved_from_the_invocation_dir(write_inventory, run_suite, monkeypatch):
    path = write_inventory()
    monkeypatch.chdir(path.parent)
    result = run_suite("--inventory=inventory.yaml", "--collect-only")
    assert result.ret == 0, result.out
    assert Path(path).name in result.out or "alimesos01" in result.out
