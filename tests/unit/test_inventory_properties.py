"""Inventory, property-based: whatever the file holds, load_inventory returns a valid Inventory or raises ONE
InventoryError line naming the file; nothing else escapes, and no bad name, address, user, unit, node path or file
gets through."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import ipaddress
import math
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acceptance.inventory import Inventory, InventoryError, load_inventory, valid_address, valid_node_name

from .test_node_values import good_images, good_paths, good_units, images, node_path, node_paths, unit_name, units

FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FASTER = settings(FAST, max_examples=200)  # for cheap examples
SECRET = "pw-9f3a1c"  # the password of every URL with credentials: never in a message
FILES = ("ssh_config", "known_hosts", "id_ed25519", "ca.pem", "clouds.yaml")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the files and directories inventories may name; the inventory is written into it."""
    root = tmp_path_factory.mktemp("site")
    for name in FILES:
        (root / name).write_text("")
    (root / "site-checks").mkdir()
    return root


def host_name(name: str) -> bool:
    """An oracle independent of the module's rules: RFC 1123-ish labels, nothing ssh could read as an option."""
    labels = name.split(".")
    return 0 < len(name) <= 253 and all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", label) for label in labels)


def address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return host_name(text) and not text.rsplit(".", 1)[-1].isdigit()
    return re.fullmatch(r"[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]{1,15})?", text) is not None


def http_url(url: str) -> bool:
    """Necessary for an API address: http(s), a valid host, a port in range, no credentials."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and "@" not in url and address(parts.hostname or "")
            and port != 0 and url.isprintable() and " " not in url)


def strings(value: Any) -> list[tuple[str, str]]:
    """(field, string) of every string in an Inventory's dataclasses."""
    found: list[tuple[str, str]] = []
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        for element in item if isinstance(item, tuple) else (item,):
            if isinstance(element, str):
                found.append((f.name, element))
            elif dataclasses.is_dataclass(element):
                found.extend(strings(element))
    return found


def check(path: Path) -> Inventory | None:
    """The properties of one load: a valid Inventory, or one bounded InventoryError line; never anything else."""
    try:
        inv = load_inventory(path)
    except InventoryError as e:
        message = str(e)
        assert message.splitlines() == [message], message
        assert message.startswith(f"{path}:") or message.startswith(f"{path}: ")
        assert "; fix: " in message
        assert len(message) <= len(str(path)) + 1000
        assert SECRET not in message
        return None
    for node in inv.nodes:
        assert host_name(node.name) and node.name != "cluster" and valid_node_name(node.name) is None, node
        assert node.address is None or (address(node.address) and valid_address(node.address) is None), node
        assert node.role in ("master", "agent") and node.kind in ((None,) if node.role == "master" else ("vm", "metal"))
    assert re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", inv.ssh.user)
    for section in (inv.ssh, inv.apis, inv.expect, inv.remediation, inv.apis.openstack):
        for f in dataclasses.fields(section) if section is not None else ():
            value = getattr(section, f.name)
            if isinstance(value, int | float):
                assert math.isfinite(value) and (isinstance(value, bool) == (f.name == "enabled")), (f.name, value)
    for endpoint in (inv.apis.nomad, inv.apis.consul, inv.apis.vault, inv.apis.prometheus):
        assert endpoint is None or http_url(endpoint.address), endpoint
    for name, text in strings(inv):
        assert text.strip() and all(c.isprintable() or (name == "reason" and c in "\n\t") for c in text), (name, text)
    assert all(isinstance(m.until, dt.date) for m in inv.maintenance)
    assert all(d.is_dir() for d in inv.check_dirs)
    e = inv.expect
    assert all(unit_name(u) for u in (*e.master_units, *e.agent_units, e.backup_unit)), e
    assert all(node_path(p) for p in (e.build_mount, e.puppet_summary, e.backup_path, e.backup_sched_log)), e
    assert not any(c in e.backup_path for c in "*?[]{}") and not e.builder_image.startswith("-"), e
    assert all((e.master_units, e.agent_units, e.kernel_args, e.ci_jobs, e.prometheus_jobs)), e
    tls, openstack = inv.apis.tls, inv.apis.openstack
    files = (inv.ssh.config, inv.ssh.known_hosts, inv.ssh.identity, *((tls.ca, tls.cert, tls.key) if tls else ()),
             openstack.clouds_yaml if openstack else None)
    assert all(f is None or f.is_file() for f in files), files
    return inv


def dump(inventory: dict[str, Any]) -> str:
    return yaml.dump(inventory, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), allow_unicode=True)


def write(site: Path, text: str) -> Path:
    path = site / "inventory.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- valid values, and nasty ones

_label = st.builds("{}{}".format, st.sampled_from("abcxyz"), st.text("ab0-9", max_size=8).filter(
    lambda s: not s.endswith("-")))
good_hosts = st.lists(_label, min_size=1, max_size=3).map(".".join)
good_names = good_hosts.filter(lambda n: n != "cluster")
good_addresses = st.one_of(st.ip_addresses().map(str), good_hosts)
good_users = st.builds("{}{}".format, st.sampled_from("_ar"), st.text("a0_.-", max_size=31))
good_urls = st.builds("{}://{}:{}".format, st.sampled_from(["http", "https"]), st.one_of(
    good_hosts, st.ip_addresses().map(lambda ip: f"[{ip}]" if ip.version == 6 else str(ip))), st.integers(1, 65535))
good_hostports = st.builds(lambda host, port: f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                           good_addresses, st.integers(1, 65535))
good_text = st.one_of(st.sampled_from(["cern-geneva-a", "ALICE Release Testing", "m2.large", "Ünïcode"]),
                      st.text("abcXYZ-_.:/ 09é", min_size=1, max_size=12).filter(str.strip))

nasty_names = st.sampled_from(["-oProxyCommand=touch /tmp/x", "a;reboot", "alibuild01\n", "cluster", ".x", "a..b",
                               "x" * 64, "$(id)", "a b", "é", "1.2.3.256", "[::1]", "", " ", "a\u2028b", "-", "a_b",
                               "a.0", "user@host", "h:22", ".".join(["a" * 63] * 4),
                               ".".join(["a" * 63] * 3 + ["a" * 61]), "fe80::1%eth0", "fe80::1%a;b", "::1%" + "x" * 16])
names = st.one_of(good_names, nasty_names, st.text(max_size=20))
addresses = st.one_of(good_addresses, nasty_names, st.text(max_size=30))
users = st.one_of(good_users, st.text(max_size=40),
                  st.sampled_from(["-oProxyCommand=x", "root;reboot", "Root", "a" * 33, "root\n", "-", "$USER"]))
numbers = st.one_of(st.integers(-10, 100_000), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.integers(min_value=10**15, max_value=10**40), st.integers(max_value=-1), st.text(max_size=5),
                    st.none())
paths = st.one_of(st.sampled_from([*FILES, "nope", ".", "site-checks", "/dev/null", "~/nope", "/", "a\0b", "x" * 300]),
                  st.text(max_size=20))
ports = st.one_of(st.integers(-5, 70_000), st.sampled_from(["x", "", "08", "1e3"]))
urls = st.one_of(
    good_urls,
    st.builds("{}://{}:{}".format, st.sampled_from(["http", "https", "ftp", "", "HTTPS"]),
              st.one_of(good_hosts, nasty_names), ports),
    st.builds(f"https://admin:{SECRET}@{{}}:8200".format, good_hosts),
    st.builds(f"admin:{SECRET}@{{}}".format, good_hosts),
    st.builds(f"https://admin:{SECRET}@{{}}/{{}}".format, good_hosts, st.text(max_size=80)),
    st.builds("{}?token={}".format, good_urls, st.text(max_size=10)),
    st.text(max_size=40))
hostports = st.one_of(st.builds("{}:{}".format, st.one_of(good_hosts, nasty_names), ports), st.text(max_size=20))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.dates())
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.one_of(st.text(max_size=10), st.integers(), st.booleans()), inner, max_size=4), max_leaves=12)
dates = st.one_of(st.dates(), st.sampled_from(["2026-02-30", "someday", "2026-13-01", "20261231"]), scalars)


@st.composite
def valid_inventories(draw: st.DrawFn) -> dict[str, Any]:
    nodes = draw(st.lists(st.fixed_dictionaries({"name": good_names}, optional={
        "address": good_addresses, "az": good_text, "project": good_text}),
        min_size=1, max_size=4, unique_by=lambda n: n["name"]))
    split = draw(st.integers(1, len(nodes)))
    agents = [{**n, "kind": draw(st.sampled_from(["vm", "metal"]))} for n in nodes[split:]]
    seconds = st.floats(0.001, 600)
    return {
        "cluster": draw(good_names),
        "ssh": {"user": draw(good_users), "known_hosts": "known_hosts", "identity": "id_ed25519",
                "connect_timeout_s": draw(st.integers(1, 3600)), "target": draw(st.sampled_from(["address", "name"]))},
        "apis": {"tls": {"ca": "ca.pem"}, "nomad": {"address": draw(good_urls)},
                 "consul": {"address": draw(good_urls), "dns": draw(good_hostports)},
                 "openstack": {"cloud": draw(good_text), "clouds_yaml": "clouds.yaml"},
                 "timeout_s": draw(seconds), "retry_s": draw(seconds), "deadline_s": draw(seconds)},
        "nodes": {"masters": nodes[:split], "agents": agents},
        "expect": {"build_min_free_gib": draw(st.floats(0.001, 1e6)),
                   "kernel_args": draw(st.lists(good_text.filter(lambda t: " " not in t), min_size=1)),
                   "master_units": draw(st.lists(good_units, min_size=1, max_size=4)),
                   "backup_unit": draw(good_units), "backup_path": draw(good_paths),
                   "builder_image": draw(good_images)},
        "maintenance": [{"node": n["name"], "reason": draw(good_text), "until": draw(st.dates())}
                        for n in draw(st.lists(st.sampled_from(nodes), max_size=2))],
        "checks": draw(st.sampled_from([[], ["site-checks"]])),
        "remediation": {"enabled": draw(st.booleans()), "kill_switch_file": "STOP",
                        "state_key": "alice-acceptance/state",
                        "max_unhealthy_agents": draw(st.integers(0, 100)), "lock_ttl_s": draw(st.integers(10, 86400)),
                        "attempts": draw(st.integers(1, 100)), "drain_deadline_s": draw(st.floats(1, 604800))},
    }


# where a mutation puts a value (an int: that entry of a list, when the list has it), and what it puts there
MUTATIONS: list[tuple[tuple[str | int, ...], st.SearchStrategy[Any]]] = [
    (("cluster",), anything), (("ssh", "user"), users), (("ssh", "connect_timeout_s"), numbers),
    (("ssh", "known_hosts"), paths), (("ssh", "target"), anything), (("ssh", "config"), paths),
    (("apis", "nomad", "address"), urls), (("apis", "prometheus", "address"), urls),
    (("apis", "consul", "dns"), hostports), (("apis", "consul"), anything), (("apis", "deadline_s"), numbers),
    (("apis", "retry_s"), numbers), (("apis", "timeout_s"), numbers), (("apis", "openstack", "timeout_s"), numbers),
    (("nodes", "masters", 0, "name"), names), (("nodes", "masters", 0, "address"), addresses),
    (("nodes", "masters", 0, "kind"), anything), (("nodes", "agents", 0, "name"), names),
    (("nodes", "agents", 0, "address"), addresses), (("nodes", "agents", 0, "kind"), anything),
    (("nodes", "masters", 0), anything), (("nodes", "agents"), anything),
    (("expect", "build_min_free_gib"), numbers), (("expect", "kernel_args"), anything),
    (("maintenance", 0, "until"), dates), (("maintenance", 0, "node"), names), (("checks",), anything),
    (("checks", 0), paths), (("remediation", "enabled"), anything), (("remediation", "kill_switch_file"), paths),
    (("remediation", "lock_key"), anything), (("remediation", "lock_ttl_s"), numbers),
    (("remediation", "max_unhealthy_masters"), numbers), (("remediation", "settle_timeout_s"), numbers),
    (("remediation", "budget_window_h"), numbers), (("remediation", "state_key"), anything),
    (("discovery",), anything), (("unknown",), anything), (("ssh", "knownhosts"), anything),
    (("expect", "master_units"), anything), (("expect", "master_units", 0), units), (("expect", "backup_unit"), units),
    (("expect", "backup_path"), node_paths), (("expect", "build_mount"), node_paths),
    (("expect", "builder_image"), images), (("ssh", "identity"), paths), (("apis", "tls", "ca"), paths),
]


def put(tree: Any, where: tuple[str | int, ...], value: Any) -> None:
    for key in where[:-1]:
        if isinstance(key, int):
            if not isinstance(tree, list) or not tree:
                return
            tree = tree[0]
        else:
            if not isinstance(tree, dict):
                return
            tree = tree.setdefault(key, {})
    if isinstance(where[-1], int):
        if isinstance(tree, list) and tree:
            tree[0] = value
    elif isinstance(tree, dict):
        tree[where[-1]] = value


@st.composite
def mutated_inventories(draw: st.DrawFn) -> dict[str, Any]:
    """A valid inventory with one to three values replaced by random or nasty ones."""
    inventory = copy.deepcopy(draw(valid_inventories()))
    for where, values in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        put(inventory, where, draw(values))
    return inventory


# --------------------------------------------------------------------------- properties


@FAST
@given(mutated_inventories())
def test_any_inventory_loads_or_is_one_line(site: Path, inventory: dict[str, Any]) -> None:
    check(write(site, dump(inventory)))


@FAST
@given(valid_inventories(), anything, st.randoms(use_true_random=False))
def test_any_value_anywhere_loads_or_is_one_line(site: Path, inventory: dict[str, Any], value: Any,
                                                 random: Any) -> None:
    """Any one entry of any mapping or list of a valid inventory replaced by any value."""
    containers: list[Any] = [inventory]
    for item in containers:
        containers.extend(c for c in (item.values() if isinstance(item, dict) else item) if isinstance(c, dict | list))
    target = random.choice([c for c in containers if c])
    target[random.choice(list(target)) if isinstance(target, dict) else random.randrange(len(target))] = value
    check(write(site, dump(inventory)))


TOKENS = ["cluster: x\n", "nodes:\n", "  masters:\n", "    - {name: a1, address: 10.0.0.1}\n", "  agents:\n",
          "    - name: b1\n", "      address: ", "&a ", "*a ", "&b ", "*b ", "<<: *a\n", "[", "]", "{", "}", ", ",
          ": ", "- ", "? ", "\n", "  ", "    ", ".nan", ".inf", "-.inf", "2026-02-30", "2099-12-31", "!!int ",
          "!!binary ", "!!set ", "!!float ", "!!timestamp ", "!!python/object:os.system ", "'", '"', "#", "---\n",
          "|\n", ">\n", "\t", "\x00", "\x85", "é", "\\", "maintenance:\n  - {node: a1, reason: r, until: ",
          "apis: {nomad: {address: ", "ssh: {user: ", f"https://u:{SECRET}@h:1", "-oProxyCommand=x", "a;b",
          "9" * 30, "x" * 70, "remediation: {", "checks: [", "site-checks", "expect: {build_min_free_gib: "]


@FASTER
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_any_yaml_ish_text_loads_or_is_one_line(site: Path, text: str) -> None:
    check(write(site, text))


@FASTER
@given(st.text(max_size=300))
def test_any_characters_load_or_are_one_line(site: Path, text: str) -> None:
    check(write(site, text))


@FAST
@given(valid_inventories())
def test_valid_inventories_load_as_written(site: Path, inventory: dict[str, Any]) -> None:
    inv = check(write(site, dump(inventory)))
    assert inv is not None
    nodes = inventory["nodes"]["masters"] + inventory["nodes"]["agents"]
    assert [(n.name, n.address, n.az) for n in inv.nodes] == [(n["name"], n.get("address"), n.get("az")) for n in nodes]
    ssh, apis, remediation = inventory["ssh"], inventory["apis"], inventory["remediation"]
    assert (inv.ssh.user, inv.ssh.connect_timeout_s, inv.ssh.target) == (
        ssh["user"], ssh["connect_timeout_s"], ssh["target"])
    assert (inv.apis.timeout_s, inv.apis.retry_s, inv.apis.deadline_s) == (
        apis["timeout_s"], apis["retry_s"], apis["deadline_s"])
    assert inv.apis.consul is not None and inv.apis.consul.dns == apis["consul"]["dns"]
    assert (inv.remediation.enabled, inv.remediation.lock_ttl_s, inv.remediation.attempts) == (
        remediation["enabled"], remediation["lock_ttl_s"], remediation["attempts"])
    assert inv.remediation.kill_switch_file == site / "STOP"
    assert inv.check_dirs == tuple(site / d for d in inventory["checks"])


# --------------------------------------------------------------------------- each rule, against an oracle

BASE: dict[str, Any] = {
    "cluster": "lab", "ssh": {"user": "root", "known_hosts": "known_hosts"},
    "apis": {"nomad": {"address": "https://10.0.0.1:4646"}, "openstack": {"cloud": "lab"}},
    "nodes": {"masters": [{"name": "alimesos01", "address": "10.0.0.1"}],
              "agents": [{"name": "alibuild01", "address": "10.0.1.1", "kind": "vm"}]},
    "maintenance": [{"node": "alibuild01", "reason": "disk swap", "until": dt.date(2099, 12, 31)}],
}


def base_with(where: tuple[str | int, ...], value: Any) -> str:
    inventory = copy.deepcopy(BASE)
    put(inventory, where, value)
    return dump(inventory)


@FASTER
@given(names)
def test_a_node_name_is_accepted_exactly_when_it_is_a_host_name(site: Path, name: str) -> None:
    inv = check(write(site, base_with(("nodes", "agents", 0, "name"), name)))
    assert (inv is not None) == (host_name(name) and name not in ("cluster", "alimesos01")), name


@FASTER
@given(addresses)
def test_an_address_is_accepted_exactly_when_it_is_an_ip_address_or_a_host_name(site: Path, value: str) -> None:
    inv = check(write(site, base_with(("nodes", "masters", 0, "address"), value)))
    assert (inv is not None) == address(value), value


@FASTER
@given(users)
def test_a_user_is_accepted_exactly_when_it_is_a_posix_user_name(site: Path, user: str) -> None:
    inv = check(write(site, base_with(("ssh", "user"), user)))
    assert (inv is not None) == bool(re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", user)), user


@FASTER
@given(urls, st.sampled_from(["nomad", "prometheus"]))
def test_an_accepted_url_is_http_with_a_valid_host_and_no_credentials(site: Path, url: str, api: str) -> None:
    check(write(site, base_with(("apis", api, "address"), url)))  # check() asserts http_url() of what loads


# (where, whole number?, lowest, lowest excluded?, highest): the bounds the module's docstring documents
NUMBERS: list[tuple[tuple[str, ...], bool, float, bool, float]] = [
    (("ssh", "connect_timeout_s"), True, 1, False, 3600), (("ssh", "command_timeout_s"), True, 1, False, 3600),
    (("ssh", "control_persist_s"), True, 1, False, 86400), (("apis", "timeout_s"), False, 0, True, 600),
    (("apis", "retry_s"), False, 0, True, 600), (("apis", "deadline_s"), False, 0, True, 600),
    (("apis", "openstack", "timeout_s"), True, 1, False, 3600),
    (("expect", "build_min_free_gib"), False, 0, True, 1e6), (("expect", "puppet_max_age_h"), False, 0, True, 8760),
    (("expect", "remote_write_max_lag_s"), False, 0, True, 86400),
    (("remediation", "max_unhealthy_masters"), True, 0, False, 1000),
    (("remediation", "max_unhealthy_agents"), True, 0, False, 100_000),
    (("remediation", "max_disruptive_agents"), True, 0, False, 100_000),
    (("remediation", "drain_deadline_s"), False, 0, True, 7 * 86400),
    (("remediation", "settle_timeout_s"), False, 0, True, 3600),
    (("remediation", "lock_ttl_s"), True, 10, False, 86400), (("remediation", "attempts"), True, 1, False, 100),
    (("remediation", "budget_window_h"), False, 0, True, 8760),
]
EDGES = [0, 1, 9, 10, 11, 99, 100, 101, 600, 601, 1000, 1001, 3600, 3601, 8760, 8761, 86400, 86401, 100_000, 100_001,
         7 * 86400, 7 * 86400 + 1, 1e6, 1e6 + 1, 0.0, -0.0, 1e-9, 0.5, 600.0001, -1, 10**30, math.nan, math.inf,
         -math.inf, True, False, "10", None]


def number_accepted(value: Any, whole: bool, lo: float, above: bool, hi: float) -> bool:
    number = isinstance(value, int) if whole else isinstance(value, int | float) and math.isfinite(value)
    return value is None or (number and not isinstance(value, bool) and (lo < value if above else lo <= value)
                             and value <= hi)


def number_loaded(site: Path, where: tuple[str, ...], value: Any) -> Any:
    """The value as loaded at `where`; the _Refused marker when refused."""
    inv = check(write(site, base_with(where, value)))
    if inv is None:
        return REFUSED
    loaded: Any = inv
    for key in where:
        loaded = getattr(loaded, key)
    return loaded


REFUSED = object()


@pytest.mark.parametrize("spec", NUMBERS, ids=[".".join(n[0]) for n in NUMBERS])
def test_numbers_at_the_edges_of_their_bounds(site: Path,
                                              spec: tuple[tuple[str, ...], bool, float, bool, float]) -> None:
    where, whole, lo, above, hi = spec
    for value in EDGES:
        loaded = number_loaded(site, where, value)
        assert (loaded is not REFUSED) == number_accepted(value, whole, lo, above, hi), (where, value)
        if loaded is not REFUSED and value is not None:
            assert loaded == value and isinstance(loaded, int if whole else float), (where, value, loaded)


@FASTER
@given(st.sampled_from(NUMBERS), numbers)
def test_a_number_is_accepted_exactly_when_finite_and_within_its_bounds(
        site: Path, spec: tuple[tuple[str, ...], bool, float, bool, float], value: Any) -> None:
    where, whole, lo, above, hi = spec
    loaded = number_loaded(site, where, value)
    assert (loaded is not REFUSED) == number_accepted(value, whole, lo, above, hi), (where, value)
    if loaded is not REFUSED and value is not None:
        assert loaded == value and isinstance(loaded, int if whole else float)


TEXTS = [("cluster",), ("nodes", "agents", 0, "az"), ("nodes", "masters", 0, "project"), ("apis", "openstack", "cloud"),
         ("expect", "master_flavor"), ("maintenance", 0, "reason")]  # free text (node values: below)


@FASTER
@given(st.sampled_from(TEXTS), st.one_of(st.text(max_size=30), st.sampled_from(["", " ", "a\nb", "a\tb", "\x1b[31m"])))
def test_a_string_is_accepted_exactly_when_it_is_on_one_line(site: Path, where: tuple[str, ...], text: str) -> None:
    inv = check(write(site, base_with(where, text)))
    one_line = all(c.isprintable() or (where[-1] == "reason" and c in "\n\t") for c in text)  # a reason may span lines
    assert (inv is not None) == (bool(text.strip()) and one_line), (where, text)


@FASTER
@given(st.one_of(dates, st.datetimes(), st.dates().map(dt.date.isoformat)))
def test_a_date_is_accepted_exactly_when_it_is_a_day_of_the_calendar(site: Path, until: Any) -> None:
    inv = check(write(site, base_with(("maintenance", 0, "until"), until)))
    day: Any = until
    if isinstance(until, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", until):
        with contextlib.suppress(ValueError):
            day = dt.date.fromisoformat(until)
    assert (inv is not None) == isinstance(day, dt.date), until
    if inv is not None:
        assert inv.maintenance[0].until == (day.date() if isinstance(day, dt.datetime) else day)


@FAST
@given(st.integers(1, 8), st.integers(1, 9), st.sampled_from(["cluster: {}", "expect: {{kernel_args: {}}}",
                                                               "maintenance: {}", "nodes: {{agents: {}}}"]))
def test_aliases_of_aliases_load_or_are_refused_fast(site: Path, depth: int, fan: int, where: str) -> None:
    """Up to 9**8 values once expanded: loaded (small) or refused in one line, in well under a second."""
    entry = "{name: alibuild01, reason: r, node: alibuild01, until: 2099-01-01}" if "ma" in where else "x"
    chain = f"[&a0 {entry}" + "".join(f", &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]" for i in range(1, depth + 1))
    started = time.perf_counter()
    check(write(site, dump(BASE) + where.format(chain + "]") + "\n"))
    assert time.perf_counter() - started < 1

