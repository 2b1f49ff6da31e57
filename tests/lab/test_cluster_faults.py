"""The suite's cluster checks against the lab: each fault fails exactly the checks it should (the
cluster's view of it through Nomad, Consul, Vault, Prometheus and OpenStack, and the node's own view),
and after the heal every check passes again."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..polling import wait_until
from . import faults
from .observe import LAB_ERRORS, lab, ssh, vault_health
from .test_suite_faults import not_passed, run_suite

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("lab_up")]

Key = tuple[str, str]
C = "cluster"
_failing: dict[str, str] = {}  # the agent fail-allocation picked, for its heal
MASTERS = ("alimesos01", "alimesos02", "alimesos03")


@dataclass
class Case:
    id: str
    inject: Callable[[], object]
    heal: Callable[[], object]
    fails: Callable[[], set[Key]]  # exactly these checks fail (or are blocked), once the fault has settled
    may_fail: set[Key] = field(default_factory=set)  # transient effects, e.g. allocations being replaced
    settle_s: float = 90


def _stopped(unit: str) -> list[str]:
    return [m for m in MASTERS if ssh(m, f"systemctl is-active {unit}").stdout.strip() != "active"]


def _vault_active() -> str:
    return next(m.name for m in lab().masters if vault_health(m.ip) == 200)


_state: dict[str, str] = {}
# independent faults for the side-by-side case (distinct checks)
_SIDE_BY_SIDE: list[tuple[str, str]] = [("wrong-flavor", "alibuild01"), ("detach-vdb", "alibuild02"),
                                         ("old-nomad", "alimesos02"), ("stop-unit:prometheus", "alimesos01")]


def _kill_consul_quorum() -> None:
    faults.inject("kill-leader:consul")
    running = [m for m in MASTERS if m not in _stopped("consul")]
    faults.inject("stop-unit:consul", running[0])


def _seal(which: str) -> None:
    active = _vault_active()
    target = active if which == "active" else next(m for m in MASTERS if m != active)
    _state["sealed"] = target
    faults.inject("seal-vault", target)


def _vault_sealed_fails() -> set[Key]:
    m = _state["sealed"]
    return {
        ("master.vault.unsealed", m),
        ("cluster.vault.one-active", C),
        ("cluster.vault.ha", C),
        ("cluster.consul.critical-checks", C),
    }


def _consul_down() -> set[Key]:
    return {
        ("cluster.consul.leader", C),
        ("cluster.consul.voters", C),
        ("cluster.consul.failure-tolerance", C),
        ("cluster.consul.members", C),
        ("cluster.consul.critical-checks", C),
        ("cluster.consul.dns", C),
        ("cluster.prometheus.targets", C),
        *{("master.units.consul", m) for m in _stopped("consul")},
    }


CASES = [
    Case(
        "kill-leader:consul+one-more",
        _kill_consul_quorum,
        lambda: faults.heal("kill-leader:consul"),
        _consul_down,
    ),
    Case(
        "kill-leader:nomad",
        lambda: faults.inject("kill-leader:nomad"),
        lambda: faults.heal("kill-leader:nomad"),
        lambda: {
            ("cluster.nomad.peers", C),
            ("cluster.nomad.failure-tolerance", C),
            ("cluster.prometheus.targets", C),
            *{("master.units.nomad", m) for m in _stopped("nomad")},
        },
    ),
    Case(
        "seal-vault[standby]",
        lambda: _seal("standby"),
        lambda: faults.heal("seal-vault", _state["sealed"]),
        _vault_sealed_fails,
    ),
    Case(
        "seal-vault[active]",
        lambda: _seal("active"),
        lambda: faults.heal("seal-vault", _state["sealed"]),
        _vault_sealed_fails,
    ),
    Case(
        "target-down[alibuild02]",
        lambda: faults.inject("target-down", "alibuild02"),
        lambda: faults.heal("target-down", "alibuild02"),
        lambda: {("cluster.prometheus.targets", C)},
    ),
    Case(
        "monit-down",
        lambda: faults.inject("monit-down"),
        lambda: faults.heal("monit-down"),
        lambda: {("cluster.prometheus.remote-write", C)},
        settle_s=150,
    ),
    Case(
        "unexpected-drain[alibuild01]",
        lambda: faults.inject("unexpected-drain", "alibuild01"),
        lambda: faults.heal("unexpected-drain", "alibuild01"),
        lambda: {("agent.nomad.ready", "alibuild01")},
        may_fail={("cluster.nomad.jobs-running", C)},
    ),
    Case(
        "orphan-server",
        lambda: faults.inject("orphan-server"),
        lambda: faults.heal("orphan-server"),
        lambda: {("cluster.drift.openstack-vs-nomad", C)},
    ),
    Case(
        "wrong-az[alimesos03]",
        lambda: faults.inject("wrong-az", "alimesos03"),
        lambda: faults.heal("wrong-az", "alimesos03"),
        lambda: {("cluster.openstack.master-azs", C)},
    ),
    Case(
        "power-off[alibuild02]",
        lambda: faults.inject("power-off", "alibuild02"),
        lambda: faults.heal("power-off", "alibuild02"),
        lambda: {
            ("node.openstack.active", "alibuild02"),
            ("node.ping", "alibuild02"),
            ("agent.nomad.ready", "alibuild02"),
            ("cluster.prometheus.targets", C),
            ("cluster.consul.members", C),  # a client agent shut down cleanly leaves (leave_on_terminate)
        },
        may_fail={("cluster.nomad.jobs-running", C), ("cluster.consul.dns", C), ("cluster.consul.critical-checks", C)},
    ),
    Case(
        "stop-unit:nomad[alibuild01]",
        lambda: faults.inject("stop-unit:nomad", "alibuild01"),
        lambda: faults.heal("stop-unit:nomad", "alibuild01"),
        lambda: {
            ("agent.units.nomad", "alibuild01"),
            ("agent.nomad.ready", "alibuild01"),
            ("cluster.prometheus.targets", C),
            ("cluster.consul.critical-checks", C),
            ("cluster.consul.members", C),  # the lab's Nomad client is its node's Consul agent too
        },
        may_fail={("cluster.nomad.jobs-running", C), ("cluster.consul.dns", C)},
    ),
    Case(
        "exhaust-reschedule",
        lambda: faults.inject("exhaust-reschedule"),
        lambda: faults.heal("exhaust-reschedule"),
        lambda: {("cluster.nomad.jobs-running", C)},
    ),
    Case(
        "fail-allocation[an agent running CI]",
        lambda: faults.inject("fail-allocation", _failing.setdefault("node", faults.agent_running_ci())),
        lambda: faults.heal("fail-allocation", _failing.pop("node")),
        lambda: {("cluster.nomad.jobs-running", C)},
    ),
    Case(
        "disconnect-agent[alibuild01]",
        lambda: faults.inject("disconnect-agent", "alibuild01"),
        lambda: faults.heal("disconnect-agent", "alibuild01"),
        lambda: {("agent.nomad.ready", "alibuild01")},
        may_fail={("cluster.nomad.jobs-running", C)},
    ),
    Case(
        "wipe-vault[alimesos03]",
        lambda: faults.inject("wipe-vault", "alimesos03"),
        lambda: faults.heal("wipe-vault", "alimesos03"),
        lambda: {
            ("master.vault.initialised", "alimesos03"),
            ("master.vault.unsealed", "alimesos03"),
            ("cluster.vault.one-active", C),
            ("cluster.vault.ha", C),
            ("cluster.consul.critical-checks", C),
        },
        may_fail={("cluster.prometheus.targets", C)},  # while OpenBao restarts
    ),
    # independent faults side by side (distinct checks): each must fail its own, and only those
    Case(
        "wrong-flavor+detach-vdb+old-nomad+prometheus-down",
        lambda: [faults.inject(f, n) for f, n in _SIDE_BY_SIDE],
        lambda: [faults.heal(f, n) for f, n in _SIDE_BY_SIDE],
        lambda: {
            ("node.openstack.flavor", "alibuild01"),
            ("agent.openstack.vdb", "alibuild02"),
            ("cluster.nomad.versions", C),
            ("master.prometheus.healthy", "alimesos01"),
        },
    ),
]



def _problems(report_dir: Path) -> set[Key]:
    """Checks that did not pass; a node's checks blocked by its own root failure are left out."""
    summary = run_suite(report_dir, modules=["checks"])
    return {k for k, r in not_passed(summary).items() if r["outcome"] != "blocked"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cluster_fault_fails_exactly_its_checks(case: Case, tmp_path: Path) -> None:

    def fails_exactly_its_checks() -> bool:
        """Runs the suite; an AssertionError says how its failures differ from the fault's (not settled yet)."""
        seen = _problems(tmp_path / f"run{int(time.monotonic())}")
        expected = case.fails()
        assert expected - seen == set(), f"{case.id}: expected failures that did not happen; seen: {sorted(seen)}"
        assert seen - expected - case.may_fail == set(), f"{case.id}: unexpected failures; seen: {sorted(seen)}"
        return True

    case.inject()
    try:
        wait_until(fails_exactly_its_checks, timeout=case.settle_s, interval=5,
                   what=f"{case.id} to fail exactly its checks", ignore=AssertionError)
    finally:
        case.heal()
    wait_until(lambda: _problems(tmp_path / "healed") == set(), timeout=240, interval=5,
               what=f"{case.id}: the heal to restore every check", ignore=LAB_ERRORS)
