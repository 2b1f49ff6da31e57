"""Every fault changes what it says, seen from outside (ssh, ping, the real APIs), and its heal
restores the healthy state."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from ..polling import wait_until
from . import faults, labapi
from .observe import (
    LAB_ERRORS,
    consul_get,
    lab,
    nomad_get,
    nomad_node,
    nova_server,
    nova_servers,
    pings,
    prometheus,
    puppet_summary,
    ssh,
    ssh_ok,
    target_health,
    vault_health,
)
from .topology import BUILD_MIN_FREE_GIB, BUILDER_IMAGE

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("lab_up")]

Probe = Callable[[], bool]


@dataclass
class Case:
    fault: str
    node: str
    healthy: Probe
    broken: Probe
    timeout: float = 60
    after_inject: Callable[[], None] | None = None

    @property
    def id(self) -> str:
        return f"{self.fault}[{self.node or 'cluster'}]"


def unit_active(node: str, unit: str) -> bool:
    return ssh(node, f"systemctl is-active {unit}").stdout.strip() == "active"


def nomad_status(node: str) -> str:
    return str(nomad_node(node)["Status"])


def has_image(node: str) -> bool:
    return ssh(node, f"docker image inspect {BUILDER_IMAGE}").returncode == 0


def puppet_failures(node: str) -> int:
    s = puppet_summary(node)
    return int(s["events"]["failure"]) + int(s["resources"]["failed"])


def cmdline_has_cgroup_arg(node: str) -> bool:
    out = ssh(node, "cat /proc/cmdline")
    assert out.returncode == 0
    return faults.CGROUP_ARG in out.stdout.split()


def build_free_gib(node: str) -> float:
    return int(ssh(node, "df -B1 --output=avail /build | tail -1").stdout) / 2**30


def last_backup_event(node: str) -> str:
    out = ssh(
        node, "grep -E \"Scheduled event '.*' (completed successfully|failed)\" /var/log/tsm/dsmsched.log | tail -1"
    )
    return out.stdout.strip()


def last_incr_age_h(node: str) -> float:
    rows = [r for r in ssh(node, "dsmc query filespace").stdout.splitlines() if r.rstrip().endswith("/build/consul")]
    date, clock = rows[-1].split()[1:3]
    then = time.mktime(time.strptime(f"{date} {clock}", "%m/%d/%Y %H:%M:%S"))
    now = float(ssh(node, "date +%s").stdout)
    return (now - then) / 3600


def eligible(node: str) -> bool:
    n = nomad_node(node)
    return n["SchedulingEligibility"] == "eligible" and not n["Drain"]


def az(node: str) -> str:
    return str(nova_server(node)["OS-EXT-AZ:availability_zone"])


def remote_write_lag_s() -> float:
    rows = prometheus(
        "prometheus_remote_storage_highest_timestamp_in_seconds"
        " - ignoring(remote_name, url) group_right prometheus_remote_storage_queue_highest_sent_timestamp_seconds"
    )
    return max(float(r["value"][1]) for r in rows)


def hard_reboot(node: str) -> None:
    server = nova_server(node)
    status, _ = labapi.nova(
        "POST", "ALICE Release Testing", f"/servers/{server['id']}/action", {"reboot": {"type": "HARD"}}
    )
    assert status == 202
    wait_until(lambda: nova_server(node)["status"] == "ACTIVE" and ssh_ok(node), timeout=180, interval=2,
               what=f"{node} ACTIVE and answering ssh", ignore=LAB_ERRORS)


CASES = [
    Case(
        "stop-unit:nomad",
        "alibuild01",
        healthy=lambda: unit_active("alibuild01", "nomad") and nomad_status("alibuild01") == "ready",
        broken=lambda: not unit_active("alibuild01", "nomad") and nomad_status("alibuild01") == "down",
    ),
    Case(
        "stop-unit:docker",
        "alimesos02",
        healthy=lambda: unit_active("alimesos02", "docker"),
        broken=lambda: not unit_active("alimesos02", "docker"),
    ),
    Case(
        "seal-vault",
        "alimesos02",
        healthy=lambda: vault_health("172.30.0.12") in (200, 429),
        broken=lambda: vault_health("172.30.0.12") == 503,
    ),
    Case(
        "partition",
        "alibuild02",
        healthy=lambda: pings("172.30.1.2") and ssh_ok("alibuild02") and nomad_status("alibuild02") == "ready",
        # "disconnected" while one of its allocations has a disconnect block (ci-mesosci-slc9), else "down"
        broken=lambda: not pings("172.30.1.2") and not ssh_ok("alibuild02")
        and nomad_status("alibuild02") in ("down", "disconnected"),
    ),
    Case(
        "power-off",
        "alimetal01",
        healthy=lambda: nova_server("alimetal01")["status"] == "ACTIVE" and ssh_ok("alimetal01"),
        broken=lambda: nova_server("alimetal01")["status"] == "SHUTOFF" and not pings("172.30.2.1"),
        timeout=120,
    ),
    Case(
        "remove-builder-image",
        "alibuild02",
        healthy=lambda: has_image("alibuild02"),
        broken=lambda: not has_image("alibuild02"),
    ),
    Case(
        "break-puppet",
        "alibuild01",
        healthy=lambda: puppet_failures("alibuild01") == 0,
        broken=lambda: puppet_failures("alibuild01") > 0,
    ),
    Case(
        "drop-cgroup-arg",
        "alibuild02",
        healthy=lambda: cmdline_has_cgroup_arg("alibuild02"),
        broken=lambda: not cmdline_has_cgroup_arg("alibuild02"),
        timeout=30,
        after_inject=lambda: hard_reboot("alibuild02"),
    ),
    Case(
        "fill-build",
        "alibuild01",
        healthy=lambda: build_free_gib("alibuild01") >= BUILD_MIN_FREE_GIB,
        broken=lambda: build_free_gib("alibuild01") < BUILD_MIN_FREE_GIB,
    ),
    Case(
        "fail-backup",
        "alimesos01",
        healthy=lambda: "completed successfully" in last_backup_event("alimesos01"),
        broken=lambda: "ANS1512E" in last_backup_event("alimesos01"),
    ),
    Case(
        "stale-backup",
        "alimesos03",
        healthy=lambda: last_incr_age_h("alimesos03") < 26,
        broken=lambda: last_incr_age_h("alimesos03") > 26,
    ),
    Case(
        "unexpected-drain",
        "alibuild01",
        healthy=lambda: eligible("alibuild01"),
        broken=lambda: not eligible("alibuild01"),
    ),
    Case(
        "orphan-server",
        "",
        healthy=lambda: "alibuild99" not in nova_servers(),
        broken=lambda: (
            "alibuild99" in nova_servers() and "alibuild99" not in {n["Name"] for n in nomad_get("/v1/nodes")}
        ),
    ),
    Case(
        "wrong-az",
        "alimesos03",
        healthy=lambda: len({az(m) for m in ("alimesos01", "alimesos02", "alimesos03")}) == 3,
        broken=lambda: len({az(m) for m in ("alimesos01", "alimesos02", "alimesos03")}) == 2,
    ),
    Case(
        "target-down",
        "alibuild02",
        healthy=lambda: target_health("alibuild02.alicelab.test:9100") == {"up"},
        broken=lambda: target_health("alibuild02.alicelab.test:9100") == {"down"},
        timeout=40,
    ),
    Case(
        "monit-down",
        "",
        healthy=lambda: remote_write_lag_s() < 30,
        broken=lambda: remote_write_lag_s() > 30,
        timeout=120,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault_is_seen_and_healed(case: Case) -> None:
    wait_until(case.healthy, timeout=120, interval=2, what=f"the lab healthy before {case.id}", ignore=LAB_ERRORS)
    faults.inject(case.fault, case.node)
    try:
        if case.after_inject:
            case.after_inject()
        wait_until(case.broken, timeout=case.timeout, interval=2, what=f"{case.id} observable from outside",
                   ignore=LAB_ERRORS)
    finally:
        faults.heal(case.fault, case.node)
    wait_until(case.healthy, timeout=180, interval=2, what=f"{case.id}: the heal to restore the healthy state",
               ignore=LAB_ERRORS)


def test_kill_nomad_leader_elects_a_new_one() -> None:
    old = nomad_get("/v1/status/leader")
    assert old
    faults.inject("kill-leader:nomad")
    try:
        others = [f"https://{ip}:4646" for ip in ("172.30.0.11", "172.30.0.12", "172.30.0.13") if ip not in old]
        wait_until(lambda: nomad_get("/v1/status/leader", others[0]) not in ("", old), timeout=30, interval=1,
                   what="a new Nomad leader", ignore=LAB_ERRORS)
    finally:
        faults.heal("kill-leader:nomad")
    wait_until(lambda: len(nomad_get("/v1/status/peers")) == 3 and bool(nomad_get("/v1/status/leader")),
               timeout=60, interval=1, what="three Nomad peers and a leader", ignore=LAB_ERRORS)


def test_consul_without_quorum_has_no_leader_and_recovers() -> None:
    old = consul_get("/v1/status/leader")
    faults.inject("kill-leader:consul")
    try:
        survivors = [ip for ip in ("172.30.0.11", "172.30.0.12", "172.30.0.13") if ip not in old]
        wait_until(lambda: consul_get("/v1/status/leader", f"https://{survivors[0]}:8500") != "", timeout=30,
                   interval=1, what="a new Consul leader", ignore=LAB_ERRORS)
        second = next(m.name for m in lab().masters if m.ip == survivors[1])
        faults.inject("stop-unit:consul", second)
        wait_until(lambda: consul_get("/v1/status/leader", f"https://{survivors[0]}:8500") == "", timeout=30,
                   interval=1, what="Consul without a leader (one server of three left)", ignore=LAB_ERRORS)
    finally:
        faults.heal("kill-leader:consul")
    wait_until(lambda: consul_get("/v1/status/leader") != "", timeout=60, interval=1, what="a Consul leader",
               ignore=LAB_ERRORS)


def test_kill_vault_leader_moves_the_active_node() -> None:
    ips = ("172.30.0.11", "172.30.0.12", "172.30.0.13")
    active = [ip for ip in ips if vault_health(ip) == 200]
    assert len(active) == 1
    faults.inject("kill-leader:vault")
    try:
        wait_until(lambda: [vault_health(ip) for ip in ips if ip != active[0]].count(200) == 1, timeout=60,
                   interval=2, what="another OpenBao active", ignore=LAB_ERRORS)
        assert vault_health(active[0]) == 0
    finally:
        faults.heal("kill-leader:vault")
    wait_until(lambda: sorted(vault_health(ip) for ip in ips) == [200, 429, 429], timeout=120, interval=2,
               what="one active OpenBao and two standbys", ignore=LAB_ERRORS)
