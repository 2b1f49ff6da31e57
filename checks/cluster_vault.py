"""Vault (OpenBao in the lab) on every master: initialised and unsealed; across the cluster exactly one active
node, the others standby, HA enabled. Read from /v1/sys/health and /v1/sys/leader on each master and
/v1/sys/ha-status (one snapshot per run)."""

from __future__ import annotations

from collections.abc import Callable

from acceptance.checkspec import check
from acceptance.clients.vault_api import Health, Leader, VaultSnapshot
from acceptance.inventory import CLUSTER, Inventory, Node
from acceptance.judging import vault as judge_vault
from acceptance.outcomes import CheckError
from remediation.fixtures import unseal_vault

RUNBOOK = "Checklist to verify the status of a master"
RUNBOOK_ARCH = "Cluster architecture description"


@check("master.vault.initialised", runbook=RUNBOOK, severity="critical", remediation=unseal_vault,
       roles=["master"], needs=("reachable",))
def test_initialised(vault_snapshot: VaultSnapshot, node: Node) -> None:
    _assert_health(vault_snapshot, node, judge_vault.initialised_problem)


@check("master.vault.unsealed", runbook=RUNBOOK, severity="critical", remediation=unseal_vault,
       roles=["master"], needs=("reachable",))
def test_unsealed(vault_snapshot: VaultSnapshot, node: Node) -> None:
    _assert_health(vault_snapshot, node, judge_vault.unsealed_problem)


def _assert_health(snap: VaultSnapshot, node: Node, problem_of: Callable[[Health], str | None]) -> None:
    """The master's own /v1/sys/health judged by ``problem_of``; the message names the address asked."""
    masters = snap.masters
    problem = problem_of(masters.of(node.name).health)
    assert problem is None, f"{problem} at {masters.url_of(node.name)}"


@check("cluster.vault.one-active", runbook=RUNBOOK_ARCH, severity="critical", roles=[CLUSTER], needs=())
def test_one_active(vault_snapshot: VaultSnapshot, inventory: Inventory) -> None:
    masters = vault_snapshot.masters
    states = {}
    for m in (n for n in inventory.nodes if n.role == "master"):
        err = masters.error_of(m.name)
        if err is not None and not err.unreachable:
            raise CheckError(str(err))  # an answer the suite cannot read says nothing about the cluster
        states[m.name] = "no answer" if err is not None else judge_vault.state(masters.of(m.name).health)
    if not states:
        raise CheckError("no master in the inventory")
    problems = judge_vault.one_active_problems(states)
    assert not problems, "; ".join(problems)


@check("cluster.vault.ha", runbook=RUNBOOK_ARCH, severity="major", roles=[CLUSTER], needs=())
def test_ha(vault_snapshot: VaultSnapshot, inventory: Inventory) -> None:
    masters = [n for n in inventory.nodes if n.role == "master"]
    leaders: dict[str, Leader] = {}
    out_of_ha = []
    for name, value in vault_snapshot.masters.answered().items():
        if isinstance(value.leader, Leader):
            leaders[name] = value.leader
        elif judge_vault.state(value.health) in ("sealed", "not initialised"):
            out_of_ha.append(f"{name} ({judge_vault.state(value.health)})")  # its 503 on sys/leader is expected
        elif not value.leader.unreachable:
            raise CheckError(str(value.leader))
    if not leaders:
        raise CheckError("no master's Vault answered /v1/sys/leader")
    problems = judge_vault.ha_problems(leaders, vault_snapshot.ha_status, len(masters))
    if out_of_ha:
        problems.insert(0, f"not serving in the HA cluster: {', '.join(sorted(out_of_ha))}")
    assert not problems, "; ".join(problems)
