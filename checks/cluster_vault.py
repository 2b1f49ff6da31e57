"""Vault (OpenBao in the lab) on every master: initialised and unsealed; across the cluster exactly one active
node, the others standby, HA enabled. Read from /v1/sys/health and /v1/sys/leader on each master and
/v1/sys/ha-status (one snapshot per run)."""

from __future__ import annotations

from acceptance.apifixtures import assert_reachable
from acceptance.checkspec import check
from acceptance.clients import vault_api
from acceptance.clients.snapshot import Snapshot, Snapshots
from acceptance.inventory import Inventory, Node
from acceptance.outcomes import CheckError
from remediation.fixtures import unseal_vault

RUNBOOK = "Checklist to verify the status of a master"
RUNBOOK_ARCH = "Cluster architecture description"
CLUSTER = ("cluster",)


def _health(vault: Snapshot, node: Node) -> dict[str, object]:
    err = vault.error(f"health:{node.name}")
    if err is not None:
        if err.kind == "unreachable":
            raise AssertionError(str(err))  # this master's Vault does not answer: a verdict on the node
        raise CheckError(str(err))
    health: dict[str, object] = vault.get(f"health:{node.name}")
    return health


@check("api.vault.reachable", runbook=RUNBOOK_ARCH, severity="critical", roles=CLUSTER, needs=())
def test_reachable(snapshots: Snapshots) -> None:
    assert_reachable(snapshots.get("vault"))


@check("master.vault.initialised", runbook=RUNBOOK, severity="critical", remediation=unseal_vault,
       roles=["master"], needs=("reachable",))
def test_initialised(vault_snapshot: Snapshot, node: Node) -> None:
    problem = vault_api.initialised_problem(_health(vault_snapshot, node))
    assert problem is None, f"{problem} at {vault_snapshot.parts.get(f'url:{node.name}')}"


@check("master.vault.unsealed", runbook=RUNBOOK, severity="critical", remediation=unseal_vault,
       roles=["master"], needs=("reachable",))
def test_unsealed(vault_snapshot: Snapshot, node: Node) -> None:
    problem = vault_api.unsealed_problem(_health(vault_snapshot, node))
    assert problem is None, f"{problem} at {vault_snapshot.parts.get(f'url:{node.name}')}"


@check("cluster.vault.one-active", runbook=RUNBOOK_ARCH, severity="critical", roles=CLUSTER, needs=())
def test_one_active(vault_snapshot: Snapshot, inventory: Inventory) -> None:
    states = {}
    for m in (n for n in inventory.nodes if n.role == "master"):
        err = vault_snapshot.error(f"health:{m.name}")
        states[m.name] = "no answer" if err is not None else vault_api.state(vault_snapshot.get(f"health:{m.name}"))
    problems = vault_api.one_active_problems(states)
    assert not problems, "; ".join(problems)


@check("cluster.vault.ha", runbook=RUNBOOK_ARCH, severity="major", roles=CLUSTER, needs=())
def test_ha(vault_snapshot: Snapshot, inventory: Inventory) -> None:
    masters = [n for n in inventory.nodes if n.role == "master"]
    leaders = {m.name: vault_snapshot.parts[f"leader:{m.name}"] for m in masters
               if f"leader:{m.name}" in vault_snapshot.parts}
    if not leaders:
        raise CheckError("no master's Vault answered /v1/sys/leader")
    problems = vault_api.ha_problems(leaders, vault_snapshot.get("ha_status"), len(masters))
    assert not problems, "; ".join(problems)
