"""Inventory: valid load with defaults; every bad input is one line (file, key, fix) and exit status 4."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import pytest

from acceptance.inventory import (
    Expectations,
    InventoryError,
    RemediationSettings,
    load_inventory,
    valid_address,
    valid_node_name,
)

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


def test_units_may_carry_their_suffix_or_an_instance(write_inventory):
    inv = load_inventory(write_inventory(_add("expect: {master_units: [docker.service, nomad, 'getty@tty1'], "
                                              "backup_unit: dsmcad.service}\n")))
    assert (inv.expect.master_units, inv.expect.backup_unit) == (("docker.service", "nomad", "getty@tty1"),
                                                                 "dsmcad.service")


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


# ---- the audit: each of these was accepted, or crashed (INTERNALERROR, exit status 3), before

def _add(text: str) -> str:
    """EXAMPLE with `text` added at the top level (before maintenance)."""
    return EXAMPLE.replace("maintenance:\n", text + "maintenance:\n", 1)


AUDIT = [
    # (id, inventory text, expected fragments)
    ("address-ssh-option", EXAMPLE.replace("address: 172.30.1.1,", 'address: "-oProxyCommand=touch /tmp/x",'),
     ["inventory.yaml:19:", "nodes.agents[0].address", "starts with '-'", "fix: write an IPv4 or IPv6 address"]),
    ("address-shell", EXAMPLE.replace("address: 172.30.1.2,", 'address: "a;reboot",'),
     ["nodes.agents[1].address", "contains ';'"]),
    ("address-bad-ipv4", EXAMPLE.replace("address: 172.30.1.2,", "address: 172.30.1.256,"),
     ["nodes.agents[1].address", "not an IPv4 address"]),
    ("user-ssh-option", EXAMPLE.replace("  user: root\n", '  user: "-oProxyCommand=x"\n'),
     ["inventory.yaml:3:", "ssh.user", "is not a user name"]),
    ("user-shell", EXAMPLE.replace("  user: root\n", '  user: "root;reboot"\n'), ["ssh.user", "is not a user name"]),
    ("name-trailing-newline", EXAMPLE.replace("{name: alibuild01,", '{name: "alibuild01\\n",'),
     ["nodes.agents[0].name", "is not a host name", "fix: use a host name"]),
    ("name-ssh-option", EXAMPLE.replace("{name: alibuild01,", '{name: "-oProxyCommand=x",'),
     ["nodes.agents[0].name", "starts with '-'"]),
    ("name-long-label", EXAMPLE.replace("{name: alibuild01,", "{name: " + "a" * 64 + ","),
     ["nodes.agents[0].name", "longer than 63"]),
    ("name-cluster", EXAMPLE.replace("{name: alibuild01,", "{name: cluster,"), ["'cluster' is reserved"]),
    ("url-scheme", EXAMPLE.replace('"https://172.30.0.11:4646"', '"ftp://172.30.0.11:4646"'),
     ["apis.nomad.address", "not an http(s) URL", "fix: write it as https://host:port"]),
    ("url-no-host", EXAMPLE.replace('"https://172.30.0.11:4646"', '"https://:4646"'), ["apis.nomad.address"]),
    ("url-port", EXAMPLE.replace('"https://172.30.0.11:4646"', '"https://172.30.0.11:99999"'),
     ["apis.nomad.address", "port must be a number in 1..65535"]),
    ("url-port-0", EXAMPLE.replace('"https://172.30.0.11:4646"', '"https://172.30.0.11:0"'),
     ["port must be a number in 1..65535"]),
    ("url-host", EXAMPLE.replace('"https://172.30.0.11:4646"', '"https://a;b:4646"'), ["the URL's host"]),
    ("dns-port", EXAMPLE.replace('"172.30.0.11:8600"', '"172.30.0.11:99999"'),
     ["apis.consul.dns", "port 99999 is out of range 1..65535"]),
    ("dns-host", EXAMPLE.replace('"172.30.0.11:8600"', '"-oX:53"'), ["apis.consul.dns", "starts with '-'"]),
    ("dns-brackets", EXAMPLE.replace('"172.30.0.11:8600"', '"[alimesos01]:8600"'), ["for IPv6 addresses only"]),
    ("until-not-a-day", EXAMPLE.replace("until: 2099-12-31", "until: 2026-02-30"),
     ["inventory.yaml:23:", "maintenance[0].until", "2026-02-30 is not a day of the calendar", "YYYY-MM-DD"]),
    # libyaml says "exceeded maximum nesting depth" before the loader's own bound (32 levels) does
    ("nesting", _add("deep: " + "[" * 20_000 + "]" * 20_000 + "\n"), ["inventory.yaml:22:", "nest"]),
    ("nesting-block", _add("deep:\n" + "".join(" " * i + "- a:\n" for i in range(0, 200, 2))),
     ["nested deeper than 32 levels"]),
    ("list-as-key", _add("? [a, b]\n: 1\n"), ["inventory.yaml:22:", "a list as a key"]),
    ("mapping-as-key", _add("? {a: 1}\n: 1\n"), ["a mapping as a key"]),
    ("nan", _add("expect: {build_min_free_gib: .nan}\n"), ["expect.build_min_free_gib", "nan is not a finite number"]),
    ("inf", EXAMPLE.replace("  openstack:", "  retry_s: .inf\n  openstack:"),
     ["apis.retry_s", "inf is not a finite number"]),
    ("huge", EXAMPLE.replace("connect_timeout_s: 10", "connect_timeout_s: 100000000000000000000000000"),
     ["ssh.connect_timeout_s", "must be >= 1 and <= 3600"]),
    ("timeout-over-an-hour", EXAMPLE.replace("connect_timeout_s: 10", "connect_timeout_s: 3601"),
     ["must be >= 1 and <= 3600"]),
    ("bool-is-not-a-number", EXAMPLE.replace("connect_timeout_s: 10", "connect_timeout_s: true"),
     ["expected an integer, got True (bool)"]),
    ("big-int-literal", _add("expect: {puppet_max_age_h: !!int " + "9" * 5000 + "}\n"),
     ["inventory.yaml:22:", "cannot read"]),
    ("list-too-long", _add("expect: {kernel_args: [" + ",".join(["a"] * 10_001) + "]}\n"),
     ["more than 10000 items"]),
    ("recursive-alias", _add("x: &a [*a]\n"), ["an alias inside its own anchor"]),
    ("control-character-in-key", _add('"a\\nb": 1\n'), ["'a\\nb': unknown key"]),
    # found by the property tests
    ("empty-int-tag", _add("expect: {puppet_max_age_h: !!int }\n"), ["inventory.yaml:22:", "cannot read '' as int"]),
    ("escape-in-reason", EXAMPLE.replace('reason: "disk swap INC0123"', 'reason: "disk swap\\e[31m"'),
     ["maintenance[0].reason", "a line break or a control character"]),
    # values that reach a node's commands (security issue, point 9)
    ("unit-option", _add("expect: {master_units: ['--host=evil']}\n"),
     ["inventory.yaml:22:", "expect.master_units[0]", "starts with '-'", "fix: write a systemd unit name"]),
    ("unit-short-option", _add("expect: {backup_unit: '-H'}\n"), ["expect.backup_unit", "starts with '-'"]),
    ("unit-shell", _add("expect: {agent_units: [docker, 'nomad;reboot']}\n"),
     ["expect.agent_units[1]", "contains ';'"]),
    ("unit-glob", _add("expect: {agent_units: ['docker*']}\n"), ["expect.agent_units[0]", "contains '*'"]),
    ("unit-template", _add("expect: {master_units: ['getty@.service']}\n"), ["is a template"]),
    ("units-empty", _add("expect: {master_units: []}\n"),
     ["inventory.yaml:22:", "expect.master_units", "an empty list", "fix: list at least one"]),
    ("kernel-args-empty", _add("expect: {kernel_args: []}\n"), ["expect.kernel_args", "an empty list"]),
    ("ci-jobs-empty", _add("expect: {ci_jobs: []}\n"), ["expect.ci_jobs", "an empty list"]),
    ("kernel-arg-space", _add("expect: {kernel_args: ['a b']}\n"), ["expect.kernel_args[0]", "contains a space"]),
    ("backup-path-option", _add("expect: {backup_path: '-subdir=yes'}\n"),
     ["expect.backup_path", "not an absolute path (a command would read it as an option)", "fix: write the absolute"]),
    ("backup-path-relative", _add("expect: {backup_path: build/consul}\n"), ["not an absolute path"]),
    ("backup-path-wildcard", _add("expect: {backup_path: '/build/*'}\n"), ["dsmc reads as a wildcard"]),
    ("build-mount-relative", _add("expect: {build_mount: build}\n"), ["expect.build_mount", "not an absolute path"]),
    ("puppet-summary-option", _add("expect: {puppet_summary: '-e'}\n"), ["expect.puppet_summary", "option"]),
    ("sched-log-relative", _add("expect: {backup_sched_log: dsmsched.log}\n"), ["expect.backup_sched_log"]),
    ("image-option", _add("expect: {builder_image: '--help'}\n"),
     ["expect.builder_image", "not an image reference", "docker would read it as an option"]),
    ("image-shell", _add("expect: {builder_image: 'alisw/x;reboot'}\n"), ["expect.builder_image"]),
    ("known-hosts-device", EXAMPLE.replace("known_hosts: known_hosts", "known_hosts: /dev/zero"),
     ["inventory.yaml:5:", "ssh.known_hosts", "/dev/zero is not a regular file", "fix: name a regular file"]),
    ("identity-device", EXAMPLE.replace("identity: id_ed25519", "identity: /dev/null"),
     ["ssh.identity", "not a regular file"]),
    ("known-hosts-quote", EXAMPLE.replace("known_hosts: known_hosts", "known_hosts: 'kh\"x'"),
     ["ssh.known_hosts", "which ssh cannot take"]),
]


@pytest.mark.parametrize(("text", "fragments"), [a[1:] for a in AUDIT], ids=[a[0] for a in AUDIT])
def test_audit_input_is_one_clear_line(write_inventory, text, fragments):
    path = write_inventory(text)
    with pytest.raises(InventoryError) as e:
        load_inventory(path)
    message = str(e.value)
    assert message.splitlines() == [message]
    assert message.startswith(str(path))
    assert len(message) < len(str(path)) + 400
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("url", ["https://admin:s3cret-pw@172.30.0.11:9090", "admin:s3cret-pw@172.30.0.11:9090",
                                 "https://admin:s3cret-pw@172.30.0.11:99999", "https://:s3cret-pw@h\n:1"])
def test_credentials_in_a_url_are_refused_and_never_shown(write_inventory, url):
    path = write_inventory(EXAMPLE.replace('"http://172.30.0.11:9090"', json.dumps(url)))
    with pytest.raises(InventoryError) as e:
        load_inventory(path)
    assert str(e.value) == (f"{path}:13: apis.prometheus.address: credentials in the URL; "
                            "fix: remove them, credentials come from the environment")


@pytest.mark.parametrize("password", ["s3cret-pw", "s3cret" * 30])
def test_credentials_are_not_shown_even_in_a_type_error(write_inventory, password):
    url = f"https://admin:{password}@alimesos01.cern.ch:9090/a/long/path/that/pushes/the/at/sign/out/of/the/message"
    path = write_inventory(EXAMPLE.replace('"http://172.30.0.11:9090"', f'["{url}"]'))
    with pytest.raises(InventoryError, match="expected a string") as e:
        load_inventory(path)
    assert "s3cret" not in str(e.value)


BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
MERGE_BOMB = "m0: &m0 {k: 1}\n" + "".join(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}\n" for i in range(1, 40))


@pytest.mark.parametrize("text", [
    BOMB + "cluster: *i\n",  # the value goes into 'expected a string, got ...'
    EXAMPLE + BOMB.replace("i: &i", "cluster: &i"),
    EXAMPLE.replace("maintenance:\n", "expect: {kernel_args: *i}\n", 1).replace("cluster: alicelab\n",
                                                                                 "cluster: alicelab\n" + BOMB),
    MERGE_BOMB,
], ids=["alias-bomb-as-value", "alias-bomb-anchor-as-value", "alias-bomb-as-list", "merge-key-bomb"])
def test_alias_bombs_are_refused_fast_in_one_line(write_inventory, text):
    path = write_inventory(text)
    started = time.perf_counter()
    with pytest.raises(InventoryError, match=r"more than 50000 values, every alias expanded") as e:
        load_inventory(path)
    assert time.perf_counter() - started < 1
    assert len(str(e.value).splitlines()) == 1


def test_huge_documents_are_refused_fast(write_inventory):
    path = write_inventory(EXAMPLE + "x: " + "a" * (1 << 20) + "\n")
    started = time.perf_counter()
    with pytest.raises(InventoryError, match=r"inventory.yaml: larger than 1024 KiB; fix: an inventory is a few KiB"):
        load_inventory(path)
    for junk, problem in (("[" * 1_000_000, "nest"), ("x:\n" + "- a\n" * 250_000, "more than 10000 items"),
                          ("".join(f"k{i}: {{a: [b]}}\n" for i in range(60_000)), "more than 50000 values; fix")):
        with pytest.raises(InventoryError, match=problem):
            load_inventory(write_inventory(junk))
    assert time.perf_counter() - started < 1.5


def test_long_values_are_shortened_in_messages(write_inventory):
    path = write_inventory(EXAMPLE.replace("cluster: alicelab", "cluster: [" + ", ".join(["x" * 1000] * 500) + "]"))
    with pytest.raises(InventoryError, match=r"cluster: expected a string, got \['xxx") as e:
        load_inventory(path)
    assert len(str(e.value)) < len(str(path)) + 200


def test_yaml_merge_keys_may_override(write_inventory):
    inv = load_inventory(write_inventory(EXAMPLE.replace(
        "    - {name: alibuild02, address: 172.30.1.2, kind: vm}\n",
        "    - &agent {name: alibuild02, address: 172.30.1.2, kind: vm, az: cern-geneva-b}\n"
        "    - {<<: *agent, name: alibuild03, address: 172.30.1.4}\n")))
    node = inv.node("alibuild03")
    assert node is not None and (node.address, node.az, node.kind) == ("172.30.1.4", "cern-geneva-b", "vm")


@pytest.mark.parametrize(("text", "fragment"), [
    (_add("deep: " + "[" * 20_000 + "]" * 20_000 + "\n"), "nest"),
    (_add("? [a, b]\n: 1\n"), "a list as a key"),
    (EXAMPLE.replace("until: 2099-12-31", "until: 2026-02-30"), "2026-02-30 is not a day of the calendar"),
    (BOMB + "cluster: *i\n", "an alias bomb"),
], ids=["nesting", "list-as-key", "until-not-a-day", "alias-bomb"])
def test_audit_input_exits_4(write_inventory, run_suite, text, fragment):
    path = write_inventory(text)
    result = run_suite(f"--inventory={path}")
    assert result.ret == 4, result.out + result.err
    (line,) = result.error_lines()
    assert str(path) in line and fragment in line
    assert "Traceback" not in result.out + result.err


# ---- the validators that discovery shares

@pytest.mark.parametrize("name", ["alibuild01", "alimesos01.cern.ch", "a", "A-1.b-2", "x" * 63,
                                  ".".join(["a" * 63] * 3 + ["a" * 61])])
def test_valid_node_names(name):
    assert valid_node_name(name) is None


@pytest.mark.parametrize(("name", "problem"), [
    ("", "empty"), ("-oProxyCommand=x", "starts with '-'"), (".hidden", "starts with '.'"),
    ("alibuild01\n", "contains '\\n'"), ("a b", "contains ' '"), ("a;reboot", "contains ';'"), ("a..b", "empty label"),
    ("a.", "empty label"), ("a.-b", "label starting with '-'"), ("x" * 64, "longer than 63"),
    (".".join(["a" * 63] * 3 + ["a" * 62]), "more than 253"), ("alibüild", "contains 'ü'"), ("cluster", "reserved"),
])
def test_invalid_node_names(name, problem):
    found = valid_node_name(name)
    assert found is not None and problem in found and "\n" not in found


@pytest.mark.parametrize("address", ["172.30.0.11", "::1", "2001:db8::1", "fe80::1%eth0", "alibuild01.cern.ch", "h"])
def test_valid_addresses(address):
    assert valid_address(address) is None


@pytest.mark.parametrize("address", ["-oProxyCommand=x", "a;reboot", "$(reboot)", "`id`", "1.2.3.256", "1.2.3",
                                     "123", "fe80::1%eth0;reboot", "[::1]", "h ost", "h\n", "", "a/b", "user@host"])
def test_invalid_addresses(address):
    found = valid_address(address)
    assert found is not None and "\n" not in found


def test_loaded_names_and_addresses_obey_the_validators(write_inventory):
    inv = load_inventory(write_inventory())
    assert all(valid_node_name(n.name) is None and (n.address is None or valid_address(n.address) is None)
               for n in inv.nodes)


# ---- new keys: checks, apis.deadline_s, remediation

def test_new_keys_default(write_inventory):
    inv = load_inventory(write_inventory())
    assert inv.check_dirs == ()
    assert inv.apis.deadline_s == 45
    assert inv.remediation == RemediationSettings()
    r = inv.remediation
    assert (r.enabled, r.kill_switch_file, r.max_unhealthy_masters, r.max_unhealthy_agents,
            r.max_disruptive_masters, r.max_disruptive_agents, r.disruptive_window_h, r.drain_deadline_s,
            r.settle_timeout_s, r.lock_key, r.lock_ttl_s, r.state_key, r.stop_key, r.attempts, r.budget_window_h) == (
        True, None, 1, 4, 1, 2, 24, 21600, 300, "alice-acceptance/remediation-lock", 900,
        "alice-acceptance/remediation-state", "alice-acceptance/stop", 3, 24)


def test_new_keys_are_read(write_inventory, tmp_path):
    (tmp_path / "site-checks").mkdir()
    (tmp_path / "more").mkdir()
    inv = load_inventory(write_inventory(_add("""\
checks: [site-checks, more/]
remediation:
  enabled: false
  kill_switch_file: STOP
  max_unhealthy_masters: 0
  max_unhealthy_agents: 5
  drain_deadline_s: 43200
  settle_timeout_s: 120.5
  lock_key: alice/prod/lock
  lock_ttl_s: 600
  attempts: 2
  budget_window_h: 12
  state_key: alice/prod/state
""").replace("  openstack:", "  deadline_s: 30\n  openstack:")))
    assert inv.check_dirs == (tmp_path / "site-checks", tmp_path / "more")
    assert inv.apis.deadline_s == 30.0
    assert inv.remediation == RemediationSettings(
        enabled=False, kill_switch_file=tmp_path / "STOP", max_unhealthy_masters=0, max_unhealthy_agents=5,
        drain_deadline_s=43200, settle_timeout_s=120.5, lock_key="alice/prod/lock", lock_ttl_s=600, attempts=2,
        budget_window_h=12, state_key="alice/prod/state")


@pytest.mark.parametrize(("text", "fragments"), [
    ("checks: [nope]\n", ["checks[0]: directory not found", "nope"]),
    ("checks: [inventory.yaml]\n", ["checks[0]: not a directory"]),
    ("checks: site-checks\n", ["checks: expected a list"]),
    ("checks: [., ./]\n", ["checks[1]", "listed twice"]),
    ("remediation: {enabled: 1}\n", ["remediation.enabled: expected true or false, got 1 (int)"]),
    ("remediation: {enabled: yes please}\n", ["remediation.enabled: expected true or false"]),
    ("remediation: {max_unhealthy_agents: -1}\n", ["remediation.max_unhealthy_agents: must be >= 0"]),
    ("remediation: {max_disruptive_masters: 1.5}\n", ["remediation.max_disruptive_masters: expected an integer"]),
    ("remediation: {drain_deadline_s: 0}\n", ["remediation.drain_deadline_s: must be > 0"]),
    ("remediation: {settle_timeout_s: .nan}\n", ["remediation.settle_timeout_s: nan is not a finite number"]),
    ("remediation: {lock_ttl_s: 5}\n", ["remediation.lock_ttl_s: must be >= 10 and <= 86400, got 5"]),
    ("remediation: {lock_ttl_s: 86401}\n", ["remediation.lock_ttl_s: must be >= 10 and <= 86400"]),
    ("remediation: {attempts: 0}\n", ["remediation.attempts: must be >= 1"]),
    ("remediation: {budget_window_h: -1}\n", ["remediation.budget_window_h: must be > 0"]),
    ("remediation: {lock_key: /x//y}\n", ["remediation.lock_key", "not a Consul KV key"]),
    ("remediation: {state_key: /nope//x}\n", ["remediation.state_key", "is not a Consul KV key"]),
    ("remediation: {atempts: 2}\n", ["remediation.atempts: unknown key; fix: did you mean 'attempts'?"]),
    ("remediation: true\n", ["remediation: expected a mapping, got True (bool)"]),
])
def test_bad_new_keys(write_inventory, text, fragments):
    path = write_inventory(_add(text))
    with pytest.raises(InventoryError) as e:
        load_inventory(path)
    assert all(f in str(e.value) for f in fragments), str(e.value)


@pytest.mark.parametrize(("value", "fragment"), [
    ("0", "must be > 0 and <= 600, got 0"), ("601", "must be > 0 and <= 600"), (".inf", "inf is not a finite number"),
    ("false", "expected a number, got False"), ("soon", "expected a number, got 'soon'")])
def test_bad_deadline(write_inventory, value, fragment):
    path = write_inventory(EXAMPLE.replace("  openstack:", f"  deadline_s: {value}\n  openstack:"))
    with pytest.raises(InventoryError, match=re.escape(f"apis.deadline_s: {fragment}")):
        load_inventory(path)
