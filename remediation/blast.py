"""The blast radius, as Cluster API's MachineHealthCheck ``maxUnhealthy``: every unhealthy master and agent
counted cluster-wide from the APIs' view (not per check, not only this run's targets, so that shards and
``--nodes`` do not split it), joined with the nodes failing checks in this run; past either limit, or when the
count cannot be made, remediation acts on nothing.

Unhealthy: an agent missing from Nomad, not ``ready``, draining, ineligible or in maintenance; a master whose
Nomad or Consul raft server is not a healthy voter, whose Vault is sealed, uninitialised or does not answer,
or in maintenance. Drained, maintained and unreachable nodes count: they are capacity already gone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from acceptance.clients.config import master_urls
from acceptance.clients.transport import excerpt
from acceptance.inventory import Inventory, Node, RemediationSettings
from acceptance.judging.raft import is_named, server_is
from remediation.clients import Api, vault_health, write_config
from remediation.leadership import Raft
from remediation.model import ActionFailed

SHOWN = 8  # nodes named in a refusal; the rest are counted
WHY_WIDTH = 80  # characters of one node's reasons in a refusal
FAILING = "fails checks in this run"


@dataclass
class Unhealthy:
    masters: dict[str, str] = field(default_factory=dict)  # name -> why
    agents: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)  # what could not be read at all


def _add(found: dict[str, str], name: str, why: str) -> None:
    found[name] = f"{found[name]}; {why}" if name in found else why


def _said(title: str, e: Exception) -> str:
    text = str(e)
    return text if text.startswith(title) else f"{title}: {text}"


def count_unhealthy(inventory: Inventory, masters: Sequence[Node], agents: Sequence[Node],
                    today: dt.date | None = None) -> Unhealthy:
    """The unhealthy nodes among ``masters`` and ``agents`` (the inventory's, not only this run's targets), as
    the APIs see them with the remediation tokens."""
    u = Unhealthy()
    held = {m.node: m for m in inventory.maintenance if not m.expired(today)}
    for nodes, found in ((masters, u.masters), (agents, u.agents)):
        for n in nodes:
            if n.name in held:
                _add(found, n.name, f"in maintenance until {held[n.name].until.isoformat()}")
    _count_agents(u, inventory, masters, agents)
    for name in ("nomad", "consul"):
        _count_servers(u, name, inventory, masters)
    _count_vaults(u, inventory, masters)
    return u


def _count_agents(u: Unhealthy, inventory: Inventory, masters: Sequence[Node], agents: Sequence[Node]) -> None:
    if not agents:
        return
    try:
        nodes = Api(write_config("nomad", inventory, masters)).lib("GET /v1/nodes", lambda n: n.nodes.get_nodes())
    except ActionFailed as e:
        u.unknown.append(_said("Nomad", e))
        return
    if not isinstance(nodes, list) or not all(isinstance(n, dict) and isinstance(n.get("Name"), str)
                                              for n in nodes):
        u.unknown.append(f"Nomad: GET /v1/nodes is not a node list ({excerpt(str(nodes), 80)})")
        return
    for agent in agents:
        mine = [n for n in nodes if is_named(n["Name"], agent.name)]
        if not mine:
            _add(u.agents, agent.name, "not a Nomad node")
            continue
        # a reinstalled node leaves its old, down entry behind: judge the live one
        n = max(mine, key=lambda n: (n.get("Status") == "ready", _int(n.get("CreateIndex"))))
        for why in _node_problems(n):
            _add(u.agents, agent.name, why)


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _node_problems(n: dict[str, Any]) -> list[str]:
    problems = []
    if n.get("Status") != "ready":
        problems.append(f"Nomad status {n.get('Status') or '?'}")
    if n.get("Drain") or n.get("DrainStrategy"):
        problems.append("draining in Nomad")
    elif n.get("SchedulingEligibility") != "eligible":
        problems.append("ineligible in Nomad")
    return problems


def _count_servers(u: Unhealthy, name: str, inventory: Inventory, masters: Sequence[Node]) -> None:
    """As the quorum gate judges a master (gates._servers_healthy), for every master: autopilot's 429 is its
    "some server is unhealthy", with the same body."""
    raft = Raft(Api(write_config(name, inventory, masters)))
    try:
        autopilot = raft.autopilot()
    except ActionFailed as e:
        u.unknown.append(_said(raft.title, e))
        return
    except ValueError as e:  # an answer that is not JSON (a proxy's page): its shape is wrong
        u.unknown.append(f"{raft.title} autopilot health: {e}")
        return
    for m in masters:
        mine = [s for s in autopilot.servers if server_is(s, m.name, m.address)]
        if not mine:
            _add(u.masters, m.name, f"{raft.title}: not a raft server")
            continue
        s = mine[0]
        bad = [what for what, wrong in ((s.status, s.status not in ("alive", "?")), ("unhealthy", not s.healthy),
                                        ("not a voter", not s.voter)) if wrong]
        if bad:
            _add(u.masters, m.name, f"{raft.title} server {', '.join(bad)}")


def _count_vaults(u: Unhealthy, inventory: Inventory, masters: Sequence[Node]) -> None:
    """Each master's Vault by ``/v1/sys/health``, unauthenticated (it needs no token: none is sent)."""
    if not masters:
        return
    cfg = dataclasses.replace(write_config("vault", inventory, masters), token=None)
    if cfg.problem:
        u.unknown.append(f"Vault: {cfg.problem}")
        return
    for m in masters:
        urls = master_urls(cfg.url, [m], 8200)
        if not urls:
            u.unknown.append(f"Vault on {m.name}: no address to reach it")
            continue
        try:  # 429 standby (standbyok makes it 200), 472/473 secondaries, 501 uninitialised, 503 sealed
            body = vault_health(Api(cfg.for_url(urls[0])))
        except ActionFailed as e:
            _add(u.masters, m.name, _said("Vault", e))
            continue
        if not isinstance(body, dict):
            _add(u.masters, m.name, f"Vault: no health status ({excerpt(str(body), 60)})")
        elif body.get("initialized") is not True:
            _add(u.masters, m.name, "Vault not initialised")
        elif body.get("sealed") is not False:
            _add(u.masters, m.name, "Vault sealed")


def past_limit(u: Unhealthy, settings: RemediationSettings, also_failing_masters: set[str],
               also_failing_agents: set[str]) -> str | None:
    """None within ``max_unhealthy_masters`` and ``max_unhealthy_agents`` (the APIs' view joined with this
    run's failures); else why remediation acts on nothing."""
    if u.unknown:
        return f"cannot count the unhealthy nodes ({'; '.join(u.unknown)}): act on nothing"
    masters, agents = dict(u.masters), dict(u.agents)
    for name in sorted(also_failing_masters):
        masters.setdefault(name, FAILING)
    for name in sorted(also_failing_agents):
        agents.setdefault(name, FAILING)
    limit_m, limit_a = settings.max_unhealthy_masters, settings.max_unhealthy_agents
    if len(masters) <= limit_m and len(agents) <= limit_a:
        return None
    return (f"{_count(len(masters), 'master')} and {_count(len(agents), 'agent')} are unhealthy cluster-wide "
            f"(limits {limit_m} and {limit_a}): {_names(masters, agents)}: act on nothing, a human must look")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _names(masters: dict[str, str], agents: dict[str, str]) -> str:
    found = [*sorted(masters.items()), *sorted(agents.items())]
    shown = [f"{name} ({why if len(why) <= WHY_WIDTH else why[:WHY_WIDTH - 3] + '...'})"
             for name, why in found[:SHOWN]]
    more = len(found) - SHOWN
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")
