"""The guardrails that decide whether an action may run (each returns why not, or None):

- the kill switch: the inventory's ``remediation.enabled: false``, the kill-switch file (by default
  ``STOP-REMEDIATION`` beside the inventory), or the cluster-wide one (remediation/switch.py);
- the quorum gate for a master (the two others healthy in Nomad, Consul and Vault).

The blast radius is remediation/blast.py; the workload gate (drained, idle) lives in the engine, which drains.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from acceptance.clients.config import api_config, master_urls
from acceptance.inventory import Inventory, Node
from acceptance.judging.raft import server_is
from remediation import switch
from remediation.clients import Api, vault_health
from remediation.leadership import Raft
from remediation.model import ActionFailed
from remediation.state import StateUnavailable


def kill_switch(inventory: Inventory, consul: Api) -> str | None:
    """Why nothing may be remediated now: the inventory, the local file, or the cluster-wide switch (which, when
    it cannot be read, stops everything too)."""
    settings = inventory.remediation
    if not settings.enabled:
        return f"{inventory.path}: remediation.enabled is false (the kill switch)"
    path = kill_switch_path(inventory)
    if path.exists():
        return f"the kill switch {path} exists: remove it to allow remediation"
    try:
        entry = switch.stopped(consul, settings.stop_key)
    except StateUnavailable as e:
        return f"cannot read the cluster's kill switch ({e}): act on nothing"
    return f"the cluster's kill switch is on: {switch.describe_stop(entry)}" if entry else None


def kill_switch_path(inventory: Inventory) -> Path:
    return inventory.remediation.kill_switch_file or inventory.path.parent / "STOP-REMEDIATION"


def _servers_healthy(name: str, inventory: Inventory, masters: Sequence[Node], others: Sequence[Node]) -> list[str]:
    raft = Raft(Api(api_config(name, inventory, masters=list(masters))))
    try:  # 429 is autopilot's "some server is unhealthy", read as the clients read it
        autopilot = raft.autopilot()
    except ActionFailed as e:
        return [f"{name}: cannot read autopilot health ({e})"]
    problems = []
    for other in others:
        mine = [s for s in autopilot.servers if server_is(s, other.name, other.address)]
        if not mine or not mine[0].healthy or not mine[0].voter:
            problems.append(f"{name} server on {other.name} is not a healthy voter")
    return problems


def _vault_healthy(inventory: Inventory, masters: Sequence[Node], others: Sequence[Node]) -> list[str]:
    cfg = api_config("vault", inventory, masters=list(masters))
    problems = []
    for other in others:
        one = cfg.for_url(master_urls(cfg.url, [other], 8200)[0])
        try:
            body = vault_health(Api(one))
        except ActionFailed as e:
            problems.append(f"vault on {other.name}: {e}")
            continue
        if not isinstance(body, dict) or body.get("sealed") is not False or body.get("initialized") is not True:
            problems.append(f"vault on {other.name} is sealed or not initialised")
    return problems


def quorum(inventory: Inventory, master: Node, masters: Sequence[Node]) -> str | None:
    """A master may be disrupted only when the two others are healthy in Nomad, Consul and Vault."""
    others = [m for m in masters if m.name != master.name]
    if len(others) < 2:
        return f"quorum gate: {master.name} has {len(others)} other masters, 2 are needed"
    problems = (_servers_healthy("nomad", inventory, masters, others)
                + _servers_healthy("consul", inventory, masters, others)
                + _vault_healthy(inventory, masters, others))
    if problems:
        return "quorum gate: " + "; ".join(problems)
    return None
