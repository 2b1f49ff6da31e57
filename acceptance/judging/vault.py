"""What the Vault checks judge: each master's state, one active node, HA agreement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from acceptance.clients.vault_api import HEALTH_CODES, HaNode, Health, Leader


def state(health: Health) -> str:
    """active, standby, sealed, not initialised, ... from a /v1/sys/health answer."""
    if not health.initialized:
        return "not initialised"
    if health.sealed:
        return "sealed"
    if health.status in HEALTH_CODES:
        return HEALTH_CODES[health.status]
    return "standby" if health.standby else "active"


def initialised_problem(health: Health) -> str | None:
    return None if health.initialized else "Vault is not initialised"


def unsealed_problem(health: Health) -> str | None:
    return None if not health.sealed else "Vault is sealed (unsealing needs the key holders)"


def one_active_problems(states: Mapping[str, str]) -> list[str]:
    """Exactly one master active, every other one a standby."""
    active = sorted(m for m, s in states.items() if s == "active")
    others = sorted(f"{m} ({s})" for m, s in states.items() if s not in ("active", "standby"))
    problems = []
    if len(active) != 1:
        problems.append(f"{len(active)} active Vault nodes, expected exactly 1"
                        + (f": {', '.join(active)}" if active else ""))
    if others:
        problems.append(f"not a standby: {', '.join(others)}")
    return problems


def ha_problems(leaders: Mapping[str, Leader], ha_status: Sequence[HaNode], expected: int) -> list[str]:
    """HA enabled everywhere, every master agreeing on the active node, ha-status listing every node."""
    problems = []
    disabled = sorted(m for m, leader in leaders.items() if not leader.ha_enabled)
    if disabled:
        problems.append(f"HA is not enabled on {', '.join(disabled)}")
    addresses = {leader.leader_address.rstrip("/") for leader in leaders.values() if leader.ha_enabled}
    if len(addresses) > 1:
        problems.append(f"masters disagree on the active node: {', '.join(sorted(a or '(none)' for a in addresses))}")
    actives = [n.hostname for n in ha_status if n.active]
    if len(ha_status) != expected:
        problems.append(f"ha-status lists {len(ha_status)} nodes, expected {expected}: "
                        f"{', '.join(n.hostname for n in ha_status) or 'none'}")
    if len(actives) != 1:
        names = f": {', '.join(actives)}" if actives else ""
        problems.append(f"ha-status shows {len(actives)} active nodes{names}")
    return problems

