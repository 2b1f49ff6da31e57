"""Node-side values (security issue, point 9): every inventory value that reaches a command on a node is
validated on load (unit names by systemd's grammar, absolute paths, image references, lists that define checks
not empty, regular files) and follows ``--`` wherever the command takes one; remediation refuses, before
anything runs, a value the loader would have refused (an ``Expectations`` built in a site's conftest)."""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from acceptance.inventory import (
    UNIT_TYPES,
    Expectations,
    InventoryError,
    Node,
    load_inventory,
    valid_backup_path,
    valid_image,
    valid_node_path,
    valid_unit_name,
)
from remediation.actions import pull_image, restart_backup, restart_unit
from remediation.model import Progress, Refused

from .conftest import EXAMPLE
from .test_remediation_actions import Result

MASTER = Node("alimesos01", "master", address="127.0.0.1")
AGENT = Node("alibuild01", "agent", address="127.0.1.1", kind="vm")


def _expect(text: str) -> str:
    """EXAMPLE with an ``expect`` section (before maintenance)."""
    return EXAMPLE.replace("maintenance:\n", f"expect: {text}\nmaintenance:\n", 1)


def refused(write_inventory: Any, text: str) -> str:
    path = write_inventory(text)
    with pytest.raises(InventoryError) as e:
        load_inventory(path)
    message = str(e.value)
    assert message.splitlines() == [message] and message.startswith(str(path)) and "; fix: " in message
    return message


@dataclass
class RecordingHost:
    """testinfra's host as the actions use it: every command line recorded (as testinfra quotes it); units
    answer ``units`` (name -> (ActiveState, UnitFileState)), anything else rc 0 and no output."""

    units: dict[str, tuple[str, str]] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)

    def service(self, name: str) -> Any:
        self.ran.append(f"systemctl show {name}")
        active, enabled = self.units.get(name, ("inactive", "disabled"))
        props = {"LoadState": "loaded", "ActiveState": active, "SubState": "x", "UnitFileState": enabled}
        return type("Service", (), {"systemd_properties": props})()

    def file(self, path: str) -> Any:
        return type("File", (), {"exists": True, "content_string": ""})()

    def run(self, command: str, *args: str) -> Result:
        line = command % tuple(shlex.quote(a) for a in args)
        self.ran.append(line)
        words = line.split()
        if words[:2] == ["systemctl", "start"]:
            self.units[words[-1]] = ("active", self.units.get(words[-1], ("", "enabled"))[1])
        if words[:2] == ["systemctl", "enable"]:
            self.units[words[-1]] = (self.units.get(words[-1], ("inactive", ""))[0], "enabled")
        return Result()


# --------------------------------------------------------------------------- the four bullets


def test_a_unit_that_looks_like_an_option_is_refused(write_inventory: Any) -> None:
    """Bullet 1: ``master_units: ['--host=evil']`` became ``systemctl show --host=evil`` on the node."""
    message = refused(write_inventory, _expect("{master_units: ['--host=evil']}"))
    assert "expect.master_units[0]" in message and "starts with '-'" in message


def test_remediation_puts_every_unit_after_double_dash() -> None:
    """Bullet 1, remediation: ``systemctl enable/start/restart -- UNIT``, never the unit where an option goes."""
    host = RecordingHost({"consul": ("failed", "disabled"), "dsmcad": ("active", "enabled")})
    restart_unit(MASTER, host, "consul").do(Progress())
    restart_backup(MASTER, host, Expectations()).do(Progress())
    built = [line for line in host.ran if line.startswith("systemctl ") and not line.startswith("systemctl show")]
    assert built == ["systemctl enable -- consul", "systemctl start -- consul", "systemctl restart -- dsmcad"]


def test_a_backup_path_that_looks_like_an_option_is_refused(write_inventory: Any) -> None:
    """Bullet 2: a ``backup_path`` starting with '-' is read by dsmc as an option; paths are absolute."""
    for value in ("-subdir=yes", "build/consul"):
        message = refused(write_inventory, _expect(f"{{backup_path: '{value}'}}"))
        assert "expect.backup_path" in message and "absolute" in message


def test_remediation_never_gives_dsmc_a_path_it_would_read_as_an_option() -> None:
    """Bullet 2, remediation: dsmc has no ``--``, so an Expectations built in Python is refused before anything
    runs on the node."""
    host = RecordingHost({"dsmcad": ("active", "enabled")})
    with pytest.raises(Refused, match="backup_path"):
        restart_backup(MASTER, host, Expectations(backup_path="-subdir=yes")).do(Progress())
    assert host.ran == []


@pytest.mark.parametrize("key", ["master_units", "agent_units", "kernel_args", "ci_jobs", "prometheus_jobs"])
def test_an_empty_list_that_defines_checks_is_refused(write_inventory: Any, key: str) -> None:
    """Bullet 3: ``master_units: []`` silently dropped the unit checks."""
    message = refused(write_inventory, _expect(f"{{{key}: []}}"))
    assert f"expect.{key}" in message and "empty" in message


@pytest.mark.parametrize(("old", "key"), [
    ("known_hosts: known_hosts", "ssh.known_hosts"), ("config: ssh_config", "ssh.config"),
    ("identity: id_ed25519", "ssh.identity"), ("ca: ca.pem", "apis.tls.ca")])
def test_a_file_the_suite_reads_must_be_a_regular_file(write_inventory: Any, old: str, key: str) -> None:
    """Bullet 4: ``ssh.known_hosts: /dev/zero`` was accepted (and read without end)."""
    assert Path("/dev/zero").exists()
    message = refused(write_inventory, EXAMPLE.replace(old, old.split(":")[0] + ": /dev/zero", 1))
    assert key in message and "not a regular file" in message



# --------------------------------------------------------------------------- the grammars, and oracles read
# independently from their sources (systemd.unit(5), distribution/reference), shared with test_inventory_properties


def unit_name(name: str) -> bool:
    """systemd.unit(5): [prefix of A-Za-z0-9:_.-\\][@instance][.type]; no type means '.service' (systemctl adds
    it); 255 characters with the type; and never an option to systemctl."""
    suffix = next((t for t in UNIT_TYPES if name.endswith("." + t)), None)
    stem = name[: -len(suffix) - 1] if suffix else name
    return (not name.startswith("-") and len(stem) + 1 + len(suffix or "service") <= 255
            and re.fullmatch(r"[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]+)?", stem) is not None)


def node_path(path: str) -> bool:
    return path.startswith("/") and path.isprintable() and len(path) <= 4096


good_units = st.sampled_from(["nomad", "nomad.service", "getty@tty1.service", "systemd-journald.service", "a:b_c",
                              "dev-sda1.device", "build.mount", "a\\x2db.mount", "node_exporter", "foo.bar",
                              "puppet-run.timer", "x" * 247])
units = st.one_of(good_units, st.text("ab-@.:_\\ ;$*/", max_size=12), st.sampled_from([
    "--host=evil", "-H", "-", "a b", "a;reboot", "$(id)", "foo@.service", "@x.service", ".service", "a*", "x" * 256,
    "x" * 248, "a@b@c", "é.service", "nomad\n", "", "a/b", "getty@tty1@x", "-.mount"]))
good_paths = st.sampled_from(["/build", "/build/consul", "/var/log/tsm/dsmsched.log", "/a b/c", "/"])
node_paths = st.one_of(good_paths, st.text("/a-. *?~\n", max_size=12), st.sampled_from([
    "-subdir=yes", "build/consul", "~/x", "./x", "--", "", " /build", "/build\n", "/" + "x" * 4096]))
good_images = st.sampled_from(["registry.cern.ch/alisw/slc9-builder", "registry.cern.ch/alisw/slc9-builder:latest",
                               "localhost:5000/a/b_c", "busybox", "a/b@sha256:" + "0" * 64, "x.y:5000/z:v1.2-3"])
images = st.one_of(good_images, st.text("a-:/.@ A;_", max_size=16), st.sampled_from([
    "-q", "--help", "registry.cern.ch/Alisw/x", "a b", "a;reboot", "a//b", "a:", "a@sha256:zz", "x" * 256, "a__-b"]))


@pytest.mark.parametrize("name", ["nomad", "nomad.service", "getty@tty1.service", "systemd-journald.service",
                                  "dev-sda1.device", "a\\x2db.mount", "node_exporter", "foo.bar", "x" * 247,
                                  "x" * 246 + ".service", "cpu:1.slice", "puppet-run.timer", "vault"])
def test_valid_unit_names(name: str) -> None:
    assert valid_unit_name(name) is None and unit_name(name)


@pytest.mark.parametrize(("name", "problem"), [
    ("--host=evil", "starts with '-'"), ("-.mount", "starts with '-'"), ("a b", "contains ' '"),
    ("a;reboot", "contains ';'"), ("docker*", "contains '*'"), ("a/b", "contains '/'"), ("é.service", "contains 'é'"),
    ("nomad\n", "contains '\\n'"), ("getty@.service", "is a template"), ("@x.service", "no name before '@'"),
    (".service", "no name before its suffix"), ("a@b@c", "more than one '@'"), ("x" * 248, "more than 255"),
    ("", "expected a unit name")])
def test_invalid_unit_names(name: str, problem: str) -> None:
    found = valid_unit_name(name)
    assert found is not None and problem in found and "\n" not in found and not unit_name(name)


@pytest.mark.parametrize(("path", "problem"), [
    ("-subdir=yes", "read it as an option"), ("build/consul", "not an absolute path"), ("~/x", "not an absolute"),
    ("/" + "x" * 4096, "more than 4096")])
def test_invalid_node_paths(path: str, problem: str) -> None:
    found = valid_node_path(path)
    assert found is not None and problem in found


@pytest.mark.parametrize("path", ["/build/*", "/build/consul?", "/{build}/consul", "/build/[ab]"])
def test_a_backup_path_has_no_tsm_wildcard(path: str) -> None:
    assert valid_node_path(path) is None and "dsmc reads as a wildcard" in (valid_backup_path(path) or "")


@pytest.mark.parametrize("image", ["registry.cern.ch/alisw/slc9-builder", "registry.cern.ch/alisw/slc9-gpu-builder:v2",
                                   "localhost:5000/a/b_c", "busybox", "a/b@sha256:" + "0" * 64, "x.y:5000/z:v1.2-3"])
def test_valid_images(image: str) -> None:
    assert valid_image(image) is None


@pytest.mark.parametrize("image", ["-q", "--help", "registry.cern.ch/Alisw/x", "a b", "a;reboot", "$(id)", "a//b",
                                   "a:", "a@sha256:zz", "x" * 256, "", "a:" + "t" * 129])
def test_invalid_images(image: str) -> None:
    assert valid_image(image) is not None


def test_every_default_expectation_obeys_its_own_rule() -> None:
    """The ALICE defaults (reference/alice-facts.md) pass the rules the loader applies to what a file says."""
    for f in dataclasses.fields(Expectations):
        check, default = f.metadata.get("rule") and f.metadata["rule"].check, f.default
        for value in default if isinstance(default, tuple) else (default,):
            assert check is None or check(value) is None, (f.name, value)


def test_the_inventories_in_use_stay_valid(write_inventory: Any) -> None:
    """The README's example, the lab's (tests/lab/statefiles.py) and suffixed or instance unit names."""
    for expect in ("{builder_image: registry.cern.ch/alisw/slc9-builder, kernel_args: [systemd.unified_cgroup_"
                   "hierarchy=0], build_min_free_gib: 240}",
                   "{builder_image: registry.cern.ch/alisw/slc9-builder, build_min_free_gib: 240, puppet_summary: "
                   "/opt/puppetlabs/puppet/public/last_run_summary.yaml}",
                   "{master_units: [docker.service, nomad, consul, vault, prometheus], agent_units: [docker, nomad, "
                   "node_exporter, 'getty@tty1.service'], backup_unit: dsmcad.service, backup_path: /build/consul/}"):
        assert load_inventory(write_inventory(_expect(expect))).expect is not None


def test_every_value_docker_and_find_take_follows_double_dash() -> None:
    host = RecordingHost({"dsmcad": ("active", "enabled")})
    pull_image(AGENT, host, "registry.cern.ch/alisw/slc9-builder:latest").do(Progress())
    restart_backup(MASTER, host, Expectations(backup_path="/build/my consul")).do(Progress())
    assert "timeout 900 docker pull -q -- registry.cern.ch/alisw/slc9-builder:latest" in host.ran
    assert "find -- '/build/my consul' -type f -printf '%s %p\\n'" in host.ran
    # dsmc takes no '--' (IBM documents none): an absolute path, shell-quoted, is one file specification
    assert "dsmc incremental '/build/my consul'" in host.ran
    assert "dsmc query backup '/build/my consul/*' -subdir=yes" in host.ran


@pytest.mark.parametrize(("build", "what"), [
    (lambda h: pull_image(AGENT, h, "--help"), "builder_image"),
    (lambda h: restart_backup(MASTER, h, Expectations(backup_unit="-H")), "backup_unit"),
    (lambda h: restart_backup(MASTER, h, Expectations(backup_path="/build/*")), "backup_path"),
    (lambda h: restart_unit(AGENT, h, "-H"), "unit")])
def test_remediation_refuses_what_the_loader_would_before_anything_runs(build: Any, what: str) -> None:
    host = RecordingHost()
    action = build(host)
    assert action.state() == "" and action.resolve is not None
    with pytest.raises(Refused, match=what):
        action.resolve()  # what the engine does first, in a dry run too: 'refused', never 'planned'
    with pytest.raises(Refused, match=what) as e:
        action.do(Progress())
    assert e.value.guardrail == "node-value" and host.ran == []


# --------------------------------------------------------------------------- properties: each rule, against its oracle

FAST = settings(max_examples=200, deadline=None, database=None)
BASE: dict[str, Any] = {"ssh": {"known_hosts": "known_hosts"},
                        "nodes": {"masters": [{"name": "alimesos01", "address": "10.0.0.1"}]}}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "known_hosts").write_text("")
    return root


def accepted(site: Path, key: str, value: Any) -> bool:
    path = site / "inventory.yaml"
    path.write_text(yaml.safe_dump({**BASE, "expect": {key: value}}), encoding="utf-8")
    try:
        load_inventory(path)
    except InventoryError as e:
        assert str(e).splitlines() == [str(e)] and f"expect.{key}" in str(e)
        return False
    return True


@FAST
@given(units, st.sampled_from(["master_units", "agent_units", "backup_unit"]))
def test_a_unit_is_accepted_exactly_when_it_is_a_systemd_unit_name(site: Path, unit: str, key: str) -> None:
    assert accepted(site, key, unit if key == "backup_unit" else [unit]) == unit_name(unit), unit


@FAST
@given(node_paths, st.sampled_from(["build_mount", "puppet_summary", "backup_sched_log", "backup_path"]))
def test_a_node_path_is_accepted_exactly_when_it_is_absolute(site: Path, path: str, key: str) -> None:
    tsm = key != "backup_path" or not any(c in path for c in "*?[]{}")  # dsmc's wildcards and braces
    assert accepted(site, key, path) == (node_path(path) and tsm), (key, path)


@FAST
@given(images)
def test_an_accepted_image_is_a_reference_docker_cannot_read_as_an_option(site: Path, image: str) -> None:
    if accepted(site, "builder_image", image):
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*", image) and "//" not in image, image
    else:
        assert image not in ("registry.cern.ch/alisw/slc9-builder", "busybox", "localhost:5000/a/b_c")
