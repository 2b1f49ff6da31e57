"""Vault (or OpenBao): ``/v1/sys/health`` and ``/v1/sys/leader`` on every master (no token needed), and
``/v1/sys/ha-status`` through VAULT_ADDR (a token that may read ``sys/ha-status``); parsed, shape-checked, and
the pure functions the checks apply to them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from acceptance.clients import shapes
from acceptance.clients.call import Caller, Client, master_part, parse_answer
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError, check_status, classify
from acceptance.clients.snapshot import ApiSnapshot, Part, PerNode, attempt
from acceptance.inventory import Node

TITLE = "Vault"
# /v1/sys/health status codes (vault/sys_health_*.json; OpenBao has no 472/473)
HEALTH_CODES = {200: "active", 429: "standby", 472: "dr-secondary", 473: "performance-standby",
                501: "not initialised", 503: "sealed"}
RIGHTS: dict[str, str | None] = {
    "/v1/sys/health": None,
    "/v1/sys/leader": None,
    "/v1/sys/ha-status": 'read on path "sys/ha-status"',
}


@dataclass(frozen=True)
class Health:
    status: int
    initialized: bool
    sealed: bool
    standby: bool


@dataclass(frozen=True)
class Leader:
    ha_enabled: bool
    leader_address: str


@dataclass(frozen=True)
class HaNode:
    hostname: str
    active: bool


@dataclass(frozen=True)
class MasterVault:
    """One master's own answers: its health, and its view of the leader (or why it is missing)."""

    health: Health
    leader: Leader | ApiError


class VaultSnapshot(ApiSnapshot):
    api = "vault"
    masters = Part[PerNode[MasterVault]]()
    ha_status = Part[list[HaNode]]()

    TOKEN_PARTS = ("ha_status",)


# --------------------------------------------------------------------------- parsers


def parse_health(status: int) -> Callable[[Any], Health]:
    def parse(data: Any) -> Health:
        body = shapes.obj(data, "the body")
        shapes.numbers(body, "the body", ("server_time_utc", "echo_duration_ms", "clock_skew_ms"))
        health = Health(status=status, initialized=shapes.boolean(body, "initialized", "the body"),
                        sealed=shapes.boolean(body, "sealed", "the body"),
                        standby=shapes.boolean(body, "standby", "the body", default=False))
        if status == 200 and (health.sealed or not health.initialized):
            raise shapes.ShapeError(f"status 200 (active) contradicts the body (initialized={health.initialized}, "
                                    f"sealed={health.sealed})")
        return health
    return parse


def parse_leader(data: Any) -> Leader:
    body = shapes.obj(data, "the body")
    shapes.numbers(body, "the body", ("raft_committed_index", "raft_applied_index"))
    return Leader(ha_enabled=shapes.boolean(body, "ha_enabled", "the body"),
                  leader_address=shapes.string(body, "leader_address", "the body", default=""))


def parse_ha_status(data: Any) -> list[HaNode]:
    """``Nodes`` (as documented), ``nodes`` or ``data.nodes`` (as OpenBao also answers)."""
    body = shapes.obj(data, "the body")
    if "Nodes" in body:
        nodes, where = body["Nodes"], "Nodes"
    elif "nodes" in body:
        nodes, where = body["nodes"], "nodes"
    else:
        nodes, where = shapes.key(shapes.obj(shapes.key(body, "data", "the body"), "data"), "nodes", "data"), \
            "data.nodes"
    return [HaNode(hostname=shapes.string(n, "hostname", f"{where}[{i}]"),
                   active=shapes.boolean(n, "active_node", f"{where}[{i}]"))
            for i, n in enumerate(shapes.items(nodes, None, where))]


# --------------------------------------------------------------------------- fetch


def _probe(cfg: ApiConfig, client: Client, timeout: Callable[[], float]) -> MasterVault:
    """Health and leader of one master's Vault: one attempt each."""
    answer = client.get("/v1/sys/health", timeout())
    check_status(cfg, answer, tuple(HEALTH_CODES))
    health = parse_answer(cfg, answer, parse_health(answer.status))
    try:
        answer = client.get("/v1/sys/leader", timeout())
        check_status(cfg, answer)
        leader: Leader | ApiError = parse_answer(cfg, answer, parse_leader)
    except ApiError as e:
        leader = e
    except Exception as e:  # classify() makes one line of it
        leader = classify(cfg, client.url, "/v1/sys/leader", e, cfg.timeout_s)
    return MasterVault(health, leader)


def fetch(cfg: ApiConfig, masters: Sequence[Node], caller: Caller | None = None) -> VaultSnapshot:
    if cfg.problem:
        return VaultSnapshot.unusable(ApiError("config", cfg.problem))
    snap = VaultSnapshot()
    caller = caller or Caller(cfg)
    masters_part = master_part(cfg, masters, caller.deadline, _probe)
    snap.masters = masters_part
    snap.ha_status = attempt(lambda: caller.read("/v1/sys/ha-status", parse_ha_status,
                                                 right=RIGHTS["/v1/sys/ha-status"]))
    snap.url = caller.url
    errors = [v for v in masters_part.values.values() if isinstance(v, ApiError)]
    if masters and len(errors) == len(masters) and all(e.unreachable for e in errors):
        snap.root = errors[0]  # no master's Vault answers
    snap.decide_root(VaultSnapshot.TOKEN_PARTS)
    return snap


# --------------------------------------------------------------------------- pure functions


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
