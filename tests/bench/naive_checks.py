"""The same node checks as the suite, written as a team would first write them with plain testinfra: its
`host` fixture, its default ssh backend (a new ssh connection per command), one test per property. The naive
baseline of tests/bench/speed.py, which runs this file with `--hosts` and `--ssh-config` of the lab. Not
collected by the project's own test run (the name does not start with test_)."""

from __future__ import annotations

import time

import pytest
import yaml

PUPPET = "/opt/puppetlabs/puppet/public/last_run_summary.yaml"
UNITS = {"master": ["docker", "nomad", "consul", "vault"], "agent": ["docker", "nomad"]}


def role(host) -> str:  # type: ignore[no-untyped-def]
    return "master" if host.backend.get_hostname().startswith("alimesos") else "agent"


def only(host, wanted: str) -> None:  # type: ignore[no-untyped-def]
    if role(host) != wanted:
        pytest.skip(f"{wanted}s only")


def test_ssh_user(host) -> None:  # type: ignore[no-untyped-def]
    assert host.user().name == "root"


@pytest.mark.parametrize("index", range(4))
def test_unit(host, index: int) -> None:  # type: ignore[no-untyped-def]
    units = UNITS[role(host)]
    if index >= len(units):
        pytest.skip("no such unit on this role")
    service = host.service(units[index])
    assert service.is_running
    assert service.is_enabled


def test_puppet_clean(host) -> None:  # type: ignore[no-untyped-def]
    summary = yaml.safe_load(host.file(PUPPET).content_string)
    assert summary["resources"]["failed"] == 0
    assert summary["events"]["failure"] == 0


def test_puppet_recent(host) -> None:  # type: ignore[no-untyped-def]
    summary = yaml.safe_load(host.file(PUPPET).content_string)
    now = int(host.check_output("date +%s"))
    assert now - summary["time"]["last_run"] < 2 * 3600


def test_dsmcad(host) -> None:  # type: ignore[no-untyped-def]
    only(host, "master")
    assert host.service("dsmcad").is_running


def test_backup_recent(host) -> None:  # type: ignore[no-untyped-def]
    only(host, "master")
    out = host.check_output("dsmc query filespace")
    line = next(line for line in out.splitlines() if line.rstrip().endswith("/build/consul"))
    stamp = " ".join(line.split()[1:3])
    age = int(host.check_output("date +%s")) - time.mktime(time.strptime(stamp, "%m/%d/%Y %H:%M:%S"))
    assert age < 26 * 3600


def test_backup_success(host) -> None:  # type: ignore[no-untyped-def]
    only(host, "master")
    log = host.check_output("tail -n 400 /var/log/tsm/dsmsched.log")
    assert "completed successfully" in [line for line in log.splitlines() if "Scheduled event" in line][-1]


def test_cmdline(host) -> None:  # type: ignore[no-untyped-def]
    only(host, "agent")
    assert "systemd.unified_cgroup_hierarchy=0" in host.file("/proc/cmdline").content_string


def test_builder_image(host) -> None:  # type: ignore[no-untyped-def]
    only(host, "agent")
    assert "registry.cern.ch/alisw/slc9-builder" in host.check_output("docker images --format '{{.Repository}}'")


def test_build_mounted(host) -> None:  # type: ignore[no-untyped-def]
    only(host, "agent")
    if host.backend.get_hostname().startswith("alimetal"):
        pytest.skip("no vdb volume on bare metal")
    assert host.mount_point("/build").exists


def test_build_free(host) -> None:  # type: ignore[no-untyped-def]
    only(host, "agent")
    avail = int(host.check_output("df -B1 --output=avail /build | tail -1"))
    assert avail > 0.5 * 2**30
